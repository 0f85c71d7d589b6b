"""Fixtures of the AKS provisioner tests: an emulated cluster (nodes get Ready through the
node simulator) and an ARM stand-in on 127.0.0.1 whose pools put their nodes into it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aks_standin import ArmStandIn
from aks_support import (
    CLUSTER,
    LOCATION,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    TOKEN,
    AksNodes,
    default_skus,
    default_usages,
)

from kaito.kube.simulators import SimulatorConfig
from kaito.testing import EmulatedCluster, kaito_cluster

_ONLY_NODES = SimulatorConfig(
    nodeclaims=False, pods=False, statefulsets=False, deployments=False, jobs=False
)


@pytest.fixture
async def cluster() -> AsyncIterator[EmulatedCluster]:
    async with kaito_cluster(simulator_config=_ONLY_NODES) as emulated:
        yield emulated


@pytest.fixture
async def arm(cluster: EmulatedCluster) -> AsyncIterator[ArmStandIn]:
    nodes = AksNodes(cluster.client)
    async with ArmStandIn(
        subscription=SUBSCRIPTION,
        resource_group=RESOURCE_GROUP,
        cluster=CLUSTER,
        location=LOCATION,
        token=TOKEN,
        skus=default_skus(),
        usages=default_usages(),
        on_succeeded=nodes.pool_succeeded,
        on_deleted=nodes.pool_deleted,
    ) as standin:
        yield standin
