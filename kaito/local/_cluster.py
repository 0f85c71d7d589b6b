"""`LocalCluster`: everything `kaito up` runs, in one process, in the right order.

    emulator (API server on 127.0.0.1, kaito's CRDs, kubeconfig in the state dir)
    simulators for StatefulSets and Jobs only (they turn a StatefulSet into pods)
    local kubelet (binds and runs those pods as processes)
    Service forwarder (a port on 127.0.0.1 per Service)
    operator: watches -> work queue -> WorkspaceReconciler with the local provisioner

The reconciler is kaito's own, unchanged; only its settings are the local mode's: no node
auto-provisioning (the workspace's instance type was removed, so the reconciler asks the local
provisioner what this machine offers and plans for that), and the generated directory as the
model source of a tiny preset. Stopping goes the other way round: the operator stops taking
work, the kubelet stops every process, the listeners close, the emulator stops.

The state file (`state.json`) is rewritten whenever something the other commands read changes:
the ports, the processes, the phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs

from kaito.api import workspace_crd
from kaito.kube import (
    CONFIG_MAP,
    NAMESPACE,
    SECRET,
    WORKSPACE,
    AlreadyExists,
    KubeClient,
    KubeError,
)
from kaito.kube.emulated import EmulatedCluster
from kaito.kube.simulators import SimulatorConfig
from kaito.local._forwarder import ServiceForwarder, bind_listener
from kaito.local._kubelet import KubeletSettings, LocalKubelet
from kaito.local._models import model_sources
from kaito.local._paths import KUBECONFIG_FILE
from kaito.local._process import process_start_time
from kaito.local._state import Phase, SessionState, write_state
from kaito.local._workspace import LocalModeError, LocalWorkspace
from kaito.operator import Operator, OperatorSettings
from kaito.plugins import Registry
from kaito.provisioners import ProvisionerContext
from kaito.provisioners.local import LocalProvisioner, Machine
from kaito.reconcile import ReconcilerSettings, WorkspaceReconciler

_log = logging.getLogger("kaito.local")


@attrs.frozen
class LocalSettings:
    """How `kaito up` runs; the defaults are what the command uses."""

    port: int = 0
    """The workspace's endpoint on 127.0.0.1 (0: a free port)."""
    api_port: int = 0
    """The emulator's port on 127.0.0.1 (0: a free port)."""
    gpus: str = "auto"
    """The local provisioner's `gpus` option: `auto`, or `none` to run on the CPU."""
    machine: Machine | None = None
    """This machine as the provisioner offers it (None: detected)."""
    kubelet: KubeletSettings = attrs.field(factory=KubeletSettings)
    model_cache: Path | None = None
    """Where generated models are kept (None: `$KAITO_CACHE_DIR` or ~/.cache/kaito/models)."""
    connect_wait: float = 10.0
    """Seconds a connection to a Service waits for a ready pod before it is closed."""


class LocalCluster:
    """`async with LocalCluster(workspace, directory) as cluster:` runs the workspace here."""

    def __init__(
        self,
        workspace: LocalWorkspace,
        directory: Path,
        *,
        registry: Registry,
        settings: LocalSettings | None = None,
        on_state: Callable[[SessionState], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.directory = Path(directory)
        self.registry = registry
        self.settings = settings or LocalSettings()
        self._on_state = on_state
        self.phase: Phase = "starting"
        self.message = "starting"
        self.port = 0
        self._listener: socket.socket | None = None
        self._cluster: EmulatedCluster | None = None
        self.kubelet: LocalKubelet | None = None
        self.forwarder: ServiceForwarder | None = None
        self.provisioner: LocalProvisioner | None = None
        self.operator: Operator | None = None
        self._operator_task: asyncio.Task[None] | None = None
        self._stop_operator = asyncio.Event()
        self._started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._last_state: SessionState | None = None

    # -- accessors ------------------------------------------------------------------------

    @property
    def client(self) -> KubeClient:
        if self._cluster is None:
            raise RuntimeError("the local cluster is not started")
        return self._cluster.client

    @property
    def kubeconfig(self) -> Path:
        return self.directory / KUBECONFIG_FILE

    @property
    def api_url(self) -> str:
        return self._cluster.url if self._cluster is not None else ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def machine(self) -> Machine:
        if self.provisioner is None:
            raise RuntimeError("the local cluster is not started")
        return self.provisioner.machine

    def state(self) -> SessionState:
        """The state file's content now."""
        ws = self.workspace
        endpoints: Mapping[str, int] = self.forwarder.ports() if self.forwarder is not None else {}
        return SessionState(
            name=ws.name,
            namespace=ws.namespace,
            pid=os.getpid(),
            start=process_start_time(os.getpid()),
            phase=self.phase,
            message=self.message,
            directory=str(self.directory),
            api_url=self.api_url,
            kubeconfig=str(self.kubeconfig) if self._cluster is not None else "",
            port=self.port,
            runtime=ws.runtime,
            endpoints=dict(endpoints),
            pods=tuple(self.kubelet.processes()) if self.kubelet is not None else (),
            started=self._started,
            notes=ws.notes,
        )

    def set_phase(self, phase: Phase, message: str) -> None:
        self.phase, self.message = phase, message
        self.save()

    def save(self) -> None:
        """Rewrite the state file if what it says changed."""
        state = self.state()
        if state == self._last_state:
            return
        self._last_state = state
        write_state(self.directory, state)
        if self._on_state is not None:
            self._on_state(state)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start everything and create the workspace. Raises `LocalModeError` for a port in
        use, a model that cannot be generated, or a provisioner option it rejects."""
        s = self.settings
        ws = self.workspace
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._listener = bind_listener(s.port)
        except OSError as exc:
            raise LocalModeError(
                f"cannot listen on 127.0.0.1:{s.port}: {exc.strerror or exc}"
            ) from None
        self.port = int(self._listener.getsockname()[1])
        self.save()
        try:
            await self._start(ws, s)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, ws: LocalWorkspace, s: LocalSettings) -> None:
        sources = await model_sources(ws.preset, self.registry, cache_dir=s.model_cache)
        self._cluster = EmulatedCluster(
            [workspace_crd()],
            port=s.api_port,
            kubeconfig=self.kubeconfig,
            simulator_config=SimulatorConfig(
                nodeclaims=False, nodes=False, pods=False, deployments=False
            ),
        )
        await self._cluster.start()
        client = self._cluster.client
        try:
            self.provisioner = LocalProvisioner(
                ProvisionerContext(client, {"gpus": s.gpus}), machine=s.machine
            )
        except ValueError as exc:
            raise LocalModeError(str(exc)) from None
        self.kubelet = LocalKubelet(client, self.directory, s.kubelet, on_change=self._changed)
        await self.kubelet.start()
        self.forwarder = ServiceForwarder(
            client, self.kubelet.endpoints, connect_wait=s.connect_wait, on_change=self._changed
        )
        assert self._listener is not None
        self.forwarder.adopt(ws.namespace, ws.name, self._listener)
        self._listener = None
        await self.forwarder.start()
        reconciler_options: dict[str, Any] = {
            "default_runtime": ws.runtime,
            "auto_provisioning": False,
            "model_sources": sources,
            "private_data_urls": True,
        }
        reconciler = WorkspaceReconciler(
            client,
            provisioner=self.provisioner,
            registry=self.registry,
            settings=ReconcilerSettings(**reconciler_options),
        )
        self.operator = Operator(
            client,
            reconciler,
            OperatorSettings(
                leader_election=False,
                concurrency=2,
                metrics_addr="127.0.0.1:0",
                health_addr="127.0.0.1:0",
                shutdown_timeout=5.0,
            ),
        )
        self._operator_task = asyncio.create_task(
            self.operator.run(self._stop_operator), name="local operator"
        )
        with contextlib.suppress(AlreadyExists):  # `default` exists; any other is made here
            await client.create(NAMESPACE, {"metadata": {"name": ws.namespace}})
        for obj in ws.objects:  # what the workspace refers to goes first, as on a cluster
            kind = SECRET if obj.get("kind") == "Secret" else CONFIG_MAP
            name = (obj.get("metadata") or {}).get("name")
            try:
                await client.create(kind, dict(obj), namespace=ws.namespace)
            except AlreadyExists:
                pass
            except KubeError as exc:
                raise LocalModeError(f"cannot create {obj.get('kind')} {name}: {exc}") from None
        with contextlib.suppress(AlreadyExists):  # a restart of this run: it is there
            await client.create(WORKSPACE, ws.document)
        self.save()

    async def stop(self) -> None:
        """Stop everything; every process the kubelet started has ended when this returns."""
        self._stop_operator.set()
        if self._operator_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._operator_task), 10.0)
            except Exception:  # too slow, or failed: it ends either way
                self._operator_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._operator_task
            self._operator_task = None
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self.forwarder is not None:
            await self.forwarder.stop()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._cluster is not None:
            await self._cluster.stop()
            self._cluster = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _changed(self) -> None:
        if self._cluster is not None:
            self.save()
