"""Fixtures of the conformance suite: one `KubeClient`, for the emulator or a real cluster.

Every test here speaks HTTP through `KubeClient` (kubernetes_asyncio underneath) and states a
semantic of the Kubernetes API. It runs against kaito's emulator, and a second time against a
real cluster when `KAITO_TEST_KUBECONFIG` names a kubeconfig; then each test works in its own
fresh namespace, and cluster-scoped objects get unique names and are deleted afterwards.

Tests that need a hook only the emulator has (seeding its store, injecting faults, a tiny
watch history) are marked `emulator_only("why")` and are skipped on a real cluster.

Without `KAITO_TEST_KUBECONFIG` the cluster variants are deselected, except one probe test
that is skipped with the reason, so the summary says once why the cluster runs did not happen.

On a real cluster some effects are asynchronous (garbage collection runs in the controller
manager, a new CRD takes a moment to be served); tests wait for them with `eventually`,
bounded by the backend's `patience`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest

from kaito.kube import (
    CUSTOM_RESOURCE_DEFINITION,
    NAMESPACE,
    ApiError,
    KubeClient,
    NotFound,
    ResourceKind,
)

CLUSTER_ENV = "KAITO_TEST_KUBECONFIG"
GROUP = "conformance.kaito.sh"
TEST_LABEL = f"{GROUP}/test"

T = TypeVar("T")


def widget_crd(group: str = GROUP, plural: str = "widgets", kind: str = "Widget") -> dict[str, Any]:
    """A namespaced CRD with a status subresource, a structural schema (pruned), defaults,
    bounds, an enum, and one CEL rule."""
    spec_schema = {
        "type": "object",
        "properties": {
            "size": {"type": "integer", "minimum": 1, "maximum": 100},
            "maxSize": {"type": "integer", "default": 50},
            "color": {"type": "string", "enum": ["blue", "red", "green"], "default": "blue"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "x-kubernetes-validations": [
            {"rule": "!has(self.size) || self.size <= self.maxSize", "message": "size > maxSize"}
        ],
    }
    status_schema = {
        "type": "object",
        "properties": {
            "phase": {"type": "string"},
            "observedGeneration": {"type": "integer"},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": spec_schema, "status": status_schema},
                        }
                    },
                }
            ],
        },
    }


def kind_of_crd(crd: dict[str, Any]) -> ResourceKind:
    spec = crd["spec"]
    version = spec["versions"][0]
    return ResourceKind(
        group=spec["group"],
        version=version["name"],
        kind=spec["names"]["kind"],
        plural=spec["names"]["plural"],
        namespaced=spec["scope"] == "Namespaced",
        singular=spec["names"]["singular"],
        subresources=tuple(version.get("subresources", {})),
    )


WIDGET_CRD = widget_crd()
WIDGET = kind_of_crd(WIDGET_CRD)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "emulator_only(reason): uses a hook only the emulator has; skipped on a real cluster",
    )


PROBE = "test_backend_answers"
"""The one test whose cluster variant is kept (and skipped) when no cluster is configured."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a cluster, report its absence once (the probe test) instead of once per test."""
    if os.environ.get(CLUSTER_ENV):
        return
    here = Path(__file__).parent
    dropped = [
        item
        for item in items
        if here in item.path.parents
        and getattr(item, "callspec", None) is not None
        and item.callspec.params.get("backend") == "cluster"  # type: ignore[attr-defined]
        and item.originalname != PROBE  # type: ignore[attr-defined]
    ]
    if dropped:
        keep = set(map(id, dropped))
        items[:] = [item for item in items if id(item) not in keep]
        config.hook.pytest_deselected(items=dropped)


@attrs.define
class Backend:
    """What a conformance test works with."""

    client: KubeClient
    namespace: str
    """A namespace of its own, already created."""
    emulator: Any = None
    """The `kaito.kube.emulator.Emulator`, or None on a real cluster."""
    patience: float = 5.0
    """Seconds to wait for asynchronous effects (garbage collection, CRD establishment)."""
    _cleanups: list[tuple[ResourceKind, str]] = attrs.field(factory=list)

    @property
    def real(self) -> bool:
        return self.emulator is None

    def unique(self, prefix: str) -> str:
        """A name no other test (or earlier run) uses, for cluster-scoped objects."""
        return f"{prefix}-{secrets.token_hex(4)}"

    def label(self) -> dict[str, str]:
        """A label unique to this test, to list only its own objects on a shared cluster."""
        return {TEST_LABEL: self.namespace}

    def delete_later(self, kind: ResourceKind, name: str) -> None:
        self._cleanups.append((kind, name))

    async def eventually(self, check: Callable[[], Awaitable[T]]) -> T:
        """Retries `check` until it returns without an AssertionError, within `patience`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        pause = 0.5 if self.real else 0.02
        while True:
            try:
                return await check()
            except AssertionError:
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(pause)

    async def install_crd(self, crd: dict[str, Any]) -> ResourceKind:
        """Creates a CRD (removed after the test) and waits until its kind is served."""
        await self.client.create(CUSTOM_RESOURCE_DEFINITION, crd)
        self.delete_later(CUSTOM_RESOURCE_DEFINITION, crd["metadata"]["name"])
        kind = kind_of_crd(crd)
        await self.eventually(lambda: _served(self.client, kind, self.namespace))
        return kind

    async def close(self) -> None:
        for kind, name in reversed(self._cleanups):
            with contextlib.suppress(ApiError):
                await self.client.delete(kind, name)
        if self.real:
            with contextlib.suppress(ApiError):
                await self.client.delete(NAMESPACE, self.namespace)


async def _served(client: KubeClient, kind: ResourceKind, namespace: str) -> None:
    try:
        await client.list(kind, namespace=namespace, limit=1)
    except NotFound as exc:
        raise AssertionError(f"{kind} is not served yet") from exc


BACKENDS = [
    pytest.param("emulator", id="emulator"),
    pytest.param("cluster", id="cluster", marks=pytest.mark.cluster),
]


async def _ensure_widget_crd(client: KubeClient) -> None:
    """On a real cluster: the Widget CRD, installed once and left for later runs."""
    try:
        await client.get(CUSTOM_RESOURCE_DEFINITION, WIDGET_CRD["metadata"]["name"])
    except NotFound:
        await client.create(CUSTOM_RESOURCE_DEFINITION, WIDGET_CRD)


async def _new_namespace(client: KubeClient, name: str) -> None:
    await client.create(NAMESPACE, {"metadata": {"name": name, "labels": {TEST_LABEL: name}}})


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    namespace = f"conf-{secrets.token_hex(4)}"
    if request.param == "cluster":
        # Skipped here rather than by a mark, so that the summary shows one line for all.
        if not os.environ.get(CLUSTER_ENV):
            pytest.skip(f"{CLUSTER_ENV} not set")
        marker = request.node.get_closest_marker("emulator_only")
        if marker is not None:
            pytest.skip(f"emulator only: {marker.args[0] if marker.args else 'needs a hook'}")
        client = await KubeClient.from_kubeconfig(os.environ[CLUSTER_ENV], request_timeout=30)
        async with client:
            await _ensure_widget_crd(client)
            await _new_namespace(client, namespace)
            backend = Backend(client=client, namespace=namespace, patience=60.0)
            await backend.eventually(lambda: _served(client, WIDGET, namespace))
            try:
                yield backend
            finally:
                await backend.close()
        return

    from kaito.kube.emulator import Emulator

    # Bookmarks every half second instead of every minute, so that tests can see them.
    async with Emulator(port=0, crds=[WIDGET_CRD], bookmark_interval=0.5) as emulator:
        kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
        async with await KubeClient.from_kubeconfig(kubeconfig, request_timeout=5) as client:
            await _new_namespace(client, namespace)
            backend = Backend(client=client, namespace=namespace, emulator=emulator)
            try:
                yield backend
            finally:
                await backend.close()


@pytest.fixture
def client(backend: Backend) -> KubeClient:
    return backend.client


@pytest.fixture
def ns(backend: Backend) -> str:
    return backend.namespace


@pytest.fixture
def emulator(backend: Backend) -> Any:
    """The emulator itself, for tests marked `emulator_only`."""
    assert backend.emulator is not None, "mark the test emulator_only"
    return backend.emulator
