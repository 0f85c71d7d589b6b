"""A watch-fed cache of one kind: list once, then follow the watch; never poll.

Each simulator needs to look at many objects at once (a StatefulSet at its pods, the scheduler
at every node and the pods bound to it), and it must do so thousands of times without asking
the API server each time. So every kind the simulators touch is mirrored here, the way
client-go's informers do it: a paged list gives the state and a resourceVersion, a watch from
that version gives every change after it, and a `Gone` (the server's history moved on) means
list again. Handlers get `(old, new)` for every change; secondary indexes (pods by node, pods
by owner) make the common look-ups O(result).

The cache is also written *through*: a simulator that creates or patches an object puts the
server's answer in the cache at once (`observe`, `forget`). Without that, the next reconcile
could run on a copy from before the write and, say, create a second pod where one was just
created. Watch events older than what the cache holds are then skipped, so each change reaches
the handlers exactly once, whichever path brought it first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kaito.kube import (
    Client,
    Gone,
    KubeError,
    NotFound,
    RawObject,
    ResourceKind,
    WatchEvent,
)
from kaito.kube.simulators._objects import meta, newer, uid_of

log = logging.getLogger("kaito.kube.simulators")

Key = tuple[str, str]
"""(namespace or "", name)"""
Handler = Callable[[RawObject | None, RawObject | None], None]
"""Called with (old, new) for every change; `old` None for a new object, `new` None for a
deleted one."""
IndexFunc = Callable[[RawObject], Iterable[str]]

LIST_PAGE = 500
RETRY_MISSING_KIND = 1.0
"""Seconds between tries while a kind is not served (its CRD is not installed yet)."""
MAX_BACKOFF = 5.0


def key_of(obj: RawObject) -> Key:
    m = meta(obj)
    return (str(m.get("namespace") or ""), str(m.get("name", "")))


class Informer:
    """The cached state of one kind, kept current by a watch."""

    def __init__(
        self,
        client: Client,
        kind: ResourceKind,
        *,
        watch_timeout: int = 300,
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.kind = kind
        self.watch_timeout = watch_timeout
        self._on_event = on_event
        self._cache: dict[Key, RawObject] = {}
        self._handlers: list[Handler] = []
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indexes: dict[str, dict[str, set[Key]]] = {}
        self._indexed: dict[str, dict[Key, tuple[str, ...]]] = {}
        self._tombstones: dict[Key, str] = {}
        self.resource_version = ""
        self.synced = False
        self.available = True
        """False while the server does not serve the kind (a CRD not yet installed)."""

    # -- registration ---------------------------------------------------------------------

    def add_handler(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def add_index(self, name: str, func: IndexFunc) -> None:
        self._index_funcs[name] = func
        self._indexes[name] = {}
        self._indexed[name] = {}
        for key, obj in self._cache.items():
            self._index(name, key, obj)

    # -- reading --------------------------------------------------------------------------

    def get(self, name: str, namespace: str | None = None) -> RawObject | None:
        ns = (namespace or "") if self.kind.namespaced else ""
        return self._cache.get((ns, name))

    def items(self) -> Iterator[RawObject]:
        return iter(list(self._cache.values()))

    def __len__(self) -> int:
        return len(self._cache)

    def by_index(self, name: str, value: str) -> list[RawObject]:
        keys = self._indexes[name].get(value, ())
        return [self._cache[k] for k in sorted(keys) if k in self._cache]

    # -- cache maintenance ----------------------------------------------------------------

    def _index(self, name: str, key: Key, obj: RawObject | None) -> None:
        index = self._indexes[name]
        for value in self._indexed[name].pop(key, ()):
            bucket = index.get(value)
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del index[value]
        if obj is None:
            return
        values = tuple(dict.fromkeys(self._index_funcs[name](obj)))
        if values:
            self._indexed[name][key] = values
            for value in values:
                index.setdefault(value, set()).add(key)

    def _store(self, key: Key, obj: RawObject | None) -> RawObject | None:
        old = self._cache.pop(key, None) if obj is None else self._cache.get(key)
        if obj is not None:
            self._cache[key] = obj
        for name in self._index_funcs:
            self._index(name, key, obj)
        return old

    def _notify(self, old: RawObject | None, new: RawObject | None) -> None:
        for handler in self._handlers:
            try:
                handler(old, new)
            except Exception:  # a broken handler must not stop the watch
                log.exception("handler for %s failed", self.kind.kind)

    def observe(self, obj: RawObject) -> None:
        """Take in an object as a write returned it (or as a watch delivered it)."""
        key = key_of(obj)
        uid = uid_of(obj)
        if self._tombstones.get(key) == uid:
            return
        old = self._cache.get(key)
        if (
            old is not None
            and uid_of(old) == uid
            and not newer(str(meta(obj).get("resourceVersion", "")), _rv(old))
        ):
            return
        self._tombstones.pop(key, None)
        self._store(key, obj)
        self._notify(old, obj)

    def forget(self, obj: RawObject) -> None:
        """Take in the deletion of `obj` (as a delete call reported it)."""
        key = key_of(obj)
        old = self._cache.get(key)
        if old is None or uid_of(old) != uid_of(obj):
            return
        self._tombstones[key] = uid_of(obj)
        self._store(key, None)
        self._notify(old, None)

    def _deleted(self, obj: RawObject) -> None:
        key = key_of(obj)
        if self._tombstones.get(key) == uid_of(obj):
            del self._tombstones[key]
            return
        old = self._cache.get(key)
        if old is None or uid_of(old) != uid_of(obj):
            return
        self._store(key, None)
        self._notify(old, None)

    def apply(self, event: WatchEvent) -> None:
        if event.type == "BOOKMARK":
            self.resource_version = event.resource_version or self.resource_version
            return
        if self._on_event is not None:
            self._on_event()
        if event.type == "DELETED":
            self._deleted(event.object)
        else:
            self.observe(event.object)
        self.resource_version = event.resource_version or self.resource_version

    # -- list and watch -------------------------------------------------------------------

    async def sync(self) -> None:
        """List the kind (all namespaces, paged) and make the cache equal to it.

        Raises `NotFound` when the kind is not served, and other `KubeError`s as they come.
        """
        items: list[RawObject] = []
        token: str | None = None
        version = ""
        while True:
            page = await self.client.list(self.kind, limit=LIST_PAGE, continue_token=token)
            items.extend(page.items)
            version = page.resource_version
            token = page.continue_token
            if not token:
                break
        seen: set[Key] = set()
        for obj in items:
            obj.setdefault("apiVersion", self.kind.api_version)
            obj.setdefault("kind", self.kind.kind)
            key = key_of(obj)
            seen.add(key)
            old = self._cache.get(key)
            if old is not None and uid_of(old) == uid_of(obj) and _rv(old) == _rv(obj):
                continue
            self._store(key, obj)
            self._notify(old, obj)
        for key in [k for k in self._cache if k not in seen]:
            old = self._store(key, None)
            self._notify(old, None)
        self._tombstones.clear()
        self.resource_version = version
        self.synced = True
        self.available = True

    async def _clear(self) -> None:
        for key in list(self._cache):
            old = self._store(key, None)
            self._notify(old, None)
        self._tombstones.clear()

    async def run(self) -> None:
        """Follow the kind until cancelled: watch, re-watch, list again after `Gone`."""
        backoff = 0.1
        while True:
            if not self.synced:
                try:
                    await self.sync()
                except NotFound:
                    self.available = False
                    await self._clear()
                    await asyncio.sleep(RETRY_MISSING_KIND)
                    continue
                except KubeError as exc:
                    log.warning("listing %s failed: %s", self.kind.kind, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
                    continue
            try:
                stream = self.client.watch(
                    self.kind,
                    resource_version=self.resource_version or None,
                    allow_bookmarks=True,
                    timeout_seconds=self.watch_timeout,
                )
                try:
                    async for event in stream:
                        backoff = 0.1
                        self.apply(_typed(event, self.kind))
                finally:
                    closer = getattr(stream, "aclose", None)
                    if closer is not None:
                        await closer()
            except Gone:
                self.synced = False
            except NotFound:
                self.synced = False
            except KubeError as exc:
                log.warning("watching %s failed: %s", self.kind.kind, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)


def _rv(obj: RawObject) -> str:
    return str(meta(obj).get("resourceVersion", ""))


def _typed(event: WatchEvent, kind: ResourceKind) -> WatchEvent:
    obj: dict[str, Any] = event.object
    if event.type != "BOOKMARK":
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
    return event
