"""pytest fixtures for an emulated cluster with kaito's CRDs (needs pytest-asyncio).

Enable with `pytest_plugins = ["kaito.testing.pytest_plugin"]` in a conftest.py. Each fixture is
function-scoped: every test gets a fresh, empty cluster, so tests cannot see each other's
objects.

- `kaito_cluster`: the `EmulatedCluster` (emulator, client, simulators, kubeconfig)
- `kaito_client`: its `KubeClient`
- `kaito_emulator`: its `Emulator` (seed and inspect the store, inject faults, count requests)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from kaito.kube import KubeClient
from kaito.kube.emulated import EmulatedCluster
from kaito.kube.emulator import Emulator
from kaito.testing import kaito_cluster as _new_cluster


@pytest_asyncio.fixture
async def kaito_cluster() -> AsyncIterator[EmulatedCluster]:
    async with _new_cluster() as cluster:
        yield cluster


@pytest_asyncio.fixture
async def kaito_client(kaito_cluster: EmulatedCluster) -> KubeClient:
    return kaito_cluster.client


@pytest_asyncio.fixture
async def kaito_emulator(kaito_cluster: EmulatedCluster) -> Emulator:
    return kaito_cluster.emulator
