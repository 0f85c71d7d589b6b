"""A de-duplicating work queue of workspace keys, with delays and per-key backoff.

The semantics are those of client-go's rate-limited work queue, which every Kubernetes
controller relies on, because they are what make a level-triggered reconciler safe to drive
from a flood of events:

- A key is in the queue at most once. Ten events for one workspace before a worker gets to it
  cost one reconcile, and the reconcile reads the state as it is by then.
- A key is never handed to two workers at once. If it is added again while a worker holds it,
  it is marked dirty and handed out again only after `done`, so the change that arrived during
  the reconcile is not lost and the two passes never race.
- `add_after` schedules a key for later (a reconciler's `requeue_after`); an earlier schedule
  for the same key wins.
- `add_rate_limited` is the retry after an error: the delay doubles with each consecutive
  failure of that key, from `backoff_base` up to `backoff_cap`, until `forget` (called after a
  success) resets it. One failing workspace backs off alone; the others are not slowed down.

All waiting goes through a `Clock`, so tests drive delays with a `ManualClock`.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools

from kaito.operator._clock import Clock, SystemClock
from kaito.operator._metrics import OperatorMetrics


class WorkQueue:
    """Keys waiting to be reconciled; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 300.0,
        clock: Clock | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        if backoff_base <= 0 or backoff_cap < backoff_base:
            raise ValueError("need 0 < backoff_base <= backoff_cap")
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._clock: Clock = clock or SystemClock()
        self._metrics = metrics
        self._ready: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiting: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._failures: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._shut_down = False

    # -- adding -------------------------------------------------------------------------------

    def add(self, key: str) -> None:
        """Queue `key` now, unless it is already queued (or shut down)."""
        if self._shut_down or key in self._dirty:
            return
        self._dirty.add(key)
        if self._metrics is not None:
            self._metrics.queue_adds.inc()
        if key not in self._processing:
            self._ready.append(key)
            self._update_depth()
        self._notify()

    def add_after(self, key: str, delay: float) -> None:
        """Queue `key` once `delay` seconds have passed (at once when `delay <= 0`)."""
        if self._shut_down:
            return
        if delay <= 0:
            self.add(key)
            return
        due = self._clock.monotonic() + delay
        current = self._waiting.get(key)
        if current is not None and current <= due:
            return
        self._waiting[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))
        self._notify()

    def add_rate_limited(self, key: str) -> float:
        """Queue `key` after its backoff delay, and count the failure; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = self.backoff(failures)
        if self._metrics is not None:
            self._metrics.queue_retries.inc()
        self.add_after(key, delay)
        return delay

    def backoff(self, failures: int) -> float:
        """The delay after `failures` earlier consecutive failures: base * 2**failures, capped."""
        if failures >= 64:
            return self.backoff_cap
        return float(min(self.backoff_base * (2**failures), self.backoff_cap))

    def forget(self, key: str) -> None:
        """Reset `key`'s backoff (after a success or a terminal error)."""
        self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        """Consecutive failures of `key` since it was last forgotten."""
        return self._failures.get(key, 0)

    # -- taking -------------------------------------------------------------------------------

    async def get(self) -> str | None:
        """Wait for a key and mark it as being processed; None once the queue is shut down.

        The caller must call `done(key)` when finished with it.
        """
        while True:
            if self._shut_down:
                return None
            self._promote_due()
            if self._ready:
                key = self._ready.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
                self._update_depth()
                return key
            changed = self._changed
            if not self._heap:
                await changed.wait()
                continue
            delay = self._heap[0][0] - self._clock.monotonic()
            waiter = asyncio.ensure_future(changed.wait())
            sleeper = asyncio.ensure_future(self._clock.sleep(delay))
            try:
                await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                sleeper.cancel()

    def done(self, key: str) -> None:
        """Finish processing `key`; if it was added meanwhile, it is queued again."""
        self._processing.discard(key)
        if key in self._dirty and not self._shut_down:
            self._ready.append(key)
            self._update_depth()
            self._notify()

    def shut_down(self) -> None:
        """Stop handing out keys: waiting and future `get` calls return None."""
        self._shut_down = True
        self._notify()

    # -- inspection ---------------------------------------------------------------------------

    def __len__(self) -> int:
        """Keys ready to be handed out now (the queue depth)."""
        return len(self._ready)

    @property
    def delayed(self) -> int:
        """Keys scheduled for later."""
        return len(self._waiting)

    @property
    def processing(self) -> frozenset[str]:
        return frozenset(self._processing)

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    # -- internals ----------------------------------------------------------------------------

    def _promote_due(self) -> None:
        now = self._clock.monotonic()
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._waiting.get(key) != due:
                continue  # superseded by an earlier schedule of the same key
            del self._waiting[key]
            self.add(key)

    def _notify(self) -> None:
        # Wake every waiter; each re-checks the queue. A fresh event for the next round.
        self._changed.set()
        self._changed = asyncio.Event()

    def _update_depth(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_depth.set(len(self._ready))
