"""A Kubernetes API-server emulator: an in-memory store served over HTTP on loopback.

kaito's tests and its local mode (`kaito up`) run against this instead of a cluster. It speaks
the real wire protocol (REST paths, discovery, `kind: Status` errors, chunked watch streams,
Table output for kubectl) and keeps the storage semantics controllers depend on:
resourceVersion conflicts, generation, the status subresource, finalizers, garbage collection,
selectors, watch history with 410 Gone, server-side apply, and CRD schema validation with CEL.

The package is split the way kube-apiserver is: `Store` is the exact, dumb, atomic storage
layer (usable directly from tests: `emu.store.seed(...)`, `emu.store.get(...)`), and the HTTP
layer only translates requests and injects faults. Lifecycle behaviour (pods starting, nodes
registering) belongs to simulators that run beside the store, not in it.

    async with Emulator(crds=[nodeclaim_crd()]) as emu:
        emu.write_kubeconfig(tmp_path / "kubeconfig")
        emu.faults.add(verb="create", plural="pods", code=500, times=1)
        ...
        assert emu.requests.writes() == 0
"""

from kaito.kube.emulator._emulator import Emulator, nodeclaim_crd, run_standalone, serve
from kaito.kube.emulator._errors import ApiError, FieldError
from kaito.kube.emulator._faults import Fault, Faults, RequestInfo, RequestLog
from kaito.kube.emulator._store import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    ListResult,
    Store,
    Watcher,
    WatchEvent,
)

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "STRATEGIC_PATCH",
    "ApiError",
    "Emulator",
    "Fault",
    "Faults",
    "FieldError",
    "ListResult",
    "RequestInfo",
    "RequestLog",
    "Store",
    "WatchEvent",
    "Watcher",
    "nodeclaim_crd",
    "run_standalone",
    "serve",
]
