"""Fixtures of the reconciler's integration tests: an emulator, a client over HTTP, a clock.

The reconciler talks to kaito's API-server emulator through `KubeClient` exactly as it would to
a cluster; the emulator's fault set and the client's request counter are what the tests use to
inject failures and to count writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from reconcile_helpers import FakeClock, ReconcilerFactory, registry

from kaito.api import workspace_crd
from kaito.kube import KubeClient
from kaito.kube.emulator import Emulator, nodeclaim_crd
from kaito.provisioners import Provisioner, ProvisionerContext
from kaito.provisioners.fake import FakeProvisioner
from kaito.reconcile import ReconcilerSettings, WorkspaceReconciler


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(crds=[workspace_crd(), nodeclaim_crd()]) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator, tmp_path: Path) -> AsyncIterator[KubeClient]:
    path = emu.write_kubeconfig(tmp_path / "kubeconfig")
    async with await KubeClient.from_kubeconfig(path, request_timeout=5.0) as kube:
        yield kube


@pytest.fixture
def make_reconciler(client: KubeClient, clock: FakeClock) -> ReconcilerFactory:
    """Builds a reconciler on the test's client; the fake provisioner unless one is given."""

    def make(
        provisioner: Provisioner | None = None, settings: ReconcilerSettings | None = None
    ) -> WorkspaceReconciler:
        chosen: Any = provisioner or FakeProvisioner(ProvisionerContext(client=client))
        return WorkspaceReconciler(
            client, provisioner=chosen, registry=registry(), settings=settings, clock=clock
        )

    return make


@pytest.fixture
async def sim_client(emu: Emulator, tmp_path: Path) -> AsyncIterator[KubeClient]:
    """A second client for the simulators, so the reconciler's request counter is its own."""
    path = emu.write_kubeconfig(tmp_path / "kubeconfig-sim")
    async with await KubeClient.from_kubeconfig(path, request_timeout=5.0) as kube:
        yield kube
