"""Fixtures of the provisioner tests: a running API-server emulator and a `KubeClient` for it.

The provisioners are exercised over real HTTP, exactly as against a cluster: Nodes and
NodeClaim status are seeded through the client (the way a kubelet or Karpenter would write
them), and `client.requests` counts the writes a pass makes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kaito.kube import KubeClient
from kaito.kube.emulator import Emulator, nodeclaim_crd


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(crds=[nodeclaim_crd()]) as emulator:
        yield emulator


@pytest.fixture
async def client(emu: Emulator, tmp_path: Path) -> AsyncIterator[KubeClient]:
    path = emu.write_kubeconfig(tmp_path / "kubeconfig")
    kube = await KubeClient.from_kubeconfig(path, request_timeout=10)
    async with kube:
        yield kube
