"""End to end through the operator: workspaces become ready, and deleting one leaves nothing.

Each test starts kaito's operator (watches, work queue, workers, the `WorkspaceReconciler` with
a provisioner plugin) against the API-server emulator over HTTP, with the lifecycle simulators
playing Karpenter, the kubelets, the scheduler and the StatefulSet controller. The test only
writes workspaces (or, for bring-your-own nodes, the nodes) and reads what the operator made
of them; nothing calls the reconciler directly.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest
from e2e_support import (
    A100X2,
    CONDITION_TYPES,
    LLAMA70,
    NS,
    V1ALPHA1,
    Env,
    condition,
    describe,
    gpu_node,
    inference_workspace,
    operator_settings,
    owned_by,
    registry,
    seed,
)

from kaito.kube import (
    CONFIG_MAP,
    NODE,
    NODE_CLAIM,
    POD,
    SERVICE,
    STATEFUL_SET,
    WORKSPACE,
)
from kaito.operator import run_workspace_operator
from kaito.reconcile import FINALIZER

pytestmark = pytest.mark.timeout(30)

SEED_NAME = "workspace-phi-3-mini"
KUBECTL = shutil.which("kubectl")


def _gpu_limits(sts: dict[str, Any]) -> list[Any]:
    return [
        c["resources"]["limits"].get("nvidia.com/gpu")
        for c in sts["spec"]["template"]["spec"]["containers"]
    ]


def _affinity_nodes(sts: dict[str, Any]) -> list[str]:
    terms = sts["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    values: list[str] = []
    for term in terms:
        for expr in term.get("matchExpressions") or []:
            if expr["key"] == "kubernetes.io/hostname":
                values.extend(expr["values"])
    return values


async def _seed_ready(env: Env) -> dict[str, Any]:
    """Apply the seed's phi-3 workspace as v1alpha1 (as `kubectl apply` would) and wait."""
    await env.client.create(V1ALPHA1, seed("phi-3-inference.yaml"), namespace=NS)
    return await env.wait_ready(SEED_NAME)


async def test_the_seed_workspace_becomes_ready_with_karpenter(env: Env) -> None:
    # The operator as `kaito operator run --provisioner karpenter` runs it: its own client from
    # the kubeconfig, leader election on.
    stop = asyncio.Event()
    settings = operator_settings(
        kubeconfig=str(env.kubeconfig), leader_election=True, identity="seed-operator"
    )
    task = asyncio.create_task(
        run_workspace_operator(settings, registry(), stop=stop, handle_signals=False)
    )
    try:
        ws = await _seed_ready(env)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)

    generation = ws["metadata"]["generation"]
    for type_ in CONDITION_TYPES:
        cond = condition(ws, type_)
        assert cond is not None, f"{type_} missing:\n{describe(ws)}"
        assert cond["status"] == "True", describe(ws)
        assert cond["observedGeneration"] == generation, describe(ws)
    assert ws["status"]["state"] == "Ready"
    assert FINALIZER in ws["metadata"]["finalizers"]

    (claim,) = (await env.client.list(NODE_CLAIM)).items
    assert claim["metadata"]["labels"]["kaito.sh/workspace"] == SEED_NAME
    assert claim["metadata"]["name"].endswith("-0")
    ready = condition(claim, "Ready")
    assert ready is not None
    assert ready["status"] == "True"
    (node,) = (await env.client.list(NODE)).items
    assert node["metadata"]["name"] == claim["status"]["nodeName"]
    assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "Standard_NC6s_v3"
    assert node["metadata"]["labels"]["kaito.sh/workspace"] == SEED_NAME
    assert ws["status"]["workerNodes"] == [node["metadata"]["name"]]

    sts = await env.client.get(STATEFUL_SET, SEED_NAME, namespace=NS)
    assert sts["spec"]["replicas"] == 1
    assert _gpu_limits(sts) == ["1"]
    assert _affinity_nodes(sts) == [node["metadata"]["name"]]
    assert sts["metadata"]["ownerReferences"][0]["uid"] == ws["metadata"]["uid"]
    svc = await env.client.get(SERVICE, SEED_NAME, namespace=NS)
    assert svc["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(80, 5000)]
    assert await env.names(SERVICE, SEED_NAME) == [SEED_NAME], "no headless Service for one node"
    (pod,) = (await env.client.list(POD, namespace=NS, label_selector=owned_by(SEED_NAME))).items
    assert pod["spec"]["nodeName"] == node["metadata"]["name"]
    assert pod["status"]["phase"] == "Running"


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
async def test_kubectl_get_workspace_shows_the_seeds_columns(env: Env) -> None:
    running = await env.start_operator()
    await _seed_ready(env)
    await running.stop()
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(env.kubeconfig),
        "get",
        "workspace",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    header, row, *rest = out.decode().splitlines()
    assert rest == []
    assert header.split() == [
        "NAME",
        "INSTANCE",
        "RESOURCEREADY",
        "INFERENCEREADY",
        "WORKSPACEREADY",
        "AGE",
    ]
    cells = row.split()
    assert cells[:5] == [SEED_NAME, "Standard_NC6s_v3", "True", "True", "True"]
    assert len(cells) == 6, row


async def test_a_model_over_two_nodes_gets_two_pods_and_a_headless_service(env: Env) -> None:
    await env.start_operator()
    name = "ws-llama"
    await env.client.create(
        WORKSPACE,
        inference_workspace(
            name, preset=LLAMA70, instance_type=A100X2, annotations={"kaito.sh/runtime": "vllm"}
        ),
        namespace=NS,
    )
    ws = await env.wait_ready(name)
    assert ws["status"]["targetNodeCount"] == 2
    claims = await env.names(NODE_CLAIM, name, namespaced=False)
    assert [c.rsplit("-", 1)[1] for c in claims] == ["0", "1"]
    nodes = await env.names(NODE, name, namespaced=False)
    assert nodes == claims
    assert sorted(ws["status"]["workerNodes"]) == nodes

    sts = await env.client.get(STATEFUL_SET, name, namespace=NS)
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["serviceName"] == f"{name}-headless"
    assert _gpu_limits(sts) == ["2"]
    assert sorted(_affinity_nodes(sts)) == nodes
    assert await env.names(SERVICE, name) == [name, f"{name}-headless"]
    headless = await env.client.get(SERVICE, f"{name}-headless", namespace=NS)
    assert headless["spec"]["clusterIP"] == "None"
    service = await env.client.get(SERVICE, name, namespace=NS)
    assert service["spec"]["selector"]["apps.kubernetes.io/pod-index"] == "0", "the leader only"
    pods = (await env.client.list(POD, namespace=NS, label_selector=owned_by(name))).items
    assert sorted(p["metadata"]["name"] for p in pods) == [f"{name}-0", f"{name}-1"]
    assert {p["spec"]["nodeName"] for p in pods} == set(nodes)
    assert all(p["status"]["phase"] == "Running" for p in pods)


async def test_own_nodes_are_used_and_no_nodeclaim_is_created(env: Env) -> None:
    for node in (
        gpu_node("gpu-b", {"apps": "phi-byo"}),
        gpu_node("gpu-a", {"apps": "phi-byo"}),
        gpu_node("gpu-other", {"apps": "something-else"}),
    ):
        await env.client.create(NODE, node)
    await env.start_operator(provisioner="byo", disable_node_auto_provisioning=True)
    name = "ws-byo"
    await env.client.create(
        WORKSPACE,
        inference_workspace(name, instance_type=None, selector={"apps": "phi-byo"}),
        namespace=NS,
    )
    ws = await env.wait_ready(name)
    assert condition(ws, "NodeClaimReady") is None, "no NodeClaims are involved"
    for type_ in ("ResourceReady", "NodesReady", "InferenceReady"):
        cond = condition(ws, type_)
        assert cond is not None
        assert cond["status"] == "True", describe(ws)
    assert ws["status"]["workerNodes"] == ["gpu-a"], "the first matching node by name"

    assert (await env.client.list(NODE_CLAIM)).items == []
    nodes = sorted(n["metadata"]["name"] for n in (await env.client.list(NODE)).items)
    assert nodes == ["gpu-a", "gpu-b", "gpu-other"], "no node created"
    sts = await env.client.get(STATEFUL_SET, name, namespace=NS)
    assert _affinity_nodes(sts) == ["gpu-a"]
    assert _gpu_limits(sts) == ["1"]
    (pod,) = (await env.client.list(POD, namespace=NS, label_selector=owned_by(name))).items
    assert pod["spec"]["nodeName"] == "gpu-a"


async def test_deleting_a_ready_workspace_leaves_nothing_behind(env: Env) -> None:
    running = await env.start_operator()
    name = "ws-gone"
    await env.client.create(WORKSPACE, inference_workspace(name), namespace=NS)
    await env.wait_ready(name)
    assert await env.names(NODE_CLAIM, name, namespaced=False)
    assert await env.names(CONFIG_MAP, name) == [f"{name}-inference-config"]

    await env.client.delete(WORKSPACE, name, namespace=NS)
    await env.wait_for(name, lambda ws: ws is None, what="the workspace to be gone", within=15)
    await env.settle(running)
    assert (await env.client.list(NODE_CLAIM)).items == []
    assert (await env.client.list(NODE)).items == []
    for kind in (STATEFUL_SET, SERVICE, CONFIG_MAP, POD):
        assert await env.names(kind, name) == [], kind.kind
    assert (await env.client.list(STATEFUL_SET, namespace=NS)).items == []
    assert (await env.client.list(POD, namespace=NS)).items == []
