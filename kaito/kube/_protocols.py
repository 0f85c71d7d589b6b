"""What kaito needs from a Kubernetes API server, as small protocols.

The reconciler, the provisioners and people who embed kaito in their own controllers depend on
these protocols, not on `KubeClient`: a caller that only reads asks for a `Reader`, one that
writes status asks for a `StatusWriter`, and a test may hand in anything that fits. The split
follows controller-runtime's client: reading, writing, writing status, and watching are
separate capabilities, and the status of an object can only be written through the status
writer (a plain update ignores `status` on kinds that have the status subresource, and the
status writer ignores everything else).

Every call names the kind with a `ResourceKind` and carries objects as raw JSON dicts, so a
custom resource needs no generated class, only its coordinates. Namespaced kinds take the
namespace from the `namespace` argument, or for `create`/`update` from the object's
`metadata.namespace`; cluster-scoped kinds ignore it.

Failures are raised as the `ApiError` tree of `kaito.kube` (NotFound, Conflict, Invalid, ...),
so callers catch meaning, not HTTP codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from kaito.kube._kinds import ResourceKind
from kaito.kube._types import (
    DeleteResult,
    ObjectList,
    PatchType,
    Preconditions,
    PropagationPolicy,
    RawObject,
    Selector,
    WatchEvent,
)

PatchBody = Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""A patch: a mapping for merge, strategic and apply patches; a list of operations for JSON."""


@runtime_checkable
class Reader(Protocol):
    """Reads objects: one by name, or a (paged, filtered) list."""

    async def get(
        self, kind: ResourceKind, name: str, *, namespace: str | None = None
    ) -> RawObject:
        """The object as stored now. Raises `NotFound`."""
        ...

    async def list(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        label_selector: Selector | None = None,
        field_selector: Selector | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ObjectList:
        """Objects of a kind, in one namespace or (namespace None) in all of them.

        With `limit`, at most that many items come back and `continue_token` of the result
        fetches the next page. An unsupported field selector raises `BadRequest`.
        """
        ...


@runtime_checkable
class Writer(Protocol):
    """Creates, replaces, patches and deletes objects (never their status)."""

    async def create(
        self, kind: ResourceKind, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> RawObject:
        """Stores a new object (`metadata.generateName` picks a unique name).

        Raises `AlreadyExists`, `Invalid`, or `BadRequest` when the object carries a
        resourceVersion.
        """
        ...

    async def update(
        self, kind: ResourceKind, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> RawObject:
        """Replaces the object. With `metadata.resourceVersion` set, a stale copy raises
        `Conflict` (optimistic concurrency); without it, the write is unconditional."""
        ...

    async def patch(
        self,
        kind: ResourceKind,
        name: str,
        patch: PatchBody,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
        force: bool = False,
    ) -> RawObject:
        """Changes part of an object. `PatchType.APPLY` is server-side apply: it needs
        `field_manager`, and fields owned by another manager raise `Conflict` unless
        `force` takes them over. A JSON patch whose `test` operation fails raises `Invalid`
        and changes nothing."""
        ...

    async def delete(
        self,
        kind: ResourceKind,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: PropagationPolicy | None = None,
        preconditions: Preconditions | None = None,
        grace_period_seconds: int | None = None,
    ) -> DeleteResult:
        """Deletes an object, or marks it terminating when finalizers (or foreground
        deletion) hold it back; the result says which. Raises `NotFound`, and `Conflict`
        when a precondition does not match."""
        ...


@runtime_checkable
class StatusWriter(Protocol):
    """Writes the status subresource; changes outside `status` are ignored by the server."""

    async def update_status(
        self, kind: ResourceKind, obj: Mapping[str, Any], *, namespace: str | None = None
    ) -> RawObject:
        """Replaces `status` (with the same resourceVersion rules as `Writer.update`)."""
        ...

    async def patch_status(
        self,
        kind: ResourceKind,
        name: str,
        patch: PatchBody,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        field_manager: str | None = None,
        force: bool = False,
    ) -> RawObject:
        """Patches `status` the way `Writer.patch` patches the object."""
        ...


@runtime_checkable
class Watcher(Protocol):
    """Streams changes of a kind."""

    def watch(
        self,
        kind: ResourceKind,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: Selector | None = None,
        field_selector: Selector | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = False,
    ) -> AsyncIterator[WatchEvent]:
        """Changes after `resource_version` (from a list), in the order they were stored.

        Without `resource_version` the stream starts with an ADDED event for every existing
        object. BOOKMARK events (when allowed) carry only a newer resourceVersion to resume
        from. The stream ends when the server closes it (after `timeout_seconds`). A
        resourceVersion too old for the server's history raises `Gone`: list again and watch
        from the list's version. Close the iterator (`contextlib.aclosing`) when leaving the
        loop early.
        """
        ...


@runtime_checkable
class Client(Reader, Writer, StatusWriter, Watcher, Protocol):
    """Everything kaito does with a cluster."""
