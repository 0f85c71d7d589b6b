"""Fault injection and request accounting for the HTTP layer.

Reliability tests need the API server to misbehave on cue: answer one `create pods` with a 500,
slow every `list` down, cut a watch after three events. A `Fault` matches requests by verb,
resource, name and namespace, fires a limited number of times, and can add latency, answer with
an error status, abort the connection, or end a watch stream early (cleanly or by dropping the
connection). Faults never touch the store; a request that a fault answers is not executed.

`RequestLog` counts every request the server handled by verb and resource, so a test can
assert that a converged reconcile made zero writes.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@attrs.frozen
class RequestInfo:
    """What the server understood a request to be (kube-apiserver's RequestInfo, trimmed)."""

    verb: str
    plural: str = ""
    kind: str = ""
    group: str = ""
    version: str = ""
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    path: str = ""

    @property
    def resource(self) -> str:
        """`plural` or `plural/subresource`."""
        return f"{self.plural}/{self.subresource}" if self.subresource else self.plural


@attrs.define
class Fault:
    """One injected misbehaviour; unset match fields match anything.

    `verb` is the Kubernetes verb (get, list, watch, create, update, patch, delete,
    deletecollection). `plural` may name a subresource as `pods/status`; `kind` matches the
    Kind (`Pod`) instead. `times=None` fires
    forever. `code` answers with that HTTP status and a Status body (`reason`/`message`
    optional). `abort` drops the connection without an answer. For watches,
    `close_watch_after_events` / `close_watch_after` end the stream after that many events or
    seconds, with `abort` deciding between a clean end and a dropped connection.
    """

    verb: str | None = None
    plural: str | None = None
    kind: str | None = None
    group: str | None = None
    name: str | None = None
    namespace: str | None = None
    code: int | None = None
    reason: str = ""
    message: str = ""
    latency: float = 0.0
    times: int | None = 1
    abort: bool = False
    close_watch_after_events: int | None = None
    close_watch_after: float | None = None
    hits: int = 0

    def matches(self, info: RequestInfo) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.verb is not None and self.verb != info.verb:
            return False
        if self.plural is not None and self.plural not in (info.plural, info.resource):
            return False
        if self.kind is not None and self.kind != info.kind:
            return False
        if self.group is not None and self.group != info.group:
            return False
        if self.name is not None and self.name != info.name:
            return False
        return self.namespace is None or self.namespace == info.namespace

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class Faults:
    """The faults armed on an emulator; the first matching fault fires for a request."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(
        self,
        verb: str | None = None,
        plural: str | None = None,
        *,
        kind: str | None = None,
        group: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        code: int | None = None,
        reason: str = "",
        message: str = "",
        latency: float = 0.0,
        times: int | None = 1,
        abort: bool = False,
        close_watch_after_events: int | None = None,
        close_watch_after: float | None = None,
    ) -> Fault:
        """Arm a fault and return it (its `hits` counts how often it fired)."""
        fault = Fault(
            verb=verb,
            plural=plural,
            kind=kind,
            group=group,
            name=name,
            namespace=namespace,
            code=code,
            reason=reason,
            message=message,
            latency=latency,
            times=times,
            abort=abort,
            close_watch_after_events=close_watch_after_events,
            close_watch_after=close_watch_after,
        )
        self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        if fault in self._faults:
            self._faults.remove(fault)

    def clear(self) -> None:
        self._faults.clear()

    def match(self, info: RequestInfo) -> Fault | None:
        """Take the first armed fault that matches (counting the hit), or None."""
        for fault in self._faults:
            if fault.matches(info):
                fault.hits += 1
                return fault
        return None

    def __len__(self) -> int:
        return sum(1 for f in self._faults if not f.exhausted)

    def __iter__(self) -> Any:
        return iter(list(self._faults))


class RequestLog:
    """Counts of the requests the server handled, by verb and resource."""

    def __init__(self) -> None:
        self.entries: list[RequestInfo] = []
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def record(self, info: RequestInfo) -> None:
        self.entries.append(info)
        self._counts[(info.verb, info.resource)] += 1

    def count(
        self,
        verb: str | None = None,
        plural: str | None = None,
        *,
        namespace: str | None = None,
        name: str | None = None,
    ) -> int:
        """How many requests matched; `plural` may be `pods/status` to count a subresource."""
        if namespace is None and name is None:
            return sum(
                n
                for (v, r), n in self._counts.items()
                if (verb is None or v == verb)
                and (
                    plural is None
                    or plural == r
                    or (plural == r.split("/")[0] and "/" not in plural)
                )
            )
        return sum(
            1
            for e in self.entries
            if (verb is None or e.verb == verb)
            and (plural is None or plural in (e.plural, e.resource))
            and (namespace is None or e.namespace == namespace)
            and (name is None or e.name == name)
        )

    def writes(self, plural: str | None = None) -> int:
        """Requests with a writing verb (create, update, patch, delete, deletecollection)."""
        return sum(self.count(v, plural) for v in WRITE_VERBS)

    def reset(self) -> None:
        self.entries.clear()
        self._counts.clear()
