"""The AKS provisioner against the ARM stand-in and the emulated cluster: a pool is created
without blocking, its long-running operation is followed through provisioningState, its nodes
join and turn Ready, a failed operation is reported with AKS's error, scaling, replacing a pool
of the wrong VM size, deletion, and a restart in the middle of an operation."""

from __future__ import annotations

import pytest
from aks_standin import ArmStandIn
from aks_support import (
    A100,
    NC12,
    AksNodes,
    converge,
    provisioner,
    request,
)
from kaito_aks import AGENTPOOL_LABEL, TAG_WORKSPACE, TAG_WORKSPACE_NAMESPACE, agent_pool_name

from kaito.kube import NODE
from kaito.testing import EmulatedCluster

pytestmark = pytest.mark.timeout(30)

POOL = agent_pool_name("default", "phi")


async def test_create_then_nodes_join_then_ready(cluster: EmulatedCluster, arm: ArmStandIn) -> None:
    prov = provisioner(cluster, arm)
    req = request(count=2, gpus_per_node=2, disk_gib=200, labels={"apps": "phi-3"})

    first = await prov.provision(req)
    assert (first.ready, first.failed, first.reason) == (False, False, "AgentPoolCreating")
    assert first.requeue_after == 5.0
    assert f"creating agent pool {POOL} (2 x {NC12})" in first.message
    puts = arm.pool_calls("PUT")
    assert len(puts) == 1
    assert puts[0].status == 201
    body = puts[0].body
    assert body is not None
    props = body["properties"]
    assert props["vmSize"] == NC12
    assert props["count"] == 2
    assert props["mode"] == "User"
    assert props["osType"] == "Linux"
    assert props["osDiskSizeGB"] == 200
    assert props["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert props["nodeLabels"] == {
        "apps": "phi-3",
        "kaito.sh/workspace": "phi",
        "kaito.sh/workspacenamespace": "default",
    }
    assert props["tags"] == {TAG_WORKSPACE: "phi", TAG_WORKSPACE_NAMESPACE: "default"}
    assert arm.pools[POOL]["properties"]["provisioningState"] == "Creating"
    # the pre-flight checks ran before the PUT, and only then
    assert len(arm.calls("GET", "/Microsoft.Compute/skus")) == 1
    assert len(arm.calls("GET", "/usages")) == 1

    statuses = await converge(prov, req, cluster)
    final = statuses[-1]
    assert final.ready, statuses
    assert final.reason == "NodesReady"
    assert final.nodes == (AksNodes.node_name(POOL, 0), AksNodes.node_name(POOL, 1))
    assert len(arm.pool_calls("PUT")) == 1, "the pool is written once"
    nodes = await cluster.client.list(NODE, label_selector=f"{AGENTPOOL_LABEL}={POOL}")
    assert all(n["metadata"]["labels"]["apps"] == "phi-3" for n in nodes.items)

    # converged: one ARM read, no writes
    before = len(arm.log)
    again = await prov.provision(req)
    assert again.ready
    assert [(r.method, r.status) for r in arm.log[before:]] == [("GET", 200)]


async def test_waiting_for_nodes_names_the_ones_not_ready(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    assert cluster.simulators is not None
    await cluster.simulators.stop()  # no kubelet: nodes register but never turn Ready
    cluster.simulators = None
    prov = provisioner(cluster, arm)
    req = request()
    await prov.provision(req)
    status = await prov.provision(req)
    assert not status.ready
    assert status.reason == "WaitingForNodes"
    assert "0 of 1 nodes ready" in status.message
    assert f"{AksNodes.node_name(POOL, 0)} is not Ready" in status.message


async def test_a_failed_operation_is_reported_with_the_aks_error(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.fail_next(
        "create",
        "AllocationFailed",
        "Allocation failed. We do not have sufficient capacity for the requested VM size.",
    )
    prov = provisioner(cluster, arm)
    req = request()
    statuses = await converge(prov, req, cluster)
    final = statuses[-1]
    assert final.failed
    assert final.reason == "AgentPoolFailed"
    assert "AllocationFailed: Allocation failed." in final.message
    assert POOL in final.message
    # reported again on the next pass, and nothing is written
    again = await prov.provision(req)
    assert again.failed
    assert len(arm.pool_calls("PUT")) == 1


async def test_scaling_a_pool_checks_quota_for_the_new_nodes_only(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    prov = provisioner(cluster, arm)
    assert (await converge(prov, request(count=1), cluster))[-1].ready
    # 48 vCPUs in the family: 1 node (12) exists, 3 more need 36
    grown = await prov.provision(request(count=4))
    assert grown.reason == "AgentPoolScaling"
    assert "from 1 to 4 nodes" in grown.message
    puts = arm.pool_calls("PUT")
    assert [p.status for p in puts] == [201, 200]
    statuses = await converge(prov, request(count=4), cluster)
    assert statuses[-1].ready
    assert len(statuses[-1].nodes) == 4


async def test_a_pool_of_another_vm_size_is_replaced(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    prov = provisioner(cluster, arm)
    assert (await converge(prov, request(instance_type=NC12), cluster))[-1].ready
    statuses = await converge(prov, request(instance_type=A100), cluster, passes=10)
    reasons = [s.reason for s in statuses]
    assert reasons[0] == "AgentPoolReplacing"
    assert "AgentPoolCreating" in reasons
    assert statuses[-1].ready, statuses
    assert arm.pools[POOL]["properties"]["vmSize"] == A100
    assert len(arm.pool_calls("DELETE")) == 1


async def test_release_deletes_the_pool_and_its_nodes(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    prov = provisioner(cluster, arm)
    req = request(count=2, gpus_per_node=2)
    assert (await converge(prov, req, cluster))[-1].ready

    assert await prov.release(req) is False  # delete started: 202, pool Deleting
    assert [r.status for r in arm.pool_calls("DELETE")] == [202]
    assert await prov.release(req) is True  # the operation finished, the pool is gone
    assert POOL not in arm.pools
    assert len(arm.pool_calls("DELETE")) == 1, "a pool being deleted is not deleted twice"
    nodes = await cluster.client.list(NODE, label_selector=f"{AGENTPOOL_LABEL}={POOL}")
    assert nodes.items == []
    # nothing left: a single list, no deletes
    before = len(arm.log)
    assert await prov.release(req) is True
    assert [r.method for r in arm.log[before:]] == ["GET"]


async def test_restart_during_the_operation_finds_the_pool_and_creates_no_other(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.hold = True  # the create operation runs until the test finishes it
    req = request()
    first = provisioner(cluster, arm)
    assert (await first.provision(req)).reason == "AgentPoolCreating"
    assert (await first.provision(req)).reason == "AgentPoolCreating"

    restarted = provisioner(cluster, arm)  # a new process: nothing remembered
    status = await restarted.provision(req)
    assert status.reason == "AgentPoolCreating"
    assert f"agent pool {POOL}" in status.message
    assert "is Creating" in status.message
    assert len(arm.pool_calls("PUT")) == 1
    assert list(arm.pools) == [POOL]

    await arm.finish(POOL)
    statuses = await converge(restarted, req, cluster)
    assert statuses[-1].ready
    assert len(arm.pool_calls("PUT")) == 1


async def test_a_leftover_pool_tagged_for_the_workspace_is_removed_before_creating(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.seed_pool(
        "wsleftover",
        {
            "count": 1,
            "vmSize": NC12,
            "mode": "User",
            "tags": {TAG_WORKSPACE: "phi", TAG_WORKSPACE_NAMESPACE: "default"},
        },
    )
    arm.seed_pool("userpool", {"count": 3, "vmSize": "Standard_D4s_v5", "mode": "User"})
    prov = provisioner(cluster, arm)
    first = await prov.provision(request())
    assert first.reason == "AgentPoolCleanup"
    assert "wsleftover" in first.message
    assert arm.pool_calls("PUT") == [], "nothing is created while a leftover exists"
    statuses = await converge(prov, request(), cluster)
    assert statuses[-1].ready
    assert sorted(arm.pools) == sorted(["userpool", POOL])


async def test_a_pool_with_the_name_but_not_the_tags_is_never_touched(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.seed_pool(POOL, {"count": 1, "vmSize": NC12, "mode": "User", "tags": {"team": "x"}})
    prov = provisioner(cluster, arm)
    status = await prov.provision(request())
    assert status.failed
    assert status.reason == "AgentPoolNameConflict"
    assert "not tagged for workspace default/phi" in status.message
    assert await prov.release(request()) is True
    assert POOL in arm.pools
    assert arm.pool_calls("PUT") == []
    assert arm.pool_calls("DELETE") == []


async def test_growing_beyond_the_quota_fails_and_leaves_the_pool_alone(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    prov = provisioner(cluster, arm)
    assert (await converge(prov, request(count=2), cluster))[-1].ready
    # 48 vCPUs in standardNCSv3Family: 2 nodes use 24; 3 more need 36
    status = await prov.provision(request(count=5))
    assert (status.failed, status.reason) == (True, "QuotaExceeded")
    assert "for 3 x Standard_NC12s_v3" in status.message
    assert arm.pools[POOL]["properties"]["count"] == 2
    assert len(arm.pool_calls("PUT")) == 1


async def test_a_canceled_operation_is_applied_again(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.seed_pool(
        POOL,
        {
            "count": 1,
            "vmSize": NC12,
            "mode": "User",
            "tags": {TAG_WORKSPACE: "phi", TAG_WORKSPACE_NAMESPACE: "default"},
        },
        state="Canceled",
    )
    prov = provisioner(cluster, arm)
    status = await prov.provision(request())
    assert status.reason == "AgentPoolUpdating"
    assert "after its last operation was canceled" in status.message
    assert [r.status for r in arm.pool_calls("PUT")] == [200]
    assert (await converge(prov, request(), cluster))[-1].ready
