"""End to end through the operator: crashes, restarts, replicas, and the cost of a resync.

What a deployment of the operator lives through: being killed in the middle of a reconcile
(the next process must finish the job without duplicating anything), two replicas with leader
election (one works, the other only watches the Lease, and takes over when the first stops),
and restarts that list everything again (a converged workspace must cost no writes at all).
"""

from __future__ import annotations

import asyncio

import pytest
from e2e_support import A100X2, LEASE_NAMESPACE, LLAMA70, NS, Env, inference_workspace

from kaito.kube import LEASE, NODE, NODE_CLAIM, POD, SERVICE, STATEFUL_SET, WORKSPACE

pytestmark = pytest.mark.timeout(30)

LEASE_NAME = "kaito-workspace-controller"


async def test_an_operator_killed_mid_reconcile_is_replaced_without_duplicates(env: Env) -> None:
    name = "ws-crash"
    # The first write of the StatefulSet hangs (and is then refused), so the operator is
    # caught after its NodeClaims exist and before its workload does.
    gate = env.cluster.emulator.faults.add(
        verb="patch", plural="statefulsets", name=name, latency=3.0, code=503, times=1
    )
    first = await env.start_operator()
    doc = inference_workspace(
        name, preset=LLAMA70, instance_type=A100X2, annotations={"kaito.sh/runtime": "vllm"}
    )
    await env.client.create(WORKSPACE, doc, namespace=NS)
    await env.until(lambda: gate.hits == 1, what="the operator to write the StatefulSet")
    claims = await env.names(NODE_CLAIM, name, namespaced=False)
    assert len(claims) == 2
    assert await env.names(STATEFUL_SET, name) == []
    await first.kill()

    second = await env.start_operator()
    ws = await env.wait_ready(name)
    await env.settle(second)
    assert await env.names(NODE_CLAIM, name, namespaced=False) == claims, "the same claims"
    assert [c.rsplit("-", 1)[1] for c in claims] == ["0", "1"]
    nodes = await env.names(NODE, name, namespaced=False)
    assert nodes == claims
    assert len((await env.client.list(NODE_CLAIM)).items) == 2
    assert len((await env.client.list(NODE)).items) == 2
    assert await env.names(STATEFUL_SET, name) == [name]
    assert await env.names(SERVICE, name) == [name, f"{name}-headless"]
    pods = await env.names(POD, name)
    assert pods == [f"{name}-0", f"{name}-1"]
    assert sorted(ws["status"]["workerNodes"]) == nodes
    assert second.reconciles() >= 1


async def test_two_replicas_elect_one_leader_and_the_other_takes_over(env: Env) -> None:
    a, b = await asyncio.gather(
        env.start_operator(leader_election=True, identity="replica-a"),
        env.start_operator(leader_election=True, identity="replica-b"),
    )
    await env.until(lambda: a.is_leader or b.is_leader, what="a leader")
    await asyncio.sleep(0.5)  # several retry periods: the election is settled, not a race
    assert a.is_leader != b.is_leader, "exactly one leader"
    leader, follower = (a, b) if a.is_leader else (b, a)
    assert follower.operator.state == "standby"
    assert follower.operator.readiness() == (True, "standing by for the lease")
    lease = await env.client.get(LEASE, LEASE_NAME, namespace=LEASE_NAMESPACE)
    assert lease["spec"]["holderIdentity"] == leader.operator.identity

    follower.client.requests.reset()
    await env.client.create(WORKSPACE, inference_workspace("ws-one"), namespace=NS)
    await env.wait_ready("ws-one")
    await env.settle(leader, follower)
    assert follower.client.requests.writes == 0, follower.client.requests
    assert follower.client.requests.count("get", "leases.coordination.k8s.io") > 0, "it watched"
    assert follower.reconciles() == 0
    assert leader.reconciles() > 0

    await leader.stop()  # releases the lease: the follower need not wait for it to expire
    await env.until(lambda: follower.is_leader, what="the follower to take over", within=5)
    lease = await env.client.get(LEASE, LEASE_NAME, namespace=LEASE_NAMESPACE)
    assert lease["spec"]["holderIdentity"] == follower.operator.identity
    assert lease["spec"]["leaseTransitions"] >= 1

    await env.client.create(WORKSPACE, inference_workspace("ws-two"), namespace=NS)
    await env.wait_ready("ws-two")
    assert follower.reconciles() > 0
    assert len(await env.names(NODE_CLAIM, "ws-two", namespaced=False)) == 1
    assert len((await env.client.list(NODE_CLAIM)).items) == 2


async def test_a_converged_workspace_costs_no_writes_when_a_new_operator_resyncs(
    env: Env,
) -> None:
    emu = env.cluster.emulator
    first = await env.start_operator(leader_election=True, identity="first")
    for name in ("ws-a", "ws-b"):
        await env.client.create(WORKSPACE, inference_workspace(name), namespace=NS)
    for name in ("ws-a", "ws-b"):
        await env.wait_ready(name)
    await env.settle(first)
    await first.stop()

    emu.requests.reset()
    second = await env.start_operator(leader_election=True, identity="second")
    await env.until(lambda: second.is_leader, what="the new operator to lead")
    # Both workspaces are listed and reconciled again, from scratch.
    await env.until(lambda: second.reconciles() >= 2, what="the resync's reconciles")
    await env.settle(second)
    assert second.operator.metrics.sample("kaito_reconcile_total", {"result": "success"}) >= 2
    assert emu.requests.count("list", "workspaces") >= 1, "the new operator listed"
    assert emu.requests.count("get", "workspaces") >= 2, "and read each workspace"
    writes = emu.requests.writes() - emu.requests.writes("leases")
    assert writes == 0, [
        (e.verb, e.resource, e.name) for e in emu.requests.entries if e.verb != "get"
    ]
