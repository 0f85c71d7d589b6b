"""Fixtures of the operator tests: an API-server emulator with kaito's CRDs, clients for it,
and small reconcilers that record what they were asked to do.

The operator machinery is tested against the emulator over real HTTP (list, watch, leases,
410 Gone, dropped connections), with reconcilers defined here so that each test controls
exactly what a reconcile returns or raises.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from operator_support import RecordingReconciler

from kaito.api import workspace_crd
from kaito.kube import KubeClient
from kaito.kube.emulator import Emulator, nodeclaim_crd


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(crds=[workspace_crd(), nodeclaim_crd()], bookmark_interval=0.2) as emulator:
        emulator.store.create("namespaces", {"metadata": {"name": "kaito-system"}})
        yield emulator


@pytest.fixture
def kubeconfig(emu: Emulator, tmp_path: Path) -> Path:
    return emu.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def client_factory(
    kubeconfig: Path,
) -> AsyncIterator[Callable[[], Awaitable[KubeClient]]]:
    """Makes independent clients (each with its own request counter); all closed at the end."""
    made: list[KubeClient] = []

    async def make() -> KubeClient:
        kube = await KubeClient.from_kubeconfig(kubeconfig, request_timeout=5)
        made.append(kube)
        return kube

    yield make
    for kube in made:
        await kube.close()


@pytest.fixture
async def client(client_factory: Callable[[], Awaitable[KubeClient]]) -> KubeClient:
    return await client_factory()


@pytest.fixture
def reconciler() -> RecordingReconciler:
    return RecordingReconciler()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`configure_logging` (and `kaito operator run`) set up the root logger; undo it."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler.get_name() == "kaito":
            root.removeHandler(handler)
