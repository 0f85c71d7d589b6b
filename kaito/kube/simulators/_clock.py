"""The clock every simulated delay is measured on.

A lifecycle simulator is mostly waiting: a NodeClaim launches after a while, a pod becomes
ready after a while. Tests that check *what happens after the wait* should not spend real
time on it, and tests that check *that nothing happens before it* cannot rely on real time
at all. So all delays go through a `Clock`: `RealClock` for running beside a live emulator,
`ManualClock` for tests, where time moves only when the test calls `advance`.

The clock has two faces because the simulators need two things: a monotonic number of seconds
to schedule on (`now`, `sleep`), and a wall-clock time to write into objects
(`lastTransitionTime`, `startTime`), which `wall` gives. A manual clock moves both together.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Time as the simulators see it."""

    @property
    def manual(self) -> bool:
        """True when time moves only when told to; `Simulators.idle` then stops waiting for
        stages whose time has not come, since nothing but the test can bring it."""
        ...

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    def wall(self) -> datetime:
        """The current time of day (timezone-aware, UTC), for timestamps in objects."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Returns once `seconds` have passed on this clock."""
        ...


class RealClock:
    """The machine's clocks: `time.monotonic` and the UTC time of day."""

    @property
    def manual(self) -> bool:
        return False

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def __repr__(self) -> str:
        return "RealClock()"


class ManualClock:
    """A clock that stands still until `advance` moves it; for tests.

    Sleepers wake in deadline order as soon as `advance` passes their deadline (on the event
    loop's next turn); a sleep of zero or less returns at once.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start if start is not None else datetime(2025, 1, 1, tzinfo=UTC)
        if self._start.tzinfo is None:
            raise ValueError("the start time of a ManualClock must be timezone-aware")
        self._elapsed = 0.0
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    @property
    def manual(self) -> bool:
        return True

    def now(self) -> float:
        return self._elapsed

    def wall(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has now passed."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self._elapsed += seconds
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for time to pass."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def __repr__(self) -> str:
        return f"ManualClock(at={self._elapsed}s)"
