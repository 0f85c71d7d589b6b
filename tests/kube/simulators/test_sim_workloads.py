"""StatefulSets and Deployments: pods, scheduling onto GPU nodes, failures, rollouts, scaling."""

from __future__ import annotations

from typing import Any

import pytest
from sim_support import (
    GPU_TOLERATION,
    StartSims,
    condition,
    cstatus,
    deployment,
    node,
    nodeclaim,
    statefulset,
)

from kaito.kube import DEPLOYMENT, NODE, NODE_CLAIM, POD, STATEFUL_SET, KubeClient
from kaito.kube.simulators import (
    ManualClock,
    Match,
    SimulatorConfig,
    Simulators,
    crash_loop,
    image_pull_error,
)

pytestmark = pytest.mark.timeout(20)

GPU_TAINT = [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]


async def pods_of(client: KubeClient, app: str) -> dict[str, dict[str, Any]]:
    listed = await client.list(POD, namespace="default", label_selector={"app": app})
    return {p["metadata"]["name"]: p for p in listed.items}


def waiting_reason(pod: dict[str, Any]) -> str | None:
    statuses = pod["status"].get("containerStatuses") or []
    return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None


async def test_workspace_statefulset_runs_on_its_gpu_nodeclaim(
    client: KubeClient, start_sims: StartSims
) -> None:
    """The kaito flow: a NodeClaim for the workspace, then a StatefulSet selecting its node."""
    sims = await start_sims()
    await client.create(
        NODE_CLAIM, nodeclaim("ws0123abcd", "Standard_NC12s_v3", labels={"apps": "phi-3"})
    )
    sts = statefulset(
        "phi-3", replicas=1, gpus=2, tolerations=[GPU_TOLERATION], node_selector={"apps": "phi-3"}
    )
    await client.create(STATEFUL_SET, sts)
    await sims.idle()

    pods = await pods_of(client, "phi-3")
    assert list(pods) == ["phi-3-0"]
    pod = pods["phi-3-0"]
    assert pod["spec"]["nodeName"] == "ws0123abcd"
    assert pod["status"]["phase"] == "Running"
    assert cstatus(pod, "Ready") == "True"
    assert cstatus(pod, "PodScheduled") == "True"
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    assert pod["status"]["podIP"]
    assert pod["status"]["hostIP"]
    labels = pod["metadata"]["labels"]
    assert labels["statefulset.kubernetes.io/pod-name"] == "phi-3-0"
    assert labels["apps.kubernetes.io/pod-index"] == "0"
    assert pod["spec"]["hostname"] == "phi-3-0"
    assert pod["spec"]["subdomain"] == "phi-3-headless"
    [owner] = pod["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("StatefulSet", "phi-3", True)

    status = (await client.get(STATEFUL_SET, "phi-3", namespace="default"))["status"]
    assert status["replicas"] == 1
    assert status["readyReplicas"] == 1
    assert status["availableReplicas"] == 1
    assert status["observedGeneration"] == 1
    assert status["currentRevision"] == status["updateRevision"]
    assert status["updateRevision"].startswith("phi-3-")
    assert labels["controller-revision-hash"] == status["updateRevision"]


async def test_gpu_pods_share_a_node_until_its_gpus_run_out(
    client: KubeClient, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await client.create(NODE, node("gpu-node", gpus=2, taints=GPU_TAINT))
    await client.create(STATEFUL_SET, statefulset("llm", 3, gpus=1, tolerations=[GPU_TOLERATION]))
    await sims.idle()
    pods = await pods_of(client, "llm")
    running = sorted(n for n, p in pods.items() if p["status"]["phase"] == "Running")
    pending = [p for p in pods.values() if p["status"]["phase"] == "Pending"]
    assert len(running) == 2
    [waiting] = pending
    scheduled = condition(waiting, "PodScheduled")
    assert scheduled is not None
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert scheduled["message"] == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    status = (await client.get(STATEFUL_SET, "llm", namespace="default"))["status"]
    assert (status["replicas"], status["readyReplicas"]) == (3, 2)

    # Another GPU node wakes the waiting pod.
    await client.create(NODE, node("gpu-node-2", gpus=1, taints=GPU_TAINT))
    await sims.idle()
    pods = await pods_of(client, "llm")
    assert all(p["status"]["phase"] == "Running" for p in pods.values())
    assert (await client.get(STATEFUL_SET, "llm", namespace="default"))["status"][
        "readyReplicas"
    ] == 3


@pytest.mark.parametrize(
    ("nodes", "template", "message"),
    [
        pytest.param(
            [node(f"cpu-{i}") for i in range(3)],
            {"gpus": 1},
            "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            id="no-gpu-node",
        ),
        pytest.param(
            [node("gpu-0", gpus=8, taints=GPU_TAINT)],
            {"gpus": 1},
            "0/1 nodes are available: 1 node(s) had untolerated taint {sku: gpu}.",
            id="taint-not-tolerated",
        ),
        pytest.param(
            [node("gpu-0", gpus=8, labels={"apps": "other"}), node("gpu-1", gpus=8)],
            {
                "gpus": 1,
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "apps", "operator": "In", "values": ["mine"]}
                                    ]
                                }
                            ]
                        }
                    }
                },
            },
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.",
            id="affinity-mismatch",
        ),
        pytest.param(
            [
                node("gpu-0", gpus=8, taints=GPU_TAINT),
                node("cpu-0"),
                node("cpu-1", cpu="1"),
                node("not-ready", gpus=8, ready=False),
            ],
            {"gpus": 1, "cpu": "2"},
            "0/4 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint "
            "{node.kubernetes.io/not-ready: }, 1 node(s) had untolerated taint {sku: gpu}, "
            "2 Insufficient nvidia.com/gpu.",
            id="mixed-reasons",
        ),
        pytest.param(
            [
                node("gpu-0", gpus=8, taints=GPU_TAINT),
                node("cpu-0"),
                node("mine-cpu", labels={"apps": "mine"}),
                node("mine-cordoned", gpus=8, labels={"apps": "mine"}),
            ],
            {"gpus": 1, "node_selector": {"apps": "mine"}},
            "0/4 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match "
            "Pod's node affinity/selector, 1 node(s) had untolerated taint {sku: gpu}, "
            "1 node(s) were unschedulable.",
            id="selector-with-mixed-reasons",
        ),
    ],
)
async def test_unschedulable_pods_get_the_schedulers_message(
    client: KubeClient,
    start_sims: StartSims,
    nodes: list[dict[str, Any]],
    template: dict[str, Any],
    message: str,
) -> None:
    # Node readiness is off here, so a node seeded NotReady stays so.
    sims = await start_sims(SimulatorConfig(nodes=False))
    for obj in nodes:
        if obj["metadata"]["name"] == "mine-cordoned":
            obj["spec"]["unschedulable"] = True
        await client.create(NODE, obj)
    await client.create(STATEFUL_SET, statefulset("waiting", 1, **template))
    await sims.idle()
    pod = (await pods_of(client, "waiting"))["waiting-0"]
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    scheduled = condition(pod, "PodScheduled")
    assert scheduled is not None
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert scheduled["message"] == message
    status = (await client.get(STATEFUL_SET, "waiting", namespace="default"))["status"]
    assert (status["replicas"], status["readyReplicas"]) == (1, 0)


async def test_image_pull_error(client: KubeClient, start_sims: StartSims) -> None:
    clock = ManualClock()
    config = SimulatorConfig(
        stages=image_pull_error(Match(fields={"spec.containers.image": "*:missing"}))
    )
    sims = await start_sims(config, clock=clock)
    await client.create(NODE, node("n1", gpus=1))
    await client.create(STATEFUL_SET, statefulset("broken", 1, image="example.com/model:missing"))
    await client.create(STATEFUL_SET, statefulset("fine", 1))
    await sims.idle()
    clock.advance(0.05)
    await sims.idle()

    pod = (await pods_of(client, "broken"))["broken-0"]
    assert pod["status"]["phase"] == "Pending"
    assert waiting_reason(pod) == "ErrImagePull"
    assert (
        "example.com/model:missing"
        in pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    )
    assert cstatus(pod, "Ready") == "False"
    assert (await pods_of(client, "fine"))["fine-0"]["status"]["phase"] == "Running"

    clock.advance(0.05)
    await sims.idle()
    pod = (await pods_of(client, "broken"))["broken-0"]
    assert waiting_reason(pod) == "ImagePullBackOff"
    status = (await client.get(STATEFUL_SET, "broken", namespace="default"))["status"]
    assert status["readyReplicas"] == 0


async def test_crash_loop(client: KubeClient, start_sims: StartSims) -> None:
    clock = ManualClock()
    crash = crash_loop(Match(annotations={"sim.kaito.sh/crash": "*"}), max_restarts=3)
    sims = await start_sims(SimulatorConfig(stages=crash), clock=clock)
    await client.create(NODE, node("n1"))
    sts = statefulset("crashy", 1)
    sts["spec"]["template"]["metadata"]["annotations"] = {"sim.kaito.sh/crash": "yes"}
    await client.create(STATEFUL_SET, sts)
    await sims.idle()
    clock.advance(0.05)
    await sims.idle()

    pod = (await pods_of(client, "crashy"))["crashy-0"]
    assert pod["status"]["phase"] == "Running"
    assert waiting_reason(pod) == "CrashLoopBackOff"
    container = pod["status"]["containerStatuses"][0]
    assert container["restartCount"] == 1
    assert container["lastState"]["terminated"]["exitCode"] == 1
    assert cstatus(pod, "Ready") == "False"

    for _ in range(5):
        clock.advance(0.05)
        await sims.idle()
    pod = (await pods_of(client, "crashy"))["crashy-0"]
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 3  # bounded
    assert sims.pending() == []


async def test_statefulset_rolling_update_replaces_pods_from_the_highest_ordinal(
    client: KubeClient, start_sims: StartSims
) -> None:
    clock = ManualClock()
    sims = await start_sims(clock=clock)
    await client.create(NODE, node("n1", gpus=8))
    await client.create(STATEFUL_SET, statefulset("roll", 3, gpus=1))
    await sims.idle()
    clock.advance(0.05)
    await sims.idle()
    before = (await client.get(STATEFUL_SET, "roll", namespace="default"))["status"]
    assert before["readyReplicas"] == 3
    old_revision = before["updateRevision"]

    sts = await client.get(STATEFUL_SET, "roll", namespace="default")
    sts["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/model:v2"
    await client.update(STATEFUL_SET, sts)
    await sims.idle()

    replaced: list[str] = []
    for _ in range(3):
        pods = await pods_of(client, "roll")
        status = (await client.get(STATEFUL_SET, "roll", namespace="default"))["status"]
        assert status["updateRevision"] != old_revision
        assert status["currentRevision"] == old_revision
        assert status["observedGeneration"] == 2
        fresh = [n for n, p in pods.items() if p["status"]["phase"] == "Pending"]
        assert len(fresh) == 1, pods  # one pod at a time
        replaced.append(fresh[0])
        assert (
            pods[fresh[0]]["metadata"]["labels"]["controller-revision-hash"]
            == (status["updateRevision"])
        )
        clock.advance(0.05)  # the new pod starts; the next old one goes
        await sims.idle()
    assert replaced == ["roll-2", "roll-1", "roll-0"]
    status = (await client.get(STATEFUL_SET, "roll", namespace="default"))["status"]
    assert status["currentRevision"] == status["updateRevision"]
    assert (status["readyReplicas"], status["updatedReplicas"], status["currentReplicas"]) == (
        3,
        3,
        3,
    )
    pods = await pods_of(client, "roll")
    assert {p["spec"]["containers"][0]["image"] for p in pods.values()} == {"example.com/model:v2"}


async def test_ordered_ready_creates_one_pod_at_a_time(
    client: KubeClient, start_sims: StartSims
) -> None:
    clock = ManualClock()
    sims = await start_sims(clock=clock)
    await client.create(NODE, node("n1"))
    sts = statefulset("ordered", 3)
    del sts["spec"]["podManagementPolicy"]  # OrderedReady, the default
    await client.create(STATEFUL_SET, sts)
    await sims.idle()
    for expected in (
        ["ordered-0"],
        ["ordered-0", "ordered-1"],
        ["ordered-0", "ordered-1", "ordered-2"],
    ):
        assert sorted(await pods_of(client, "ordered")) == expected
        clock.advance(0.05)
        await sims.idle()
    status = (await client.get(STATEFUL_SET, "ordered", namespace="default"))["status"]
    assert status["readyReplicas"] == 3


async def test_scaling_down_removes_the_highest_ordinals(
    client: KubeClient, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await client.create(NODE, node("n1"))
    await client.create(STATEFUL_SET, statefulset("scale", 3))
    await sims.idle()
    assert len(await pods_of(client, "scale")) == 3
    await client.patch(STATEFUL_SET, "scale", {"spec": {"replicas": 1}}, namespace="default")
    await sims.idle()
    assert list(await pods_of(client, "scale")) == ["scale-0"]
    status = (await client.get(STATEFUL_SET, "scale", namespace="default"))["status"]
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)


async def test_deleting_the_owner_deletes_its_pods(
    client: KubeClient, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await client.create(NODE, node("n1"))
    await client.create(STATEFUL_SET, statefulset("owned", 2))
    await sims.idle()
    assert len(await pods_of(client, "owned")) == 2
    await client.delete(STATEFUL_SET, "owned", namespace="default")
    await sims.idle()
    assert await pods_of(client, "owned") == {}


async def test_deployment_pods_status_and_rollout(
    client: KubeClient, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await client.create(NODE, node("n1", gpus=4, taints=GPU_TAINT))
    await client.create(DEPLOYMENT, deployment("web", 2, gpus=1, tolerations=[GPU_TOLERATION]))
    await sims.idle()
    pods = await pods_of(client, "web")
    assert len(pods) == 2
    hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in pods.values()}
    [first_hash] = hashes
    assert all(name.startswith(f"web-{first_hash}-") for name in pods)
    assert all(p["status"]["phase"] == "Running" for p in pods.values())
    status = (await client.get(DEPLOYMENT, "web", namespace="default"))["status"]
    assert (status["replicas"], status["readyReplicas"], status["availableReplicas"]) == (2, 2, 2)
    assert status["updatedReplicas"] == 2
    assert cstatus({"status": status}, "Available") == "True"
    progressing = condition({"status": status}, "Progressing")
    assert progressing is not None
    assert progressing["reason"] == "NewReplicaSetAvailable"

    dep = await client.get(DEPLOYMENT, "web", namespace="default")
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "example.com/web:v2"
    await client.update(DEPLOYMENT, dep)
    await sims.idle()
    pods = await pods_of(client, "web")
    assert len(pods) == 2
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in pods.values()} != hashes
    assert {p["spec"]["containers"][0]["image"] for p in pods.values()} == {"example.com/web:v2"}
    status = (await client.get(DEPLOYMENT, "web", namespace="default"))["status"]
    assert (status["readyReplicas"], status["updatedReplicas"], status["observedGeneration"]) == (
        2,
        2,
        2,
    )

    await client.patch(DEPLOYMENT, "web", {"spec": {"replicas": 1}}, namespace="default")
    await sims.idle()
    assert len(await pods_of(client, "web")) == 1


async def test_a_converged_cluster_costs_no_writes(
    client: KubeClient, start_sims: StartSims
) -> None:
    sims: Simulators = await start_sims()
    await client.create(NODE_CLAIM, nodeclaim("ws-calm", labels={"apps": "calm"}))
    await client.create(
        STATEFUL_SET,
        statefulset(
            "calm", 1, gpus=1, tolerations=[GPU_TOLERATION], node_selector={"apps": "calm"}
        ),
    )
    await sims.idle()
    writes = client.requests.writes
    # An unrelated change to the owner's metadata re-runs its sync, which writes nothing.
    await client.patch(
        STATEFUL_SET, "calm", {"metadata": {"labels": {"touched": "yes"}}}, namespace="default"
    )
    await sims.idle()
    assert client.requests.writes == writes + 1  # only the test's own patch
