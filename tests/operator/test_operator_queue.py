"""The work queue: de-duplication, one worker per key, delays, per-key backoff, shutdown.

Time-based behaviour is driven by a `ManualClock`, so no test waits for real delays.
"""

from __future__ import annotations

import asyncio

import pytest

from kaito.operator import ManualClock, OperatorMetrics, WorkQueue

pytestmark = pytest.mark.timeout(10)


async def no_key(queue: WorkQueue) -> bool:
    """True when `get` has nothing to hand out right now."""
    try:
        await asyncio.wait_for(queue.get(), 0.05)
    except TimeoutError:
        return True
    return False


async def test_a_key_added_many_times_is_handed_out_once() -> None:
    queue = WorkQueue()
    for _ in range(5):
        queue.add("ns/a")
    queue.add("ns/b")
    assert len(queue) == 2
    assert await queue.get() == "ns/a"
    assert await queue.get() == "ns/b"
    assert await no_key(queue)


async def test_a_key_being_processed_is_not_handed_to_a_second_worker() -> None:
    queue = WorkQueue()
    queue.add("ns/a")
    assert await queue.get() == "ns/a"
    queue.add("ns/a")  # arrives while the first worker holds it
    queue.add("ns/a")
    assert await no_key(queue), "the same key must not be processed twice at once"
    queue.done("ns/a")
    assert await queue.get() == "ns/a", "the change that came in meanwhile is not lost"
    queue.done("ns/a")
    assert await no_key(queue)


async def test_done_without_new_adds_does_not_requeue() -> None:
    queue = WorkQueue()
    queue.add("ns/a")
    key = await queue.get()
    assert key is not None
    queue.done(key)
    assert len(queue) == 0
    assert await no_key(queue)


async def test_a_waiting_worker_wakes_up_on_add() -> None:
    queue = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.add("ns/a")
    assert await asyncio.wait_for(waiter, 1) == "ns/a"


async def test_add_after_waits_for_the_clock() -> None:
    clock = ManualClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("ns/a", 10)
    assert queue.delayed == 1
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    clock.advance(9.9)
    await asyncio.sleep(0.01)
    assert not waiter.done()
    clock.advance(0.1)
    assert await asyncio.wait_for(waiter, 1) == "ns/a"
    assert queue.delayed == 0


async def test_the_earlier_of_two_schedules_wins() -> None:
    clock = ManualClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("ns/a", 30)
    queue.add_after("ns/a", 5)
    queue.add_after("ns/a", 60)
    clock.advance(5)
    assert await asyncio.wait_for(queue.get(), 1) == "ns/a"
    queue.done("ns/a")
    clock.advance(100)
    assert await no_key(queue), "the later schedules were superseded"


async def test_add_after_zero_adds_at_once() -> None:
    queue = WorkQueue(clock=ManualClock())
    queue.add_after("ns/a", 0)
    assert await asyncio.wait_for(queue.get(), 1) == "ns/a"


async def test_backoff_doubles_per_failure_up_to_the_cap_and_resets_on_forget() -> None:
    clock = ManualClock()
    queue = WorkQueue(backoff_base=1.0, backoff_cap=10.0, clock=clock)
    delays = []
    for _ in range(6):
        delays.append(queue.add_rate_limited("ns/a"))
        clock.advance(delays[-1])
        assert await asyncio.wait_for(queue.get(), 1) == "ns/a"
        queue.done("ns/a")
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert queue.failures("ns/a") == 6
    queue.forget("ns/a")
    assert queue.failures("ns/a") == 0
    assert queue.add_rate_limited("ns/a") == 1.0


async def test_a_retry_is_not_handed_out_before_its_backoff() -> None:
    clock = ManualClock()
    queue = WorkQueue(backoff_base=2.0, backoff_cap=60.0, clock=clock)
    queue.add_rate_limited("ns/a")
    queue.add_rate_limited("ns/a")  # second failure: 4 s, but the 2 s schedule is earlier
    clock.advance(1.9)
    assert await no_key(queue)
    clock.advance(0.1)
    assert await asyncio.wait_for(queue.get(), 1) == "ns/a"


async def test_backoff_is_per_key() -> None:
    queue = WorkQueue(backoff_base=1.0, backoff_cap=100.0, clock=ManualClock())
    for _ in range(4):
        queue.add_rate_limited("ns/failing")
    assert queue.add_rate_limited("ns/other") == 1.0


def test_backoff_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="backoff"):
        WorkQueue(backoff_base=5, backoff_cap=1)
    with pytest.raises(ValueError, match="backoff"):
        WorkQueue(backoff_base=0)


async def test_shut_down_releases_waiters_and_ignores_new_keys() -> None:
    queue = WorkQueue()
    waiters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0.01)
    queue.shut_down()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [None, None, None]
    queue.add("ns/a")
    queue.add_after("ns/b", 1)
    assert len(queue) == 0
    assert await queue.get() is None
    assert queue.is_shut_down


async def test_queue_metrics_count_adds_retries_and_depth() -> None:
    metrics = OperatorMetrics()
    clock = ManualClock()
    queue = WorkQueue(clock=clock, metrics=metrics)
    queue.add("ns/a")
    queue.add("ns/a")
    queue.add("ns/b")
    assert metrics.sample("kaito_workqueue_adds_total") == 2
    assert metrics.sample("kaito_workqueue_depth") == 2
    key = await queue.get()
    assert key == "ns/a"
    assert metrics.sample("kaito_workqueue_depth") == 1
    queue.add_rate_limited(key)
    assert metrics.sample("kaito_workqueue_retries_total") == 1
    queue.done(key)


async def test_manual_clock_sleepers_wake_in_order() -> None:
    clock = ManualClock()
    woke: list[int] = []

    async def sleeper(n: int, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(n)

    tasks = [asyncio.create_task(sleeper(1, 3)), asyncio.create_task(sleeper(2, 1))]
    await asyncio.sleep(0)
    assert clock.sleepers == 2
    clock.advance(1)
    await asyncio.sleep(0)
    assert woke == [2]
    clock.advance(2)
    await asyncio.gather(*tasks)
    assert woke == [2, 1]
    assert clock.now().isoformat() == "2024-01-01T00:00:03+00:00"
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
