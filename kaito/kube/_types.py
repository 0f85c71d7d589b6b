"""The values that cross the client boundary: raw objects, list pages, watch events, options.

Objects stay plain JSON dicts. A typed model per kind would have to be generated for every
built-in kind and every CRD version, and would drift from what the server actually stores
(unknown fields, defaults, managed fields); a dict plus a `ResourceKind` serves Pods and
Workspaces alike and round-trips exactly. Typing is spent where it pays: on the Status body
the client must read to raise the right error, and on the results it hands back
(`ObjectList`, `DeleteResult`, `WatchEvent`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, TypedDict

import attrs

RawObject: TypeAlias = dict[str, Any]
"""One API object as JSON: `apiVersion`, `kind`, `metadata`, and whatever the kind carries."""

Selector: TypeAlias = str | Mapping[str, str]
"""A label or field selector: the wire string (`app=x,tier!=db`) or equalities as a mapping."""


class RawStatusCause(TypedDict, total=False):
    """One entry of `details.causes` in a Status body (a field that failed validation)."""

    reason: str
    message: str
    field: str


class RawStatusDetails(TypedDict, total=False):
    """`details` of a Status body: which object the failure concerns, and why in detail."""

    name: str
    group: str
    kind: str
    uid: str
    causes: list[RawStatusCause]
    retryAfterSeconds: int


class RawStatus(TypedDict, total=False):
    """The `Status` object the API server sends with every failed request."""

    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    status: str
    message: str
    reason: str
    details: RawStatusDetails
    code: int


class PatchType(enum.Enum):
    """How the server interprets a patch body; the value is the request's Content-Type."""

    MERGE = "application/merge-patch+json"
    """RFC 7386: maps merge, lists are replaced, `null` deletes a key."""
    JSON = "application/json-patch+json"
    """RFC 6902: a list of operations (`add`, `remove`, `replace`, `test`, ...)."""
    STRATEGIC = "application/strategic-merge-patch+json"
    """Kubernetes' merge that knows list keys (containers by name); built-in kinds only."""
    APPLY = "application/apply-patch+yaml"
    """Server-side apply: needs a field manager; conflicts are 409 unless forced."""


class PropagationPolicy(enum.Enum):
    """What happens to an object's dependents (by ownerReference) when it is deleted."""

    BACKGROUND = "Background"
    """The object goes now; the garbage collector deletes dependents afterwards."""
    FOREGROUND = "Foreground"
    """The object stays (terminating) until dependents that block it are gone."""
    ORPHAN = "Orphan"
    """Dependents stay and lose their ownerReference to this object."""


@attrs.frozen
class Preconditions:
    """Delete only if the object still has this uid and/or resourceVersion (else Conflict)."""

    uid: str | None = None
    resource_version: str | None = None

    def to_wire(self) -> dict[str, str]:
        wire: dict[str, str] = {}
        if self.uid is not None:
            wire["uid"] = self.uid
        if self.resource_version is not None:
            wire["resourceVersion"] = self.resource_version
        return wire


@attrs.frozen
class ObjectList:
    """One page of a list: the items plus what is needed to fetch the next page or to watch."""

    items: list[RawObject]
    resource_version: str
    """The collection's resourceVersion: start a watch here to miss nothing after this list."""
    continue_token: str | None = None
    """Pass as `continue_token` to get the next page; None on the last page."""
    remaining_item_count: int | None = None

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> ObjectList:
        meta = body.get("metadata") or {}
        return cls(
            items=list(body.get("items") or []),
            resource_version=str(meta.get("resourceVersion", "")),
            continue_token=meta.get("continue") or None,
            remaining_item_count=meta.get("remainingItemCount"),
        )


@attrs.frozen
class DeleteResult:
    """What a delete did: the object is gone, or it is terminating (finalizers, foreground GC).

    `object` is the object as the server returned it: the terminating object with its
    `deletionTimestamp`, the deleted object, or None when the server answered only with a
    success Status.
    """

    gone: bool
    object: RawObject | None = None

    @property
    def terminating(self) -> bool:
        return not self.gone


WatchEventType: TypeAlias = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
WATCH_EVENT_TYPES: frozenset[str] = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})


@attrs.frozen
class WatchEvent:
    """One change seen by a watch. ERROR frames never appear here: they are raised as errors."""

    type: WatchEventType
    object: RawObject

    @property
    def resource_version(self) -> str:
        """The object's resourceVersion after this change (for a BOOKMARK, the stream's)."""
        return str((self.object.get("metadata") or {}).get("resourceVersion", ""))
