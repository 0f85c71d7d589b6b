"""NodeClaims and Nodes: Karpenter's lifecycle, its failures, termination, heartbeats."""

from __future__ import annotations

import pytest
from sim_support import StartSims, condition, cstatus, eventually, nodeclaim

from kaito.kube import NODE, NODE_CLAIM, KubeClient, NotFound
from kaito.kube.simulators import (
    TERMINATION_FINALIZER,
    InstanceType,
    ManualClock,
    Match,
    SimulatorConfig,
    builtin_instance_types,
    insufficient_capacity,
    never_registers,
)

pytestmark = pytest.mark.timeout(20)


async def test_nodeclaim_becomes_ready_with_a_gpu_node(
    client: KubeClient, start_sims: StartSims
) -> None:
    sims = await start_sims()
    claim = nodeclaim(
        "ws1a2b3c4d5",
        "Standard_NC24ads_A100_v4",
        labels={"kaito.sh/workspace": "phi-3", "apps": "phi-3"},
    )
    await client.create(NODE_CLAIM, claim)
    await sims.idle()

    stored = await client.get(NODE_CLAIM, "ws1a2b3c4d5")
    assert TERMINATION_FINALIZER in stored["metadata"]["finalizers"]
    for ctype in ("Launched", "Registered", "Initialized", "Ready"):
        assert cstatus(stored, ctype) == "True", ctype
    status = stored["status"]
    assert status["nodeName"] == "ws1a2b3c4d5"
    assert status["providerID"] == "kaito-sim://ws1a2b3c4d5"
    assert status["capacity"]["nvidia.com/gpu"] == "1"  # the catalog: one A100 per NC24ads
    assert status["allocatable"]["nvidia.com/gpu"] == "1"
    assert stored["metadata"]["labels"]["node.kubernetes.io/instance-type"] == (
        "Standard_NC24ads_A100_v4"
    )

    node = await client.get(NODE, "ws1a2b3c4d5")
    labels = node["metadata"]["labels"]
    assert labels["node.kubernetes.io/instance-type"] == "Standard_NC24ads_A100_v4"
    assert labels["karpenter.sh/nodepool"] == "kaito"
    assert labels["topology.kubernetes.io/zone"] == "zone-1"
    assert labels["kubernetes.io/hostname"] == "ws1a2b3c4d5"
    assert labels["kaito.sh/workspace"] == "phi-3"
    assert labels["apps"] == "phi-3"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "1"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    assert node["status"]["capacity"]["cpu"] == "24"
    assert node["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    assert node["spec"]["providerID"] == "kaito-sim://ws1a2b3c4d5"
    assert cstatus(node, "Ready") == "True"
    assert node["metadata"]["ownerReferences"][0]["uid"] == stored["metadata"]["uid"]
    assert sims.pending() == []


async def test_zone_and_requirements_become_node_labels(
    client: KubeClient, start_sims: StartSims
) -> None:
    sims = await start_sims(SimulatorConfig(zone="westus2-1"))
    claim = nodeclaim("ws-zone", "Standard_NC6s_v3")
    claim["spec"]["requirements"].append(
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eastus-2", "eastus-3"]}
    )
    await client.create(NODE_CLAIM, claim)
    await sims.idle()
    node = await client.get(NODE, "ws-zone")
    assert node["metadata"]["labels"]["topology.kubernetes.io/zone"] == "eastus-2"
    assert node["metadata"]["labels"]["kubernetes.io/os"] == "linux"  # single-valued requirement
    other = nodeclaim("ws-default-zone", "Standard_NC6s_v3")
    await client.create(NODE_CLAIM, other)
    await sims.idle()
    assert (await client.get(NODE, "ws-default-zone"))["metadata"]["labels"][
        "topology.kubernetes.io/zone"
    ] == "westus2-1"


async def test_startup_taints_are_removed_at_initialization(
    client: KubeClient, start_sims: StartSims
) -> None:
    clock = ManualClock()
    sims = await start_sims(clock=clock)
    startup = [{"key": "example.com/driver-loading", "effect": "NoSchedule"}]
    await client.create(NODE_CLAIM, nodeclaim("ws-startup", startup_taints=startup))
    await sims.idle()  # the simulators have seen the claim: the launch waits for the clock
    clock.advance(0.1)  # launch
    await sims.idle()
    clock.advance(0.1)  # register: the node carries both kinds of taints
    await sims.idle()
    node = await client.get(NODE, "ws-startup")
    keys = {t["key"] for t in node["spec"]["taints"]}
    assert keys == {"sku", "example.com/driver-loading"}
    clock.advance(0.1)  # the node becomes Ready
    await sims.idle()
    clock.advance(0.1)  # initialized
    await sims.idle()
    node = await client.get(NODE, "ws-startup")
    assert [t["key"] for t in node["spec"]["taints"]] == ["sku"]
    assert node["metadata"]["labels"]["karpenter.sh/initialized"] == "true"
    stored = await client.get(NODE_CLAIM, "ws-startup")
    assert cstatus(stored, "Initialized") == "True"


async def test_gpu_counts_come_from_the_callers_table(
    client: KubeClient, start_sims: StartSims
) -> None:
    table: dict[str, int | InstanceType] = {
        "gpu-box": 4,
        "big-box": InstanceType(gpus=8, cpu="96", memory="1Ti"),
    }
    sims = await start_sims(SimulatorConfig(instance_types=table))
    for name, itype in (("a", "gpu-box"), ("b", "big-box"), ("c", "Standard_NC6s_v3")):
        await client.create(NODE_CLAIM, nodeclaim(name, itype))
    await sims.idle()
    assert (await client.get(NODE, "a"))["status"]["capacity"]["nvidia.com/gpu"] == "4"
    big = (await client.get(NODE, "b"))["status"]["capacity"]
    assert (big["nvidia.com/gpu"], big["cpu"], big["memory"]) == ("8", "96", "1Ti")
    # A given table replaces the catalog: an instance type it lacks has no GPUs.
    assert "nvidia.com/gpu" not in (await client.get(NODE, "c"))["status"]["capacity"]


def test_builtin_instance_types_follow_the_sku_catalog() -> None:
    table = builtin_instance_types()
    assert table["Standard_NC24ads_A100_v4"].gpus == 1
    assert table["Standard_ND96asr_v4"].gpus == 8
    assert table["Standard_ND96asr_A100_v4"] == table["Standard_ND96asr_v4"]  # an alias
    assert table["Standard_NC24ads_A100_v4"].cpu == "24"


async def test_insufficient_capacity(client: KubeClient, start_sims: StartSims) -> None:
    config = SimulatorConfig(stages=[insufficient_capacity(Match(labels={"capacity": "none"}))])
    sims = await start_sims(config)
    await client.create(
        NODE_CLAIM, nodeclaim("ws-ice", "Standard_ND96amsr_A100_v4", labels={"capacity": "none"})
    )
    await client.create(NODE_CLAIM, nodeclaim("ws-fine", "Standard_NC6s_v3"))
    await sims.idle()

    failed = await client.get(NODE_CLAIM, "ws-ice")
    launched = condition(failed, "Launched")
    assert launched is not None
    assert launched["status"] == "False"
    assert launched["reason"] == "InsufficientCapacity"
    assert "Standard_ND96amsr_A100_v4" in launched["message"]
    assert "all requested instance types were unavailable during launch" in launched["message"]
    assert condition(failed, "Registered") is None
    with pytest.raises(NotFound):
        await client.get(NODE, "ws-ice")
    # Only the selected claim fails.
    assert cstatus(await client.get(NODE_CLAIM, "ws-fine"), "Ready") == "True"


async def test_never_registers(client: KubeClient, start_sims: StartSims) -> None:
    config = SimulatorConfig(stages=[never_registers(Match(name="ws-stuck*"))])
    sims = await start_sims(config)
    await client.create(NODE_CLAIM, nodeclaim("ws-stuck-1"))
    await sims.idle()

    stuck = await client.get(NODE_CLAIM, "ws-stuck-1")
    assert cstatus(stuck, "Launched") == "True"
    assert condition(stuck, "Registered") is None
    assert "nodeName" not in stuck["status"]
    with pytest.raises(NotFound):
        await client.get(NODE, "ws-stuck-1")
    [held] = sims.pending()
    assert (held.name, held.stage, held.due_in) == (
        "ws-stuck-1",
        "nodeclaim-never-registers",
        float("inf"),
    )


async def test_deleting_a_nodeclaim_removes_its_node_then_the_finalizer(
    client: KubeClient, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await client.create(NODE_CLAIM, nodeclaim("ws-gone"))
    await sims.idle()
    await client.get(NODE, "ws-gone")

    result = await client.delete(NODE_CLAIM, "ws-gone")
    assert result.terminating  # the finalizer holds it until the node is gone
    await sims.idle()
    with pytest.raises(NotFound):
        await client.get(NODE, "ws-gone")
    with pytest.raises(NotFound):
        await client.get(NODE_CLAIM, "ws-gone")
    assert sims.runs["nodeclaim-terminate"] >= 1


async def test_deleting_a_nodeclaim_before_it_launches(
    client: KubeClient, start_sims: StartSims
) -> None:
    clock = ManualClock()
    sims = await start_sims(clock=clock)
    await client.create(NODE_CLAIM, nodeclaim("ws-early"))
    await sims.idle()  # only the finalizer is added; the launch waits for the clock
    assert (await client.get(NODE_CLAIM, "ws-early"))["metadata"]["finalizers"] == [
        TERMINATION_FINALIZER
    ]
    await client.delete(NODE_CLAIM, "ws-early")
    await sims.idle()
    with pytest.raises(NotFound):
        await client.get(NODE_CLAIM, "ws-early")
    assert sims.pending() == []


async def test_heartbeats_are_off_by_default(client: KubeClient, start_sims: StartSims) -> None:
    clock = ManualClock()
    sims = await start_sims(clock=clock)
    await client.create(NODE_CLAIM, nodeclaim("ws-quiet"))
    await sims.idle()
    for _ in range(4):
        clock.advance(0.05)
        await sims.idle()
    node = await client.get(NODE, "ws-quiet")
    version = node["metadata"]["resourceVersion"]
    clock.advance(3600)
    await sims.idle()
    assert (await client.get(NODE, "ws-quiet"))["metadata"]["resourceVersion"] == version
    assert "node-heartbeat" not in sims.runs
    assert sims.pending() == []


async def test_heartbeats_when_enabled(client: KubeClient, start_sims: StartSims) -> None:
    clock = ManualClock()
    sims = await start_sims(SimulatorConfig(heartbeat_interval=10.0), clock=clock)
    await client.create(NODE_CLAIM, nodeclaim("ws-beat"))
    await sims.idle()
    for _ in range(4):
        clock.advance(0.05)
        await sims.idle()
    before = condition(await client.get(NODE, "ws-beat"), "Ready")
    assert before is not None
    [waiting] = [p for p in sims.pending() if p.kind == "Node"]
    assert waiting.stage == "node-heartbeat"
    # Ready at 0.15 s (launch, register, kubelet), so the first beat is due at 10.15 s; the
    # clock now stands at 0.2 s.
    assert waiting.due_in == pytest.approx(9.95)

    clock.advance(9.9)
    await sims.idle()
    assert condition(await client.get(NODE, "ws-beat"), "Ready") == before
    clock.advance(0.1)
    await sims.idle()
    after = condition(await client.get(NODE, "ws-beat"), "Ready")
    assert after is not None
    assert after["lastHeartbeatTime"] > before["lastHeartbeatTime"]
    assert after["lastTransitionTime"] == before["lastTransitionTime"]
    assert sims.runs["node-heartbeat"] == 1


async def test_idle_does_not_wait_for_heartbeats(client: KubeClient, start_sims: StartSims) -> None:
    """Heartbeats never end, so on a real clock `idle` must not wait for them."""
    sims = await start_sims(SimulatorConfig(heartbeat_interval=0.1))
    await client.create(NODE_CLAIM, nodeclaim("ws-real-beat"))
    await sims.idle(limit=5.0)
    assert cstatus(await client.get(NODE_CLAIM, "ws-real-beat"), "Ready") == "True"

    async def beating() -> None:
        assert sims.runs.get("node-heartbeat", 0) >= 2

    await eventually(beating)
