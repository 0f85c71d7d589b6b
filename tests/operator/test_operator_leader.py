"""Leader election on a Lease: the protocol step by step, then two operators side by side.

The protocol tests drive `LeaderElector.try_acquire_or_renew` with a `ManualClock` against the
emulator, so expiry is exact and instant. The operator tests run two replicas with real (short)
timings and check who works, who stands by, and how fast a shutdown hands over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from operator_support import RecordingReconciler, running, settings, wait_until, workspace

from kaito.kube import KubeClient
from kaito.kube.emulator import Emulator
from kaito.operator import LeaderElector, ManualClock, Operator, OperatorMetrics

pytestmark = pytest.mark.timeout(20)

NS = "kaito-system"


def elector(client: KubeClient, identity: str, clock: ManualClock, **kw: float) -> LeaderElector:
    return LeaderElector(
        client,
        name="kaito-test",
        namespace=NS,
        identity=identity,
        lease_duration=kw.get("lease_duration", 15.0),
        renew_deadline=kw.get("renew_deadline", 10.0),
        retry_period=kw.get("retry_period", 2.0),
        clock=clock,
    )


def lease_spec(emu: Emulator, name: str = "kaito-test") -> dict[str, object]:
    lease = emu.store.get("leases", NS, name)
    assert lease is not None
    return dict(lease["spec"])


async def test_the_first_replica_creates_the_lease_and_holds_it(
    emu: Emulator, client: KubeClient
) -> None:
    clock = ManualClock()
    a = elector(client, "a", clock)
    assert await a.try_acquire_or_renew()
    spec = lease_spec(emu)
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"] == "2024-01-01T00:00:00.000000Z"
    clock.advance(2)
    assert await a.try_acquire_or_renew(), "renewing"
    spec = lease_spec(emu)
    assert spec["renewTime"] == "2024-01-01T00:00:02.000000Z"
    assert spec["acquireTime"] == "2024-01-01T00:00:00.000000Z"
    assert spec["leaseTransitions"] == 0


async def test_another_replica_takes_over_only_after_the_lease_expires(
    emu: Emulator, client_factory: Callable[[], Awaitable[KubeClient]]
) -> None:
    clock = ManualClock()
    a = elector(await client_factory(), "a", clock)
    b = elector(await client_factory(), "b", clock)
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.advance(14)
    assert not await b.try_acquire_or_renew(), "still within the lease duration"
    # The leader renews: b sees the lease change, and its wait starts over.
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.advance(14.9)
    assert not await b.try_acquire_or_renew()
    clock.advance(0.1)
    assert await b.try_acquire_or_renew(), "a stopped renewing 15 s ago"
    spec = lease_spec(emu)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    assert not await a.try_acquire_or_renew(), "a lost it and must wait in turn"


async def test_a_write_based_on_a_stale_read_loses_with_a_conflict(
    emu: Emulator, client: KubeClient
) -> None:
    clock = ManualClock()
    a = elector(client, "a", clock)
    assert await a.try_acquire_or_renew()
    # a reads the lease, then its renewal is slow to arrive; meanwhile another replica
    # writes the lease. a's update carries the old resourceVersion: 409, and a backs off.
    emu.faults.add(verb="update", plural="leases", latency=0.3)
    clock.advance(1)
    attempt = asyncio.create_task(a.try_acquire_or_renew())
    await wait_until(lambda: emu.requests.count("update", "leases") == 1)
    lease = emu.store.get("leases", NS, "kaito-test")
    assert lease is not None
    emu.store.update("leases", {**lease, "spec": {**lease["spec"], "holderIdentity": "x"}})
    assert await attempt is False
    assert lease_spec(emu)["holderIdentity"] == "x", "nothing was overwritten"


async def test_release_hands_over_at_once(
    emu: Emulator, client_factory: Callable[[], Awaitable[KubeClient]]
) -> None:
    clock = ManualClock()
    metrics = OperatorMetrics()
    a = LeaderElector(
        await client_factory(),
        name="kaito-test",
        namespace=NS,
        identity="a",
        clock=clock,
        metrics=metrics,
    )
    b = elector(await client_factory(), "b", clock)
    assert await a.acquire(asyncio.Event())
    assert a.is_leader
    assert metrics.sample("kaito_leader") == 1
    assert not await b.try_acquire_or_renew()
    assert await a.release()
    assert metrics.sample("kaito_leader") == 0
    spec = lease_spec(emu)
    assert "holderIdentity" not in spec
    assert spec["leaseDurationSeconds"] == 1
    assert await b.try_acquire_or_renew(), "no waiting for expiry after a release"
    assert lease_spec(emu)["leaseTransitions"] == 1
    assert not await a.release(), "a no longer leads: nothing to release"


async def test_the_leader_gives_up_when_it_cannot_renew_in_time(
    emu: Emulator, client: KubeClient
) -> None:
    a = LeaderElector(
        client,
        name="kaito-test",
        namespace=NS,
        identity="a",
        lease_duration=2,
        renew_deadline=0.5,
        retry_period=0.1,
    )
    assert await a.acquire(asyncio.Event())
    emu.faults.add(verb="update", plural="leases", code=500, times=None)
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(a.hold(asyncio.Event()), 3) is False
    assert 0.4 <= asyncio.get_running_loop().time() - started < 1.5
    assert not a.is_leader


def test_timings_must_be_ordered(client: KubeClient) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        LeaderElector(
            client, name="x", namespace=NS, identity="a", lease_duration=5, renew_deadline=10
        )


# -- two operators -----------------------------------------------------------------------------


def replica(client: KubeClient, identity: str, reconciler: RecordingReconciler) -> Operator:
    return Operator(
        client,
        reconciler,
        settings(leader_election=True, identity=identity, lease_name="kaito-test"),
    )


async def test_one_replica_leads_the_other_stands_by_and_takes_over_on_shutdown(
    emu: Emulator, client_factory: Callable[[], Awaitable[KubeClient]]
) -> None:
    emu.store.seed([workspace("w")])
    first_client, second_client = await client_factory(), await client_factory()
    first_work, second_work = RecordingReconciler(), RecordingReconciler()
    first = replica(first_client, "first", first_work)
    second = replica(second_client, "second", second_work)
    first_task = asyncio.create_task(first.run())
    await wait_until(lambda: first.is_leader, what="the first replica to lead")
    async with running(second):
        await wait_until(lambda: second.state == "standby")
        await wait_until(lambda: first_work.count("default/w") == 1)
        await asyncio.sleep(0.3)
        assert second_work.calls == [], "a follower does no work"
        assert second_client.requests.count("list") == 0
        assert second_client.requests.count("watch") == 0, "a follower watches nothing"
        assert second.readiness() == (True, "standing by for the lease")
        assert first.readiness() == (True, "leading; watches synced")
        assert first.metrics.sample("kaito_leader") == 1
        assert second.metrics.sample("kaito_leader") == 0

        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        first.stop()
        await asyncio.wait_for(first_task, 5)
        await wait_until(lambda: second.is_leader, within=2, what="the hand-over")
        assert loop.time() - stopped_at < 1.0, "released, so no waiting for expiry"
        await wait_until(lambda: second_work.count("default/w") == 1)
        spec = lease_spec(emu)
        assert spec["holderIdentity"] == "second"
        assert spec["leaseTransitions"] == 1
        assert first.metrics.sample("kaito_leader") == 0


async def test_losing_the_lease_stops_the_work(emu: Emulator, client: KubeClient) -> None:
    emu.store.seed([workspace("w")])
    work = RecordingReconciler()
    op = replica(client, "leader", work)
    async with running(op):
        await wait_until(lambda: op.is_leader and work.count("default/w") == 1)
        lease = emu.store.get("leases", NS, "kaito-test")
        assert lease is not None
        emu.store.update(
            "leases",
            {
                **lease,
                "spec": {**lease["spec"], "holderIdentity": "usurper", "leaseDurationSeconds": 60},
            },
        )
        await wait_until(lambda: op.state == "standby", what="the operator to stop working")
        assert op.queue is None
        assert op.informers == []
        assert op.metrics.sample("kaito_leader") == 0
        calls = work.count("default/w")
        emu.store.patch("workspaces", "default", "w", {"metadata": {"labels": {"x": "1"}}})
        await asyncio.sleep(0.3)
        assert work.count("default/w") == calls, "no reconciles without the lease"
    assert lease_spec(emu)["holderIdentity"] == "usurper", "a non-leader releases nothing"
