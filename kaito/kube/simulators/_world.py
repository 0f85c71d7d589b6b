"""The simulators' shared view of the cluster: caches, the engine, and writes through both.

All simulators run on one `World`: one informer per kind however many simulators read it,
one engine and one clock. Writes go through the world so that the answer of every write lands
in the cache at once (see `_informer`), and so that every write carries the same field
manager, which makes the simulators' writes easy to tell apart in `managedFields`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from kaito.kube import (
    Client,
    NotFound,
    PatchType,
    RawObject,
    ResourceKind,
)
from kaito.kube.simulators._clock import Clock
from kaito.kube.simulators._engine import Engine, WorkKey
from kaito.kube.simulators._informer import Informer
from kaito.kube.simulators._objects import meta, name_of, namespace_of, rfc3339
from kaito.kube.simulators._stages import Delay


class World:
    """Caches, engine and clock of one `Simulators`; also the `StageContext` of effects."""

    def __init__(
        self,
        client: Client,
        clock: Clock,
        *,
        rng: random.Random,
        field_manager: str,
        workers: int,
        retry: Delay,
        watch_timeout: int,
    ) -> None:
        self._client = client
        self._clock = clock
        self.rng = rng
        self.field_manager = field_manager
        self.watch_timeout = watch_timeout
        self.informers: dict[ResourceKind, Informer] = {}
        self.events_seen = 0
        self.engine = Engine(self, self._lookup, clock, rng, workers=workers, retry=retry)

    # -- StageContext ---------------------------------------------------------------------

    @property
    def client(self) -> Client:
        return self._client

    @property
    def clock(self) -> Clock:
        return self._clock

    def timestamp(self) -> str:
        return rfc3339(self._clock.wall())

    def cached(
        self, kind: ResourceKind, name: str, namespace: str | None = None
    ) -> RawObject | None:
        informer = self.informers.get(kind)
        return informer.get(name, namespace) if informer is not None else None

    async def patch(
        self, kind: ResourceKind, obj: RawObject, patch: Mapping[str, Any]
    ) -> RawObject | None:
        try:
            result = await self._client.patch(
                kind,
                name_of(obj),
                patch,
                namespace=namespace_of(obj),
                patch_type=PatchType.MERGE,
                field_manager=self.field_manager,
            )
        except NotFound:
            return None
        return self._observe(kind, result)

    async def patch_status(
        self, kind: ResourceKind, obj: RawObject, patch: Mapping[str, Any]
    ) -> RawObject | None:
        if not kind.has_status:
            return await self.patch(kind, obj, patch)
        try:
            result = await self._client.patch_status(
                kind,
                name_of(obj),
                patch,
                namespace=namespace_of(obj),
                patch_type=PatchType.MERGE,
                field_manager=self.field_manager,
            )
        except NotFound:
            return None
        return self._observe(kind, result)

    async def create(self, kind: ResourceKind, obj: Mapping[str, Any]) -> RawObject:
        created = await self._client.create(kind, obj, namespace=namespace_of(obj))
        observed = self._observe(kind, created)
        assert observed is not None
        return observed

    async def delete(self, kind: ResourceKind, obj: RawObject) -> None:
        try:
            result = await self._client.delete(kind, name_of(obj), namespace=namespace_of(obj))
        except NotFound:
            self._forget(kind, obj)
            return
        if result.gone:
            self._forget(kind, result.object or obj)
        elif result.object is not None:
            self._observe(kind, result.object)

    async def set_finalizer(
        self, kind: ResourceKind, obj: RawObject, finalizer: str, present: bool
    ) -> None:
        """Add or remove one finalizer, guarded by the object's resourceVersion (a concurrent
        change to the list is a Conflict, retried, never lost)."""
        current = list(meta(obj).get("finalizers") or ())
        if (finalizer in current) == present:
            return
        wanted = [*current, finalizer] if present else [f for f in current if f != finalizer]
        guarded = {
            "metadata": {
                "finalizers": wanted or None,
                "resourceVersion": meta(obj).get("resourceVersion"),
            }
        }
        try:
            result = await self._client.patch(
                kind,
                name_of(obj),
                guarded,
                namespace=namespace_of(obj),
                patch_type=PatchType.MERGE,
                field_manager=self.field_manager,
            )
        except NotFound:
            self._forget(kind, obj)
            return
        if not present and meta(result).get("deletionTimestamp") and not wanted:
            # The last finalizer of a terminating object: the server has deleted it.
            self._forget(kind, result)
        else:
            self._observe(kind, result)

    # -- caches ---------------------------------------------------------------------------

    def informer(self, kind: ResourceKind) -> Informer:
        """The cache of `kind`, created on first use (filled when the simulators start)."""
        found = self.informers.get(kind)
        if found is None:
            found = Informer(
                self._client, kind, watch_timeout=self.watch_timeout, on_event=self._saw_event
            )
            self.informers[kind] = found
        return found

    def _saw_event(self) -> None:
        self.events_seen += 1

    def _observe(self, kind: ResourceKind, obj: RawObject) -> RawObject | None:
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        informer = self.informers.get(kind)
        if informer is not None:
            informer.observe(obj)
        return obj

    def _forget(self, kind: ResourceKind, obj: RawObject) -> None:
        informer = self.informers.get(kind)
        if informer is not None:
            informer.forget(obj)

    def _lookup(self, key: WorkKey) -> RawObject | None:
        kind, namespace, name = key
        return self.cached(kind, name, namespace or None)

    def enqueue(self, kind: ResourceKind, obj: Mapping[str, Any] | None) -> None:
        if obj is not None:
            self.engine.enqueue(kind, namespace_of(obj), name_of(obj))
