"""Watches: list+watch caches of the kinds that wake a workspace, and the key mapping.

A reconciler is level-triggered, so the watches only have to say *which* workspace to look at,
never what happened. Workspaces map to their own key `namespace/name`. Every other watched
object (NodeClaims, Nodes, StatefulSets, Services, Pods, Jobs, ConfigMaps) maps through the
labels kaito puts on everything it creates, `kaito.sh/workspace` and
`kaito.sh/workspacenamespace` (the object's own namespace when the second is absent). Those
kinds are watched with the selector `kaito.sh/workspace` (label exists), so the API server
filters out the Pods and Nodes kaito has nothing to do with and they cost nothing here.

Each `Informer` follows the protocol client-go's reflector uses:

1. list (paged) and remember the list's resourceVersion; report every object that is new,
   changed or gone compared with the cache (all of them on the first list);
2. watch from that resourceVersion with bookmarks, so that a quiet stream still advances it;
3. when the server ends the stream (its `timeoutSeconds`), watch again from the last
   resourceVersion seen: nothing is missed and nothing is listed again;
4. on 410 Gone (the resourceVersion fell out of the server's history) list again at once;
   on any other failure (transport errors, server errors) list again after an exponential
   backoff, so a flapping API server is not hammered.

A kind the server does not serve (the NodeClaim CRD on a cluster without Karpenter) counts as
synced and empty, and is looked for again at the backoff cap.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from kaito.kube import (
    CONFIG_MAP,
    JOB,
    NODE,
    NODE_CLAIM,
    POD,
    SERVICE,
    STATEFUL_SET,
    WORKSPACE,
    Client,
    Gone,
    NotFound,
    RawObject,
    ResourceKind,
)
from kaito.operator._clock import Clock, SystemClock
from kaito.operator._logging import log
from kaito.operator._metrics import OperatorMetrics
from kaito.provisioners import WORKSPACE_LABEL, WORKSPACE_NAMESPACE_LABEL

CHILD_KINDS: tuple[ResourceKind, ...] = (
    NODE_CLAIM,
    NODE,
    STATEFUL_SET,
    SERVICE,
    POD,
    JOB,
    CONFIG_MAP,
)
"""Kinds watched (with the `kaito.sh/workspace` selector) because they wake their workspace."""

CHILD_SELECTOR = WORKSPACE_LABEL
"""The label selector of the child watches: the workspace label exists."""

EventHandler = Callable[[ResourceKind, str, RawObject], None]
"""Called with (kind, event type, object) for each ADDED, MODIFIED or DELETED object."""

_logger = logging.getLogger("kaito.operator.watch")


def workspace_key(kind: ResourceKind, obj: Mapping[str, Any]) -> str | None:
    """The `namespace/name` of the workspace `obj` belongs to, or None when it names none."""
    meta = obj.get("metadata") or {}
    if kind == WORKSPACE:
        name, namespace = meta.get("name"), meta.get("namespace")
        return f"{namespace}/{name}" if name and namespace else None
    labels = meta.get("labels") or {}
    name = labels.get(WORKSPACE_LABEL)
    namespace = labels.get(WORKSPACE_NAMESPACE_LABEL) or meta.get("namespace")
    if not name or not namespace:
        return None
    return f"{namespace}/{name}"


def _cache_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Informer:
    """A list+watch cache of one kind that reports changes to a handler; see the module doc."""

    def __init__(
        self,
        client: Client,
        kind: ResourceKind,
        on_event: EventHandler,
        *,
        label_selector: str | None = None,
        clock: Clock | None = None,
        metrics: OperatorMetrics | None = None,
        page_size: int = 500,
        watch_timeout: int = 300,
        retry_base: float = 1.0,
        retry_cap: float = 30.0,
    ) -> None:
        self.client = client
        self.kind = kind
        self.label_selector = label_selector
        self._on_event = on_event
        self._clock: Clock = clock or SystemClock()
        self._metrics = metrics
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._cache: dict[tuple[str, str], RawObject] = {}
        self.synced = asyncio.Event()
        """Set once the first list has been loaded into the cache."""
        self.lists = 0
        """How many full lists this informer has made."""
        self.resource_version: str | None = None
        """The resourceVersion the next watch resumes from (None: list first)."""

    def objects(self) -> list[RawObject]:
        """The cached objects (the dicts themselves: do not modify them)."""
        return list(self._cache.values())

    def __len__(self) -> int:
        return len(self._cache)

    async def run(self) -> None:
        """List and watch until cancelled."""
        failures = 0
        while True:
            try:
                if self.resource_version is None:
                    self.resource_version = await self._list()
                received = await self._watch(self.resource_version)
            except asyncio.CancelledError:
                raise
            except Gone:
                log(_logger, logging.INFO, "watch expired; listing again", kind=self.kind.kind)
                self.resource_version = None
                continue
            except NotFound as exc:
                # The kind is not served (yet): nothing of it can wake a workspace.
                log(
                    _logger,
                    logging.WARNING,
                    "kind not served; will look again",
                    kind=self.kind.kind,
                    error=str(exc),
                )
                self._replace([])
                self.synced.set()
                self.resource_version = None
                await self._clock.sleep(self._retry_cap)
                continue
            except Exception as exc:
                delay = self._backoff(failures)
                failures += 1
                log(
                    _logger,
                    logging.WARNING,
                    "watch failed; listing again after a pause",
                    kind=self.kind.kind,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=delay,
                )
                self.resource_version = None
                await self._clock.sleep(delay)
                continue
            if received:
                failures = 0
            else:
                # A stream that ended without a single event: do not reconnect in a tight loop.
                await self._clock.sleep(self._backoff(failures))
                failures += 1

    def _backoff(self, failures: int) -> float:
        return float(min(self._retry_base * (2 ** min(failures, 30)), self._retry_cap))

    async def _list(self) -> str:
        items: list[RawObject] = []
        token: str | None = None
        while True:
            page = await self.client.list(
                self.kind,
                label_selector=self.label_selector,
                limit=self._page_size,
                continue_token=token,
            )
            items.extend(page.items)
            token = page.continue_token
            if not token:
                break
        self.lists += 1
        if self._metrics is not None:
            self._metrics.watch_lists.labels(kind=self.kind.kind).inc()
        self._replace(items)
        self.synced.set()
        return page.resource_version

    def _replace(self, items: list[RawObject]) -> None:
        """Load a full list into the cache, reporting what is new, changed or gone."""
        old = self._cache
        self._cache = {}
        for obj in items:
            # A list's items carry no apiVersion/kind; the handler wants whole objects.
            obj.setdefault("apiVersion", self.kind.api_version)
            obj.setdefault("kind", self.kind.kind)
            key = _cache_key(obj)
            self._cache[key] = obj
            previous = old.pop(key, None)
            if previous is None:
                self._on_event(self.kind, "ADDED", obj)
            elif _rv(previous) != _rv(obj):
                self._on_event(self.kind, "MODIFIED", obj)
        for gone in old.values():
            self._on_event(self.kind, "DELETED", gone)

    async def _watch(self, resource_version: str) -> int:
        """Watch from `resource_version` until the stream ends; returns the events received."""
        received = 0
        timeout = int(self._watch_timeout * random.uniform(1.0, 1.2))
        stream = self.client.watch(
            self.kind,
            resource_version=resource_version,
            label_selector=self.label_selector,
            timeout_seconds=timeout,
            allow_bookmarks=True,
        )
        try:
            async for event in stream:
                received += 1
                if event.resource_version:
                    self.resource_version = event.resource_version
                if event.type == "BOOKMARK":
                    continue
                key = _cache_key(event.object)
                if event.type == "DELETED":
                    self._cache.pop(key, None)
                else:
                    self._cache[key] = event.object
                self._on_event(self.kind, event.type, event.object)
        finally:
            # Close the stream (and its connection) also when leaving early or cancelled.
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        return received
