"""Time, as the operator sees it: a monotonic clock for waiting, a wall clock for Lease stamps.

Backoff, delayed requeues and lease expiry are all "wait this long" logic, and tests of such
logic are slow and flaky when they wait for real. So every component that waits takes a `Clock`
and never calls `time` or `asyncio.sleep` itself. `SystemClock` is the real one; `ManualClock`
only moves when a test calls `advance`, which also wakes every sleeper whose time has come.

Two readings are kept apart on purpose: `monotonic()` measures intervals (it never jumps when
the host's time is corrected), `now()` is the UTC wall time written into Lease objects for
other replicas and humans to read.
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
    """The operator's source of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward; only differences mean anything."""
        ...

    def now(self) -> datetime:
        """The current UTC wall time (timezone-aware)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    """The host's clocks and asyncio's sleep."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that stands still until `advance` moves it; for tests of time-based logic.

    `sleep(s)` returns once the clock has been advanced by at least `s` after the call (a
    sleep of zero or less only yields to the event loop once).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2024, 1, 1, tzinfo=UTC)
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        return self._elapsed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._elapsed + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake the sleepers that are due."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self._elapsed += seconds
        while self._sleepers and self._sleepers[0][0] <= self._elapsed:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are waiting for the clock to move."""
        return sum(1 for _, _, f in self._sleepers if not f.done())
