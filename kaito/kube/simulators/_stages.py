"""Stages: what happens to which objects, after how long — as data.

The design follows KWOK's stages. A lifecycle is not a hand-written state machine per kind
but a list of stages; each names the objects it applies to (`when`, the state they must be
in, and `match`, which of them), how long to wait (`delay`), and what to do then
(`effect`). For each object the *first* stage that applies is the one that runs, so a test
injects a failure by putting a stage in front of the normal one: "pods whose image ends in
`:missing` do not start, their containers wait with ErrImagePull" is one more stage, not a
flag inside the kubelet simulation.

Effects are plain async callables. `Patch` and `Delete` cover declarative needs (a status
template, a deletion); the built-in lifecycles use effects written in Python (creating a
Node for a NodeClaim, scheduling a pod), with the same signature. A stage whose effect is
None *holds* the object: it matches, so no later stage applies, and nothing ever happens —
which is how "a NodeClaim that never registers" is spelled.

An effect must be idempotent (a write that changes nothing is skipped), because the object's
next change brings the stage list round again; a stage that still applies after its effect
runs again at the next change, not in a loop.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import attrs

from kaito.kube import Client, RawObject, ResourceKind
from kaito.kube.simulators._clock import Clock
from kaito.kube.simulators._match import ALL, Match, field_values
from kaito.kube.simulators._objects import covers, fill, parse_time

NOW = "$now"
"""In a `Patch`, a string value replaced by the current time (RFC 3339) when it is written."""


class StageContext(Protocol):
    """What an effect may use: the client, the clock, the cached objects, and writes that
    keep the simulators' cache in step with the server."""

    @property
    def client(self) -> Client: ...

    @property
    def clock(self) -> Clock: ...

    def timestamp(self) -> str:
        """The clock's current time in RFC 3339, as objects carry it."""
        ...

    def cached(
        self, kind: ResourceKind, name: str, namespace: str | None = None
    ) -> RawObject | None:
        """The object as the simulators last saw it (None when it is not known)."""
        ...

    async def patch(
        self, kind: ResourceKind, obj: RawObject, patch: Mapping[str, Any]
    ) -> RawObject | None:
        """Merge-patch the object (not its status); None when it is gone."""
        ...

    async def patch_status(
        self, kind: ResourceKind, obj: RawObject, patch: Mapping[str, Any]
    ) -> RawObject | None:
        """Merge-patch the object's status (the whole object for kinds without a status
        subresource); None when it is gone."""
        ...

    async def create(self, kind: ResourceKind, obj: Mapping[str, Any]) -> RawObject: ...

    async def delete(self, kind: ResourceKind, obj: RawObject) -> None:
        """Delete the object (gone already counts as done)."""
        ...


Effect = Callable[[StageContext, ResourceKind, RawObject], Awaitable[None]]
"""What a stage does to one object: `await effect(context, kind, obj)`."""


_DURATION = re.compile(r"^\s*(?P<num>[0-9]+(?:\.[0-9]*)?)\s*(?P<unit>ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _seconds_from(value: Any, clock: Clock) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    if match := _DURATION.match(text):
        return float(match["num"]) * _UNIT_SECONDS[match["unit"]]
    when = parse_time(text)
    if when is not None:
        return (when - clock.wall()).total_seconds()
    return None


def _non_negative(_: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative ({value})")


@attrs.frozen
class Delay:
    """How long a stage waits once it applies to an object.

    `seconds` is the fixed part; `jitter` adds a uniformly random part in [0, jitter).
    `from_field` reads the delay from the object instead (KWOK's `durationFrom`): a number
    of seconds, a duration ("250ms", "2s", "1m"), or an RFC 3339 time to wait until; when the
    field is absent or unreadable, `seconds` applies.
    """

    seconds: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    from_field: str | None = None

    def resolve(self, obj: RawObject, clock: Clock, rng: random.Random) -> float:
        base = self.seconds
        if self.from_field is not None:
            for value in field_values(obj, self.from_field):
                found = _seconds_from(value, clock)
                if found is not None:
                    base = found
                    break
        if self.jitter:
            base += rng.uniform(0.0, self.jitter)
        return max(base, 0.0)


def as_delay(value: Delay | float | int) -> Delay:
    return value if isinstance(value, Delay) else Delay(float(value))


@attrs.frozen(eq=False)
class Stage:
    """One step of a lifecycle: objects of `kind` in state `when` and selected by `match`
    get `effect` applied after `delay` (a None effect holds them where they are)."""

    name: str
    kind: ResourceKind
    effect: Effect | None
    match: Match = ALL
    when: Callable[[RawObject], bool] | None = None
    delay: Delay = attrs.field(default=Delay(), converter=as_delay)
    recurring: bool = False
    """A stage that applies again after its own effect by design (a heartbeat): `idle` does
    not wait for it, since it is never done."""

    def applies(self, obj: RawObject) -> bool:
        return (self.when is None or bool(self.when(obj))) and self.match.matches(obj)

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, {self.kind.kind})"


@attrs.frozen
class Patch:
    """An effect that merge-patches the object: `metadata` and `spec` through the object,
    `status` through the status subresource. Any `NOW` string becomes the current time. A
    patch the object already satisfies is not sent (a `NOW` field counts as satisfied when
    it holds any value)."""

    metadata: Mapping[str, Any] | None = None
    spec: Mapping[str, Any] | None = None
    status: Mapping[str, Any] | None = None

    async def __call__(self, ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
        now = ctx.timestamp()
        main: dict[str, Any] = {}
        if self.metadata:
            main["metadata"] = self.metadata
        if self.spec:
            main["spec"] = self.spec
        current: RawObject | None = obj
        if main and not covers(obj, main, NOW):
            current = await ctx.patch(kind, obj, fill(main, NOW, now))
        if (
            current is not None
            and self.status
            and not covers(current, {"status": self.status}, NOW)
        ):
            await ctx.patch_status(kind, current, {"status": fill(self.status, NOW, now)})


@attrs.frozen
class Delete:
    """An effect that deletes the object."""

    async def __call__(self, ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
        await ctx.delete(kind, obj)
