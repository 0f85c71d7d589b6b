"""Stages as data, the clock that times them, the configuration, and resilience.

Custom stages (a `Patch` with `NOW`, a `Delete` timed by a field) on kinds no built-in
simulator handles; the manual clock deciding when each step happens; the stage order;
switching simulators off; retrying failed writes; surviving a lost watch and `410 Gone`.
"""

from __future__ import annotations

import random

import pytest
from sim_support import StartSims, condition, cstatus, eventually, node, nodeclaim, statefulset

from kaito.kube import (
    CONFIG_MAP,
    NODE,
    NODE_CLAIM,
    POD,
    SERVICE,
    STATEFUL_SET,
    KubeClient,
    NotFound,
)
from kaito.kube.emulator import Emulator
from kaito.kube.simulators import (
    NOW,
    Delay,
    Delays,
    Delete,
    ManualClock,
    Match,
    Patch,
    RealClock,
    SimulatorConfig,
    Stage,
    image_pull_error,
)

pytestmark = pytest.mark.timeout(20)


def service(name: str, kind: str = "LoadBalancer") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": kind, "ports": [{"port": 80, "targetPort": 5000}]},
    }


async def test_manual_clock_controls_delays(client: KubeClient, start_sims: StartSims) -> None:
    clock = ManualClock()
    sims = await start_sims(SimulatorConfig(delays=Delays(nodeclaim_launch=5.0)), clock=clock)
    await client.create(NODE_CLAIM, nodeclaim("ws-timed"))
    await sims.idle()
    [launch] = sims.pending()
    assert (launch.stage, launch.due_in) == ("nodeclaim-launch", 5.0)

    clock.advance(4.9)
    await sims.idle()
    assert condition(await client.get(NODE_CLAIM, "ws-timed"), "Launched") is None
    assert sims.pending()[0].due_in == pytest.approx(0.1)

    clock.advance(0.1)
    await sims.idle()
    stored = await client.get(NODE_CLAIM, "ws-timed")
    assert cstatus(stored, "Launched") == "True"
    launched = condition(stored, "Launched")
    assert launched is not None
    assert launched["lastTransitionTime"] == "2025-01-01T00:00:05Z"
    assert condition(stored, "Registered") is None
    [register] = sims.pending()
    assert register.stage == "nodeclaim-register"
    assert register.due_in == pytest.approx(0.05)


async def test_a_patch_stage_on_a_kind_without_a_simulator(
    client: KubeClient, start_sims: StartSims
) -> None:
    """A stand-in for a cloud load balancer: LoadBalancer Services get an ingress IP."""
    clock = ManualClock()
    lb = Stage(
        "service-load-balancer",
        SERVICE,
        Patch(
            metadata={"annotations": {"sim.kaito.sh/provisioned-at": NOW}},
            status={"loadBalancer": {"ingress": [{"ip": "10.0.0.80"}]}},
        ),
        match=Match(fields={"spec.type": "LoadBalancer"}),
        delay=1.0,
    )
    sims = await start_sims(SimulatorConfig(stages=[lb]), clock=clock)
    await client.create(SERVICE, service("inference"))
    await client.create(SERVICE, service("internal", kind="ClusterIP"))
    await sims.idle()
    waiting = await client.get(SERVICE, "inference", namespace="default")
    assert not (waiting.get("status") or {}).get("loadBalancer", {}).get("ingress")

    clock.advance(1.0)
    await sims.idle()
    svc = await client.get(SERVICE, "inference", namespace="default")
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "10.0.0.80"}]
    assert svc["metadata"]["annotations"]["sim.kaito.sh/provisioned-at"] == "2025-01-01T00:00:01Z"
    internal = await client.get(SERVICE, "internal", namespace="default")
    assert not (internal.get("status") or {}).get("loadBalancer", {}).get("ingress")

    # The stage still matches, but a satisfied patch (NOW holds any time) is never re-sent.
    writes = client.requests.writes
    await client.patch(
        SERVICE, "inference", {"metadata": {"labels": {"x": "y"}}}, namespace="default"
    )
    await sims.idle()
    clock.advance(1.0)
    await sims.idle()
    assert client.requests.writes == writes + 1
    svc = await client.get(SERVICE, "inference", namespace="default")
    assert svc["metadata"]["annotations"]["sim.kaito.sh/provisioned-at"] == "2025-01-01T00:00:01Z"


async def test_a_delete_stage_timed_by_a_field(client: KubeClient, start_sims: StartSims) -> None:
    clock = ManualClock()
    ttl = Stage(
        "configmap-ttl",
        CONFIG_MAP,
        Delete(),
        match=Match(annotations={"sim.kaito.sh/ttl": "*"}),
        delay=Delay(60.0, from_field="metadata.annotations['sim.kaito.sh/ttl']"),
    )
    sims = await start_sims(SimulatorConfig(stages=[ttl]), clock=clock)
    for name, value in (("short", "2s"), ("until", "2025-01-01T00:00:10Z"), ("junk", "soon")):
        await client.create(
            CONFIG_MAP,
            {
                "metadata": {
                    "name": name,
                    "namespace": "default",
                    "annotations": {"sim.kaito.sh/ttl": value},
                }
            },
        )
    await client.create(CONFIG_MAP, {"metadata": {"name": "kept", "namespace": "default"}})
    await sims.idle()
    due = {p.name: p.due_in for p in sims.pending()}
    assert due == {"short": 2.0, "until": 10.0, "junk": 60.0}  # an unreadable field: `seconds`

    clock.advance(2.0)
    await sims.idle()
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "short", namespace="default")
    await client.get(CONFIG_MAP, "until", namespace="default")
    clock.advance(8.0)
    await sims.idle()
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "until", namespace="default")
    await client.get(CONFIG_MAP, "kept", namespace="default")
    assert sims.runs["configmap-ttl"] == 2


def test_delay_jitter_and_validation() -> None:
    rng = random.Random(1)
    clock = ManualClock()
    values = [Delay(1.0, jitter=0.5).resolve({}, clock, rng) for _ in range(50)]
    assert all(1.0 <= v < 1.5 for v in values)
    assert len(set(values)) > 1
    assert (
        Delay(1.0, from_field="spec.wait").resolve({"spec": {"wait": "250ms"}}, clock, rng) == 0.25
    )
    assert Delay(1.0, from_field="spec.wait").resolve({"spec": {"wait": 3}}, clock, rng) == 3.0
    # A time in the past means "now".
    past = {"spec": {"wait": "2024-01-01T00:00:00Z"}}
    assert Delay(1.0, from_field="spec.wait").resolve(past, clock, rng) == 0.0
    with pytest.raises(ValueError, match="negative"):
        Delay(-1.0)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="heartbeat_interval"):
        SimulatorConfig(heartbeat_interval=0)
    config = SimulatorConfig(stages=[image_pull_error(), [image_pull_error(Match(name="x"))]])
    assert [s.name for s in config.stages] == ["pod-image-pull-error", "pod-image-pull-backoff"] * 2
    assert Delays(pod_start=2).pod_start == Delay(2.0)


async def test_stage_order(client: KubeClient, start_sims: StartSims) -> None:
    sims = await start_sims(SimulatorConfig(stages=image_pull_error(Match(name="never"))))
    assert [s.name for s in sims.stages(POD)] == [
        "pod-gc",
        "pod-image-pull-error",
        "pod-image-pull-backoff",
        "pod-schedule",
        "pod-start",
        "pod-complete",
    ]
    assert [s.name for s in sims.stages(NODE_CLAIM)] == [
        "nodeclaim-terminate",
        "nodeclaim-finalizer",
        "nodeclaim-launch",
        "nodeclaim-register",
        "nodeclaim-initialize",
    ]
    assert [s.name for s in sims.stages(NODE)] == ["node-ready"]


async def test_simulators_can_be_switched_off(client: KubeClient, start_sims: StartSims) -> None:
    sims = await start_sims(SimulatorConfig(pods=False, nodeclaims=False))
    assert sims.stages(POD) == ()
    await client.create(NODE, node("n1", ready=False))
    await client.create(STATEFUL_SET, statefulset("idle", 1))
    await client.create(NODE_CLAIM, nodeclaim("ws-off"))
    await sims.idle()
    [pod] = (await client.list(POD, namespace="default")).items
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]  # no scheduler
    assert "finalizers" not in (await client.get(NODE_CLAIM, "ws-off"))["metadata"]
    assert cstatus(await client.get(NODE, "n1"), "Ready") == "True"


async def test_failed_writes_are_retried(
    emu: Emulator, client: KubeClient, start_sims: StartSims
) -> None:
    fault = emu.faults.add(verb="patch", plural="nodeclaims/status", code=500, times=2)
    sims = await start_sims()
    await client.create(NODE_CLAIM, nodeclaim("ws-retry"))
    await sims.idle()
    assert fault.hits == 2
    assert sims.errors == 2
    assert cstatus(await client.get(NODE_CLAIM, "ws-retry"), "Ready") == "True"


async def test_lost_watches_and_gone_history_are_survived(
    emu: Emulator, client: KubeClient, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await client.create(NODE, node("old-node"))
    await client.create(STATEFUL_SET, statefulset("moving", 1))
    await sims.idle()
    [pod] = (await client.list(POD, namespace="default")).items
    assert pod["spec"]["nodeName"] == "old-node"

    # While the watches are down, the node goes, another comes, and the history moves on.
    emu.store.close_watches()
    emu.store.history_limit = 1
    emu.store.delete(NODE, None, "old-node")
    emu.store.seed([node("new-node")])
    for i in range(3):
        emu.store.seed(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"noise-{i}", "namespace": "default"},
                }
            ]
        )

    async def moved() -> None:
        pods = (await client.list(POD, namespace="default")).items
        assert [p["spec"].get("nodeName") for p in pods] == ["new-node"]
        assert pods[0]["status"]["phase"] == "Running"

    await eventually(moved)


async def test_real_clock() -> None:
    clock = RealClock()
    assert not clock.manual
    start = clock.now()
    await clock.sleep(0.01)
    assert clock.now() - start >= 0.009
    assert clock.wall().tzinfo is not None


async def test_manual_clock_wakes_sleepers_in_order() -> None:
    import asyncio

    clock = ManualClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("late", 2.0), ("early", 1.0))]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    clock.advance(1.5)
    await asyncio.sleep(0)
    assert woke == ["early"]
    clock.advance(0.5)
    await asyncio.gather(*tasks)
    assert woke == ["early", "late"]
    assert clock.now() == 2.0
    await clock.sleep(0)  # returns at once
    with pytest.raises(ValueError, match="back"):
        clock.advance(-1)
