"""The stage engine: a de-duplicating work queue, one timer heap, a few workers.

Efficiency here decides whether a thousand workspaces can be simulated at all, so the engine
is shaped like a controller, not like a loop over objects:

- Work is triggered by changes only. Handlers on the watch caches enqueue the keys an event
  concerns (the object, its owner, the pods waiting for a node); nothing walks every object.
- A key is queued at most once and processed by one worker at a time; changes that arrive
  while it is being processed queue it once more, afterwards.
- Processing a key picks the first stage that applies and remembers when it is due. Waiting
  is one entry in one heap, served by one task that sleeps on the clock until the earliest
  deadline: there is no task per object and nothing spins. A later change to the object
  keeps its deadline as long as the same stage still applies (a heartbeat does not push a
  launch back); a change to another stage starts that stage's delay.
- A failed write is retried after a back-off on the same clock, per key.

`idle` and `pending` exist for tests: the first waits until nothing is queued, running or
due, the second lists what is still waiting and for how long.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from kaito.kube import Conflict, KubeError, NotFound, RawObject, ResourceKind
from kaito.kube.simulators._clock import Clock
from kaito.kube.simulators._objects import uid_of
from kaito.kube.simulators._stages import Delay, Stage, StageContext

log = logging.getLogger("kaito.kube.simulators")

WorkKey = tuple[ResourceKind, str, str]
"""(kind, namespace or "", name)"""

MAX_RETRY_DOUBLINGS = 6
DEFAULT_RETRY = Delay(0.1)


@attrs.frozen
class PendingStage:
    """A stage waiting for its time to come (or held forever: `due_in` is infinite)."""

    kind: str
    namespace: str
    name: str
    stage: str
    due_in: float


@attrs.define
class _Pending:
    stage: Stage
    uid: str
    due: float
    failures: int = 0


class Engine:
    """Runs stages against cached objects; see the module docstring."""

    def __init__(
        self,
        context: StageContext,
        lookup: Callable[[WorkKey], RawObject | None],
        clock: Clock,
        rng: random.Random,
        *,
        workers: int = 4,
        retry: Delay = DEFAULT_RETRY,
    ) -> None:
        self._context = context
        self._lookup = lookup
        self._clock = clock
        self._rng = rng
        self._workers = max(1, workers)
        self._retry = retry
        self._stages: dict[ResourceKind, tuple[Stage, ...]] = {}
        self._queue: asyncio.Queue[WorkKey] = asyncio.Queue()
        self._queued: set[WorkKey] = set()
        self._active: set[WorkKey] = set()
        self._dirty: set[WorkKey] = set()
        self._pending: dict[WorkKey, _Pending] = {}
        self._heap: list[tuple[float, int, WorkKey]] = []
        self._timer_at: dict[WorkKey, float] = {}
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.runs: dict[str, int] = {}
        """How many times each stage's effect ran (by stage name)."""
        self.errors = 0
        """Effects that failed with something other than NotFound (each is retried)."""

    # -- configuration --------------------------------------------------------------------

    def set_stages(self, kind: ResourceKind, stages: Sequence[Stage]) -> None:
        self._stages[kind] = tuple(stages)

    def stages(self, kind: ResourceKind) -> tuple[Stage, ...]:
        return self._stages.get(kind, ())

    # -- queue ----------------------------------------------------------------------------

    def enqueue(self, kind: ResourceKind, namespace: str | None, name: str) -> None:
        if kind not in self._stages:
            return
        key: WorkKey = (kind, (namespace or "") if kind.namespaced else "", name)
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._queue.put_nowait(key)

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [asyncio.create_task(self._timer_loop(), name="sim-timers")]
        self._tasks += [
            asyncio.create_task(self._worker(), name=f"sim-worker-{i}")
            for i in range(self._workers)
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await self._process(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one effect must not stop the simulators
                log.exception("processing %s %s/%s failed", key[0].kind, key[1], key[2])
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.enqueue(*key)

    # -- processing -----------------------------------------------------------------------

    def _first_stage(self, kind: ResourceKind, obj: RawObject) -> Stage | None:
        for stage in self._stages.get(kind, ()):
            if stage.applies(obj):
                return stage
        return None

    async def _process(self, key: WorkKey) -> None:
        kind = key[0]
        obj = self._lookup(key)
        if obj is None:
            self._drop(key)
            return
        stage = self._first_stage(kind, obj)
        if stage is None:
            self._drop(key)
            return
        now = self._clock.now()
        record = self._pending.get(key)
        if record is None or record.stage is not stage or record.uid != uid_of(obj):
            if stage.effect is None:
                due = math.inf
            else:
                due = now + stage.delay.resolve(obj, self._clock, self._rng)
            record = _Pending(stage=stage, uid=uid_of(obj), due=due)
            self._pending[key] = record
        if stage.effect is None or record.due == math.inf:
            self._timer_at.pop(key, None)
            return
        if record.due > now:
            self._arm(key, record.due)
            return
        self._timer_at.pop(key, None)
        try:
            self.runs[stage.name] = self.runs.get(stage.name, 0) + 1
            await stage.effect(self._context, kind, obj)
        except NotFound:
            # The object (or one it needed) is gone; its deletion event tidies up.
            pass
        except Exception as exc:  # retried with back-off: API errors, and bugs too (logged)
            self._retry_later(key, record, exc)
            return
        if self._pending.get(key) is not record:
            return
        if stage.recurring:
            # Due again one delay from now, whether or not the effect changed anything (a
            # heartbeat within the same second of timestamps writes nothing new).
            record.due = self._clock.now() + stage.delay.resolve(obj, self._clock, self._rng)
            self._arm(key, record.due)
        else:
            del self._pending[key]

    def _retry_later(self, key: WorkKey, record: _Pending, exc: Exception) -> None:
        self.errors += 0 if isinstance(exc, Conflict) else 1
        record.failures += 1
        backoff = self._retry.resolve({}, self._clock, self._rng) * (
            2 ** min(record.failures - 1, MAX_RETRY_DOUBLINGS)
        )
        record.due = self._clock.now() + backoff
        if isinstance(exc, Conflict):
            level = logging.DEBUG
        elif isinstance(exc, KubeError):
            level = logging.WARNING
        else:
            level = logging.ERROR
        log.log(
            level,
            "stage %s on %s %s/%s failed (retry in %.2fs): %s",
            record.stage.name,
            key[0].kind,
            key[1],
            key[2],
            backoff,
            exc,
            exc_info=level == logging.ERROR,
        )
        self._arm(key, record.due)

    def _drop(self, key: WorkKey) -> None:
        self._pending.pop(key, None)
        self._timer_at.pop(key, None)

    # -- timers ---------------------------------------------------------------------------

    def _arm(self, key: WorkKey, due: float) -> None:
        if self._timer_at.get(key) == due:
            return
        self._timer_at[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))
        if self._heap[0][2] == key:
            self._wake.set()

    async def _timer_loop(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.now()
            while self._heap and self._heap[0][0] <= now:
                due, _, key = heapq.heappop(self._heap)
                if self._timer_at.get(key) == due:
                    del self._timer_at[key]
                    self.enqueue(*key)
            waker = asyncio.ensure_future(self._wake.wait())
            waits: set[asyncio.Future[Any]] = {waker}
            if self._heap:
                waits.add(asyncio.ensure_future(self._clock.sleep(self._heap[0][0] - now)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    # -- observation ----------------------------------------------------------------------

    def busy(self) -> bool:
        """Whether anything is queued, running, or waiting for a time that will come by itself
        (on a manual clock: a time that has already come). Recurring stages do not count."""
        if self._queued or self._active or self._dirty:
            return True
        now = self._clock.now()
        for record in self._pending.values():
            if record.due == math.inf or record.stage.recurring:
                continue
            if not self._clock.manual or record.due <= now:
                return True
        return False

    def pending(self) -> list[PendingStage]:
        now = self._clock.now()
        return sorted(
            (
                PendingStage(
                    kind=key[0].kind,
                    namespace=key[1],
                    name=key[2],
                    stage=record.stage.name,
                    due_in=max(record.due - now, 0.0),
                )
                for key, record in self._pending.items()
            ),
            key=lambda p: (p.due_in, p.kind, p.namespace, p.name),
        )

    def describe(self) -> Mapping[str, object]:
        return {
            "queued": len(self._queued),
            "running": len(self._active),
            "pending": [f"{p.kind} {p.namespace}/{p.name}: {p.stage}" for p in self.pending()],
        }
