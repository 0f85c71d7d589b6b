"""End to end through the operator: what a workspace says when something goes wrong.

The failures are the simulators' stages, selected by the workspace labels kaito puts on its
NodeClaims, Nodes and pods: Karpenter without capacity for the instance type, a NodeClaim whose
node never registers, an image that cannot be pulled, a node an administrator tainted after it
came up (so the pod fits nowhere), a server that keeps crashing. The operator alone notices
them, through its watches and its requeues; the test only reads the workspaces' conditions and
the Events recorded on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from e2e_support import (
    NS,
    Env,
    MakeEnv,
    condition,
    describe,
    inference_workspace,
    is_condition,
    owned_by,
)

from kaito.kube import EVENT, NODE, NODE_CLAIM, POD, STATEFUL_SET, WORKSPACE, NotFound
from kaito.kube.simulators import (
    Match,
    Patch,
    Stage,
    crash_loop,
    image_pull_error,
    insufficient_capacity,
    never_registers,
)

pytestmark = pytest.mark.timeout(30)

GPU_TAINT = {"key": "sku", "value": "gpu", "effect": "NoSchedule"}
MAINTENANCE_TAINT = {"key": "maintenance", "value": "true", "effect": "NoSchedule"}


def _lacks_maintenance_taint(node: Mapping[str, Any]) -> bool:
    taints = (node.get("spec") or {}).get("taints") or []
    return not any(t.get("key") == MAINTENANCE_TAINT["key"] for t in taints)


def tainted_for_maintenance(workspace: str) -> Stage:
    """The workspace's nodes get a taint its pods do not tolerate as soon as they register
    (they still become Ready, so the provisioner hands them over)."""
    return Stage(
        "node-maintenance-taint",
        NODE,
        Patch(spec={"taints": [GPU_TAINT, MAINTENANCE_TAINT]}),
        match=Match(labels=owned_by(workspace)),
        when=_lacks_maintenance_taint,
    )


async def _events(env: Env, name: str) -> set[tuple[str, str]]:
    items = (await env.client.list(EVENT, namespace=NS)).items
    return {
        (str(e["reason"]), str(e["type"]))
        for e in items
        if (e.get("involvedObject") or {}).get("name") == name
        and (e.get("involvedObject") or {}).get("kind") == "Workspace"
    }


async def _has_event(env: Env, name: str, reason: str, type_: str, within: float = 5.0) -> bool:
    """Whether an Event (reason, type) is recorded on the workspace within `within` seconds
    (the reconciler records it right after the status write that a test waits for)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (reason, type_) not in (seen := await _events(env, name)):
        if loop.time() > deadline:
            print(f"events of {name}: {sorted(seen)}")
            return False
        await asyncio.sleep(0.05)
    return True


def _cond(ws: Mapping[str, Any] | None, type_: str) -> dict[str, Any]:
    cond = condition(ws, type_)
    assert cond is not None, f"{type_} missing:\n{describe(ws)}"
    return cond


async def test_a_nodeclaim_that_never_registers_fails_after_the_ready_timeout(
    make_env: MakeEnv,
) -> None:
    env = await make_env(never_registers(Match(labels=owned_by("ws-stuck"))))
    # No watch event comes when the timeout passes: the provisioner's requeue brings it back.
    await env.start_operator(provisioner_options={"ready-timeout": "1s"})
    await env.client.create(WORKSPACE, inference_workspace("ws-stuck"), namespace=NS)
    ws = await env.wait_for(
        "ws-stuck",
        is_condition("ResourceReady", "False", "NodeClaimNotReady"),
        what="ResourceReady False NodeClaimNotReady",
        within=10,
    )
    (claim,) = await env.names(NODE_CLAIM, "ws-stuck", namespaced=False)
    message = f"NodeClaim {claim} is not Ready 1s after its creation; Registered not reported yet"
    for type_ in ("ResourceReady", "NodeClaimReady", "NodesReady", "WorkspaceReady"):
        cond = _cond(ws, type_)
        assert (cond["status"], cond["reason"], cond["message"]) == (
            "False",
            "NodeClaimNotReady",
            message,
        ), describe(ws)
    inference = _cond(ws, "InferenceReady")
    assert (inference["status"], inference["reason"]) == ("False", "WaitingForNodes")
    assert message in inference["message"]
    assert ws is not None
    assert ws["status"]["state"] == "Failed"
    assert await _has_event(env, "ws-stuck", "NodeClaimNotReady", "Warning")
    assert await _has_event(env, "ws-stuck", "WaitingForNodes", "Normal"), "it waited first"
    with pytest.raises(NotFound):
        await env.client.get(STATEFUL_SET, "ws-stuck", namespace=NS)


async def test_each_failure_shows_its_condition_reason_and_message(make_env: MakeEnv) -> None:
    env = await make_env(
        insufficient_capacity(Match(labels=owned_by("ws-nocap"))),
        image_pull_error(Match(labels=owned_by("ws-pull"))),
        tainted_for_maintenance("ws-taint"),
        crash_loop(Match(labels=owned_by("ws-crash")), max_restarts=3),
    )
    await env.start_operator(concurrency=4)
    for name in ("ws-nocap", "ws-pull", "ws-taint", "ws-crash"):
        await env.client.create(WORKSPACE, inference_workspace(name), namespace=NS)

    # Karpenter has no capacity: the NodeClaim's Launched=False message, and no workload.
    ws = await env.wait_for(
        "ws-nocap",
        is_condition("ResourceReady", "False", "NodeClaimLaunchFailed"),
        what="ResourceReady False NodeClaimLaunchFailed",
    )
    (claim,) = await env.names(NODE_CLAIM, "ws-nocap", namespaced=False)
    resource = _cond(ws, "ResourceReady")
    assert resource["message"] == (
        f"NodeClaim {claim} failed to launch: insufficient capacity for instance type "
        "Standard_NC6s_v3: all requested instance types were unavailable during launch "
        "(InsufficientCapacity)"
    )
    for type_ in ("NodeClaimReady", "NodesReady", "WorkspaceReady"):
        cond = _cond(ws, type_)
        assert (cond["status"], cond["reason"]) == ("False", "NodeClaimLaunchFailed"), type_
    assert ws is not None
    assert ws["status"]["state"] == "Failed"
    assert await _has_event(env, "ws-nocap", "NodeClaimLaunchFailed", "Warning")
    assert await env.names(STATEFUL_SET, "ws-nocap") == []

    # The image cannot be pulled: named, with the kubelet's message.
    ws = await env.wait_for(
        "ws-pull",
        is_condition("InferenceReady", "False", "ImagePullFailed"),
        what="InferenceReady False ImagePullFailed",
    )
    sts = await env.client.get(STATEFUL_SET, "ws-pull", namespace=NS)
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    inference = _cond(ws, "InferenceReady")
    assert inference["message"].startswith(f"image {image} cannot be pulled: ")
    assert inference["message"].endswith("(container inference of pod ws-pull-0)")
    assert _cond(ws, "NodesReady")["status"] == "True", "the nodes are fine"
    ready = _cond(ws, "WorkspaceReady")
    assert (ready["status"], ready["reason"]) == ("False", "ImagePullFailed")
    assert await _has_event(env, "ws-pull", "ImagePullFailed", "Warning")

    # The node is Ready but tainted: the pod fits nowhere; the scheduler's message says why.
    # Wait for WorkspaceReady too: while the taint lands, the NodeClaim may briefly report
    # not Ready, and WorkspaceReady names the first condition that is not True.
    ws = await env.wait_for(
        "ws-taint",
        lambda w: (
            is_condition("InferenceReady", "False", "PodUnschedulable")(w)
            and is_condition("WorkspaceReady", "False", "PodUnschedulable")(w)
        ),
        what="InferenceReady and WorkspaceReady False PodUnschedulable",
    )
    inference = _cond(ws, "InferenceReady")
    assert inference["message"].startswith("pod ws-taint-0 cannot be scheduled: 0/")
    assert "node(s) had untolerated taint {maintenance: true}" in inference["message"]
    assert _cond(ws, "NodesReady")["status"] == "True"
    (pod,) = (await env.client.list(POD, namespace=NS, label_selector=owned_by("ws-taint"))).items
    assert not pod["spec"].get("nodeName")
    ready = _cond(ws, "WorkspaceReady")
    assert (ready["status"], ready["reason"]) == ("False", "PodUnschedulable")

    # The server keeps crashing: the restarts and the last exit code.
    ws = await env.wait_for(
        "ws-crash",
        lambda w: (
            is_condition("InferenceReady", "False", "CrashLoopBackOff")(w)
            and "restarted 3 times" in _cond(w, "InferenceReady")["message"]
        ),
        what="InferenceReady False CrashLoopBackOff after 3 restarts",
    )
    assert _cond(ws, "InferenceReady")["message"] == (
        "container inference of pod ws-crash-0 keeps crashing (restarted 3 times; "
        "last exit code 1 (Error))"
    )
    assert await _has_event(env, "ws-crash", "CrashLoopBackOff", "Warning")

    # Only the failing steps fail: no workspace got more than one NodeClaim.
    claims = [
        c["metadata"]["labels"]["kaito.sh/workspace"]
        for c in (await env.client.list(NODE_CLAIM)).items
    ]
    assert sorted(claims) == ["ws-crash", "ws-nocap", "ws-pull", "ws-taint"]
