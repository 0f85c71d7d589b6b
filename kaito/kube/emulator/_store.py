"""The emulator's object store: exact API-server storage semantics, no lifecycle behaviour.

Everything a kube-apiserver does *to stored objects on behalf of a request* lives here: identity
(uid, generateName, creationTimestamp), one resourceVersion counter for the whole store,
optimistic concurrency, metadata.generation, the status subresource split, finalizers and
deletionTimestamp, ownerReference garbage collection (background, foreground, orphan), namespace
and CRD termination, managedFields, CRD schema enforcement, list paging and the watch event
history. What a kubelet, a scheduler or Karpenter would do (pods becoming Running, nodes
appearing) is left to simulators that run beside the store and write through its API.

Atomicity comes from the event loop: every public method is synchronous and completes its whole
read-modify-write, event append and watcher fan-out before it returns, so writes are totally
ordered and the event order equals resourceVersion order. Stored objects are never mutated; a
write replaces the snapshot, which lets the event history and the watchers share snapshots.
Callers get deep copies and can never reach into the store.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import collections
import copy
import json
import random
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import yaml

from kaito.kube._kinds import KindTable, ResourceKind
from kaito.kube.emulator import _errors as errs
from kaito.kube.emulator._errors import FIELD_FORBIDDEN, FIELD_INVALID, FIELD_REQUIRED, FieldError
from kaito.kube.emulator._fields import (
    Managers,
    object_leaves,
    server_side_apply,
    track_update,
)
from kaito.kube.emulator._patch import json_patch, merge_patch, strategic_merge_patch
from kaito.kube.emulator._resources import (
    CRD_CLEANUP_FINALIZER,
    Resource,
    builtin_resources,
    crd_status,
    resource_from_crd,
    validate_crd,
)
from kaito.kube.emulator._schema import apply_defaults, check_rules, prune, validate
from kaito.kube.emulator._selectors import (
    FieldSelector,
    LabelSelector,
    parse_field_selector,
    parse_label_selector,
    supported_fields,
)

JsonObj = dict[str, Any]
ObjKey = tuple[tuple[str, str], str, str]  # (resource key, namespace, name)

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_PATCH)

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: Mapping[str, Any]) -> JsonObj:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


@attrs.frozen
class WatchEvent:
    """One committed change. `object` is the new state (the last state for DELETED)."""

    type: str
    object: JsonObj
    resource_version: int
    resource: tuple[str, str] = ("", "")
    old: JsonObj | None = None


@attrs.frozen
class ListResult:
    items: list[JsonObj]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


class Watcher:
    """One watch: a filtered, ordered stream of events of one resource.

    Iterate it (`async for event in watcher`) from in-process code; events are deep copies.
    The HTTP layer uses `next_raw`, which hands out the shared snapshots for serialisation.
    """

    def __init__(
        self,
        store: Store,
        resource: Resource,
        version: str,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> None:
        self.store = store
        self.resource = resource
        self.version = version
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.closed = False
        self.last_rv = 0

    def matches(self, obj: Mapping[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = _meta(obj)
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def offer(self, event: WatchEvent) -> None:
        """Deliver an event as the watch cache would: entering and leaving the selection."""
        if self.closed:
            return
        etype = event.type
        if etype == "MODIFIED":
            was, now = self.matches(event.old), self.matches(event.object)
            if was and not now:
                etype = "DELETED"
            elif now and not was:
                etype = "ADDED"
            elif not now:
                return
        elif not self.matches(event.object):
            return
        self.queue.put_nowait(attrs.evolve(event, type=etype))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.store._unwatch(self)
            self.queue.put_nowait(None)

    async def next_raw(self, wait: float | None = None) -> WatchEvent | None:
        """The next event, or None when the watch ended or `wait` seconds passed without one."""
        if self.closed and self.queue.empty():
            return None
        try:
            async with asyncio.timeout(wait):
                event = await self.queue.get()
        except TimeoutError:
            return None
        if event is None:
            self.closed = True
            return None
        self.last_rv = event.resource_version
        return event

    def pending(self) -> bool:
        return not self.queue.empty()

    def __aiter__(self) -> Watcher:
        return self

    async def __anext__(self) -> WatchEvent:
        event = await self.next_raw()
        if event is None:
            raise StopAsyncIteration
        return attrs.evolve(
            event, object=self.store._present(self.resource, event.object, self.version)
        )


class Store:
    """The in-memory API object store (synchronous; use it from the emulator's event loop)."""

    def __init__(
        self,
        *,
        watch_history: int = 10000,
        clock: Callable[[], datetime] | None = None,
        crds: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        if watch_history < 1:
            raise ValueError("watch_history must be at least 1")
        self.clock = clock or (lambda: datetime.now(UTC))
        self.kinds = KindTable()
        self._resources: dict[tuple[str, str], Resource] = {}
        self._data: dict[tuple[str, str], dict[str, dict[str, JsonObj]]] = {}
        self._uids: dict[str, ObjKey] = {}
        self._dependents: dict[str, set[ObjKey]] = collections.defaultdict(set)
        self._rv = 0
        self._history: collections.deque[WatchEvent] = collections.deque(maxlen=watch_history)
        self._floor = 0
        self._watchers: dict[tuple[str, str], set[Watcher]] = collections.defaultdict(set)
        for res in builtin_resources():
            self._register(res)
        for ns in INITIAL_NAMESPACES:
            self.create("namespaces", {"metadata": {"name": ns}})
        for crd in crds:
            self.create("customresourcedefinitions", dict(crd))

    # --- resources -------------------------------------------------------------------------

    def _register(self, res: Resource) -> None:
        old = self._resources.get(res.key)
        if old is not None:
            for kind in old.versions.values():
                self.kinds.remove(kind)
        self._resources[res.key] = res
        self._data.setdefault(res.key, {})
        for kind in res.versions.values():
            self.kinds.add(kind)
        for watcher in self._watchers.get(res.key, ()):
            watcher.resource = res

    def _unregister(self, key: tuple[str, str]) -> None:
        res = self._resources.pop(key, None)
        if res is None:
            return
        for kind in res.versions.values():
            self.kinds.remove(kind)
        self._data.pop(key, None)
        for watcher in list(self._watchers.get(key, ())):
            watcher.close()

    def resources(self) -> builtins.list[Resource]:
        """Every resource currently served."""
        return list(self._resources.values())

    def resource(self, kind: ResourceKind | str) -> Resource:
        """The resource a `ResourceKind` or a name (plural, Kind, short name, `plural.group`)
        designates; unknown names raise a 404 ApiError."""
        if isinstance(kind, ResourceKind):
            res = self._resources.get((kind.group, kind.plural))
            if res is None:
                raise errs.resource_not_found()
            return res
        wanted = kind.lower()
        for res in self._resources.values():
            names = {res.plural, res.kind.lower(), res.describe()}
            for rk in res.versions.values():
                names.add(rk.singular)
                names.update(rk.short_names)
            if wanted in names:
                return res
        raise errs.resource_not_found()

    def _version_of(self, res: Resource, kind: ResourceKind | str) -> str:
        if isinstance(kind, ResourceKind) and kind.version in res.versions:
            return kind.version
        return res.storage_version

    # --- reading ---------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The store's current resourceVersion (the RV of the last write)."""
        return self._rv

    def _present(self, res: Resource, obj: JsonObj, version: str) -> JsonObj:
        out = copy.deepcopy(obj)
        if res.custom:
            # Objects written before a storage-version change keep their old apiVersion in
            # storage; with `conversion: None` every read presents the requested version.
            out["apiVersion"] = res.api_version(version)
        return out

    def _bucket(self, res: Resource, namespace: str) -> dict[str, JsonObj]:
        return self._data[res.key].setdefault(namespace if res.namespaced else "", {})

    def _raw(self, res: Resource, namespace: str | None, name: str) -> JsonObj | None:
        ns = (namespace or "") if res.namespaced else ""
        return self._data.get(res.key, {}).get(ns, {}).get(name)

    def get(self, kind: ResourceKind | str, namespace: str | None, name: str) -> JsonObj | None:
        """A copy of one object, or None."""
        res = self.resource(kind)
        obj = self._raw(res, namespace, name)
        return None if obj is None else self._present(res, obj, self._version_of(res, kind))

    def read(self, kind: ResourceKind | str, namespace: str | None, name: str) -> JsonObj:
        """Like `get`, but a missing object is the server's 404."""
        res = self.resource(kind)
        obj = self._raw(res, namespace, name)
        if obj is None:
            raise errs.not_found(res.plural, res.group, name)
        return self._present(res, obj, self._version_of(res, kind))

    def objects(
        self, kind: ResourceKind | str, namespace: str | None = None
    ) -> builtins.list[JsonObj]:
        """Copies of every object of a kind (in one namespace if given), sorted by key."""
        res = self.resource(kind)
        version = self._version_of(res, kind)
        return [self._present(res, o, version) for o in self._iter(res, namespace)]

    def _iter(self, res: Resource, namespace: str | None) -> Iterator[JsonObj]:
        buckets = self._data.get(res.key, {})
        if res.namespaced and namespace:
            names = buckets.get(namespace, {})
            for name in sorted(names):
                yield names[name]
            return
        for ns in sorted(buckets):
            names = buckets[ns]
            for name in sorted(names):
                yield names[name]

    def list(
        self,
        kind: ResourceKind | str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """A list page in key order; `continue_token` resumes after the previous page."""
        res = self.resource(kind)
        version = self._version_of(res, kind)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(
            field_selector, supported_fields(res.group, res.plural, res.selectable_fields)
        )
        start = ""
        list_rv = self._rv
        if continue_token:
            list_rv, start = self._decode_continue(continue_token)
        if limit is not None and limit < 0:
            raise errs.bad_request(f"limit must be non-negative, got {limit}")
        ns_pin = fields.exact("metadata.namespace")
        scope = namespace if res.namespaced and namespace else ns_pin if res.namespaced else None
        name_pin = fields.exact("metadata.name")
        matched: builtins.list[JsonObj] = []
        remaining = 0
        last_key = ""
        candidates = self._candidates(res, scope, name_pin)
        if continue_token and list_rv < self._rv:
            candidates = self._as_of(res, list_rv, candidates, scope, name_pin)
        for obj in candidates:
            meta = _meta(obj)
            key = f"{meta.get('namespace', '')}/{meta['name']}"
            if start and key <= start:
                continue
            if not (labels.matches(meta.get("labels")) and fields.matches(obj)):
                continue
            if limit and len(matched) >= limit:
                remaining += 1
                continue
            matched.append(obj)
            last_key = key
        token = ""
        if remaining:
            raw = json.dumps({"rv": list_rv, "start": last_key}, separators=(",", ":"))
            token = base64.urlsafe_b64encode(raw.encode()).decode()
        return ListResult(
            items=[self._present(res, o, version) for o in matched],
            resource_version=list_rv,
            continue_token=token,
            remaining=remaining if remaining and labels.empty and fields.empty else None,
        )

    def _candidates(
        self, res: Resource, namespace: str | None, name: str | None
    ) -> Iterable[JsonObj]:
        if name is not None:
            buckets = self._data.get(res.key, {})
            nss = [namespace or ""] if namespace or not res.namespaced else sorted(buckets)
            found = [buckets.get(ns, {}).get(name) for ns in nss]
            return [o for o in found if o is not None]
        return self._iter(res, namespace)

    def _as_of(
        self,
        res: Resource,
        rv: int,
        current: Iterable[JsonObj],
        namespace: str | None,
        name: str | None,
    ) -> builtins.list[JsonObj]:
        """The objects as they were at `rv`, rebuilt by undoing the later history events.

        This is what makes continued lists consistent: every page shows the snapshot of the
        first page, as etcd's MVCC reads do. The history covers everything after `rv`, since
        an older continue token has already been rejected as expired.
        """
        earlier: dict[tuple[str, str], JsonObj | None] = {}
        for event in reversed(self._history):
            if event.resource_version <= rv:
                break
            if event.resource != res.key:
                continue
            meta = _meta(event.object)
            earlier[(str(meta.get("namespace", "")), str(meta["name"]))] = (
                None if event.type == "ADDED" else event.old
            )
        objects: dict[tuple[str, str], JsonObj] = {}
        for obj in current:
            meta = _meta(obj)
            objects[(str(meta.get("namespace", "")), str(meta["name"]))] = obj
        for key, before in earlier.items():
            if before is None:
                objects.pop(key, None)
            elif (not namespace or key[0] == namespace) and (name is None or key[1] == name):
                objects[key] = before
        return [objects[k] for k in sorted(objects)]

    def _decode_continue(self, token: str) -> tuple[int, str]:
        try:
            raw = json.loads(base64.urlsafe_b64decode(token.encode()))
            rv, start = int(raw["rv"]), str(raw["start"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise errs.bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion "
                "(version meta.k8s.io/v1)"
            ) from None
        if rv < self._floor:
            raise errs.expired(
                "continue token expired: the provided continue parameter is too old to display a "
                "consistent list result; start a new list without the continue parameter"
            )
        return rv, start

    # --- watching --------------------------------------------------------------------------

    def watch(
        self,
        kind: ResourceKind | str,
        namespace: str | None = None,
        *,
        resource_version: str | int | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        send_initial_events: bool | None = None,
    ) -> tuple[Watcher, int]:
        """Open a watch; returns the watcher and the RV its initial events are consistent with.

        With no resourceVersion (or "0") current objects arrive first as ADDED; with an RV, the
        events after it are replayed from the history, or a 410 ApiError if they were dropped.
        """
        res = self.resource(kind)
        version = self._version_of(res, kind)
        labels = parse_label_selector(label_selector)
        fields = parse_field_selector(
            field_selector, supported_fields(res.group, res.plural, res.selectable_fields)
        )
        watcher = Watcher(self, res, version, namespace if res.namespaced else None, labels, fields)
        rv_text = str(resource_version or "").strip()
        try:
            start = int(rv_text) if rv_text else 0
        except ValueError:
            raise errs.bad_request(f"invalid resource version: {rv_text}") from None
        initial = send_initial_events if send_initial_events is not None else start == 0
        if start and not initial:
            if start < self._floor:
                raise errs.expired(f"too old resource version: {start} ({self._floor + 1})")
            for event in self._history:
                if event.resource_version > start and event.resource == res.key:
                    watcher.offer(event)
        else:
            for obj in self._iter(res, watcher.namespace):
                watcher.offer(WatchEvent("ADDED", obj, int(_meta(obj)["resourceVersion"]), res.key))
        self._watchers[res.key].add(watcher)
        return watcher, self._rv

    def _unwatch(self, watcher: Watcher) -> None:
        self._watchers.get(watcher.resource.key, set()).discard(watcher)

    def close_watches(self) -> None:
        """End every open watch (as a server shutdown does)."""
        for watchers in list(self._watchers.values()):
            for watcher in list(watchers):
                watcher.close()

    @property
    def history_limit(self) -> int:
        """How many events the watch history keeps; older watches and lists get 410 Gone."""
        return self._history.maxlen or 0

    @history_limit.setter
    def history_limit(self, size: int) -> None:
        if size < 1:
            raise ValueError("history_limit must be at least 1")
        events = list(self._history)
        dropped, kept = events[: max(0, len(events) - size)], events[-size:]
        if dropped:
            self._floor = max(self._floor, dropped[-1].resource_version)
        self._history = collections.deque(kept, maxlen=size)

    @property
    def oldest_resource_version(self) -> int:
        """Watches and continue tokens from an RV below this get 410 Gone."""
        return self._floor

    # --- committing ------------------------------------------------------------------------

    def _commit(self, res: Resource, etype: str, new: JsonObj, old: JsonObj | None) -> JsonObj:
        self._rv += 1
        meta = new.setdefault("metadata", {})
        meta["resourceVersion"] = str(self._rv)
        ns = meta.get("namespace", "") if res.namespaced else ""
        key: ObjKey = (res.key, ns, meta["name"])
        bucket = self._bucket(res, ns)
        if old is not None:
            for uid in _owner_uids(old):
                self._dependents[uid].discard(key)
        if etype == "DELETED":
            bucket.pop(meta["name"], None)
            if not bucket and ns:
                self._data[res.key].pop(ns, None)
            self._uids.pop(str(meta.get("uid")), None)
        else:
            bucket[meta["name"]] = new
            self._uids[str(meta["uid"])] = key
            for uid in _owner_uids(new):
                self._dependents[uid].add(key)
        if len(self._history) == self._history.maxlen:
            self._floor = self._history[0].resource_version
        event = WatchEvent(etype, new, self._rv, res.key, old)
        self._history.append(event)
        for watcher in list(self._watchers.get(res.key, ())):
            watcher.offer(event)
        return new

    def _now(self) -> str:
        return _rfc3339(self.clock())

    # --- create ----------------------------------------------------------------------------

    def seed(self, objs: Iterable[Mapping[str, Any]]) -> builtins.list[JsonObj]:
        """Create objects directly (status kept, missing namespaces created) for test set-up."""
        out: builtins.list[JsonObj] = []
        for obj in objs:
            kind = self.kinds.for_object(obj)
            if kind is None:
                raise errs.bad_request(
                    f"no kind {obj.get('kind')!r} is served for apiVersion "
                    f"{obj.get('apiVersion')!r}"
                )
            res = self.resource(kind)
            ns = _meta(obj).get("namespace") or "default"
            if res.namespaced and self._raw(self._resources[("", "namespaces")], None, ns) is None:
                self.create("namespaces", {"metadata": {"name": ns}})
            out.append(self.create(kind, obj, seeding=True))
        return out

    def create(
        self,
        kind: ResourceKind | str,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        field_manager: str | None = None,
        dry_run: bool = False,
        seeding: bool = False,
    ) -> JsonObj:
        """POST: create an object; returns the stored object (a copy).

        `seeding` is for test set-up: status and creationTimestamp are kept as given and a
        stale resourceVersion or uid is dropped instead of rejected.
        """
        res = self.resource(kind)
        version = self._version_of(res, kind)
        body = copy.deepcopy(dict(obj))
        if seeding and isinstance(body.get("metadata"), dict):
            body["metadata"].pop("resourceVersion", None)
            body["metadata"].pop("uid", None)
        new = self._prepare_create(res, version, body, namespace, seeding)
        managers = Managers(None)
        track_update(
            managers,
            field_manager or "unknown",
            "",
            res.api_version(version),
            self._now(),
            {},
            object_leaves(new, res.shape, "main" if res.has_status else "all"),
        )
        rendered = managers.render()
        if rendered:
            new["metadata"]["managedFields"] = rendered
        if dry_run:
            return self._present(res, new, version)
        if res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._install_crd(new, None)
        stored = self._commit(res, "ADDED", new, None)
        return self._present(res, stored, version)

    def _prepare_create(
        self,
        res: Resource,
        version: str,
        obj: JsonObj,
        namespace: str | None,
        seeding: bool,
    ) -> JsonObj:
        self._check_type(res, version, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errs.bad_request("metadata must be an object")
        if meta.get("resourceVersion"):
            raise errs.bad_request("resourceVersion should not be set on objects to be created")
        if res.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and meta["namespace"] != ns:
                raise errs.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = self._generate_name(res, meta)
            else:
                raise errs.invalid(
                    res.kind,
                    res.group,
                    "",
                    [
                        FieldError(
                            FIELD_REQUIRED, "metadata.name", "name or generateName is required"
                        )
                    ],
                )
        name = str(meta["name"])
        self._check_name(res, name)
        if res.namespaced:
            self._check_namespace_open(res, str(meta["namespace"]), name)
        if self._raw(res, meta.get("namespace"), name) is not None:
            raise errs.already_exists(res.plural, res.group, name)
        for field in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        if not (seeding and meta.get("creationTimestamp")):
            meta["creationTimestamp"] = self._now()
        if res.tracks_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        obj["apiVersion"] = res.api_version()
        obj["kind"] = res.kind
        if res.has_status and not seeding and res.key != ("", "nodes"):
            obj.pop("status", None)
        self._defaults_on_create(res, obj)
        _fold_string_data(res, obj)
        errors = self._validate(res, version, obj, None)
        if errors:
            raise errs.invalid(res.kind, res.group, name, errors)
        if res.custom:
            obj = self._custom_prepare(res, version, obj, None)
        return obj

    def _generate_name(self, res: Resource, meta: JsonObj) -> str:
        prefix = str(meta["generateName"])
        for _ in range(20):
            candidate = prefix + "".join(random.choices(_NAME_CHARS, k=5))
            if self._raw(res, meta.get("namespace"), candidate) is None:
                return candidate
        raise errs.already_exists(res.plural, res.group, prefix)

    def _check_type(self, res: Resource, version: str, obj: JsonObj) -> None:
        want = res.api_version(version)
        have = obj.get("apiVersion") or want
        if have != want:
            raise errs.bad_request(
                f"the API version in the data ({have}) does not match the expected API version "
                f"({want})"
            )
        kind = obj.get("kind") or res.kind
        if kind != res.kind:
            raise errs.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({res.kind})"
            )

    def _check_name(self, res: Resource, name: str) -> None:
        if res.key == ("", "namespaces"):
            ok = len(name) <= 63 and bool(_LABEL.match(name))
            what = (
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                "or '-', and must start and end with an alphanumeric character"
            )
        else:
            ok = len(name) <= 253 and bool(_SUBDOMAIN.match(name))
            what = (
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character"
            )
        if not ok:
            raise errs.invalid(
                res.kind, res.group, name, [FieldError(FIELD_INVALID, "metadata.name", what, name)]
            )

    def _check_namespace_open(self, res: Resource, ns: str, name: str) -> None:
        namespaces = self._resources[("", "namespaces")]
        ns_obj = self._raw(namespaces, None, ns)
        if ns_obj is None:
            raise errs.not_found("namespaces", "", ns)
        if _meta(ns_obj).get("deletionTimestamp"):
            raise errs.forbidden(
                res.plural,
                res.group,
                name,
                f"unable to create new content in namespace {ns} because it is being terminated",
            )

    def _defaults_on_create(self, res: Resource, obj: JsonObj) -> None:
        if res.key == ("", "namespaces"):
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        elif res.key == ("", "pods"):
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        elif res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            finalizers = _meta(obj).setdefault("finalizers", [])
            if CRD_CLEANUP_FINALIZER not in finalizers:
                finalizers.append(CRD_CLEANUP_FINALIZER)

    def _validate(
        self, res: Resource, version: str, obj: JsonObj, old: JsonObj | None
    ) -> builtins.list[FieldError]:
        errors: builtins.list[FieldError] = []
        meta = _meta(obj)
        for i, ref in enumerate(meta.get("ownerReferences") or ()):
            for field in ("apiVersion", "kind", "name", "uid"):
                if not isinstance(ref, dict) or not ref.get(field):
                    errors.append(
                        FieldError(FIELD_REQUIRED, f"metadata.ownerReferences[{i}].{field}")
                    )
        for field in ("labels", "annotations"):
            value = meta.get(field)
            if value is not None and not (
                isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
            ):
                errors.append(
                    FieldError(FIELD_INVALID, f"metadata.{field}", "values must be strings", field)
                )
        if res.key == ("", "pods"):
            containers = (obj.get("spec") or {}).get("containers")
            if not containers:
                errors.append(FieldError(FIELD_REQUIRED, "spec.containers"))
            else:
                for i, c in enumerate(containers):
                    if not isinstance(c, dict) or not c.get("name"):
                        errors.append(FieldError(FIELD_REQUIRED, f"spec.containers[{i}].name"))
                    if not isinstance(c, dict) or not c.get("image"):
                        errors.append(FieldError(FIELD_REQUIRED, f"spec.containers[{i}].image"))
        if res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            errors.extend(validate_crd(obj))
            if old is not None and not errors:
                errors.extend(_crd_update_errors(obj, old))
        return errors

    def _custom_prepare(
        self, res: Resource, version: str, obj: JsonObj, old: JsonObj | None
    ) -> JsonObj:
        schema = res.schema(version)
        if not schema:
            return obj
        meta = obj.get("metadata")
        pruned: JsonObj = prune(obj, schema, root=True)
        pruned["metadata"] = meta
        apply_defaults(pruned, schema)
        errors = validate(pruned, schema)
        errors.extend(
            check_rules(pruned, schema) if old is None else check_rules(pruned, schema, old=old)
        )
        if errors:
            raise errs.invalid(res.kind, res.group, str(_meta(obj).get("name", "")), errors)
        return pruned

    # --- update ----------------------------------------------------------------------------

    def update(
        self,
        kind: ResourceKind | str,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str = "",
        field_manager: str | None = None,
        dry_run: bool = False,
    ) -> JsonObj:
        """PUT: replace an object (or its status with `subresource="status"`)."""
        res = self.resource(kind)
        version = self._version_of(res, kind)
        body = copy.deepcopy(dict(obj))
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        name = name or meta.get("name")
        if not name:
            raise errs.bad_request("name is required for an update")
        if meta.get("name") and meta["name"] != name:
            raise errs.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        ns = (namespace or meta.get("namespace") or "default") if res.namespaced else None
        if res.namespaced and meta.get("namespace") and meta["namespace"] != ns:
            raise errs.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        old = self._raw(res, ns, name)
        if old is None:
            raise errs.not_found(res.plural, res.group, name)
        self._check_type(res, version, body)
        rv = meta.get("resourceVersion")
        if rv and str(rv) != _meta(old)["resourceVersion"]:
            raise errs.conflict(res.plural, res.group, name, errs.STALE_OBJECT)
        uid = meta.get("uid")
        if uid and uid != _meta(old)["uid"]:
            raise errs.conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{_meta(old)['uid']}",
            )
        return self._write(
            res, version, old, body, subresource, field_manager or "unknown", dry_run
        )

    def _write(
        self,
        res: Resource,
        version: str,
        old: JsonObj,
        body: JsonObj,
        subresource: str,
        manager: str,
        dry_run: bool,
        managers: Managers | None = None,
    ) -> JsonObj:
        """Turn a full desired object into the next stored version of `old` and commit it."""
        if subresource not in ("", "status"):
            raise errs.resource_not_found()
        if subresource == "status" and not res.has_status:
            raise errs.resource_not_found()
        if subresource != "status":
            self._check_immutable_meta(res, old, body)
        new = self._merge_system_fields(res, old, body, subresource)
        old_meta, new_meta = _meta(old), _meta(new)
        name = str(old_meta["name"])
        if old_meta.get("deletionTimestamp"):
            added = [
                f
                for f in new_meta.get("finalizers") or ()
                if f not in (old_meta.get("finalizers") or ())
            ]
            if added:
                raise errs.invalid(
                    res.kind,
                    res.group,
                    name,
                    [
                        FieldError(
                            FIELD_FORBIDDEN,
                            "metadata.finalizers",
                            "no new finalizers can be added if the object is being deleted, "
                            f"found new finalizers {json.dumps(added)}",
                        )
                    ],
                )
        if subresource != "status":
            _fold_string_data(res, new)
        errors = self._validate(res, version, new, old)
        if errors:
            raise errs.invalid(res.kind, res.group, name, errors)
        if res.custom:
            new = self._custom_prepare(res, version, new, old)
            new_meta = _meta(new)
        if res.tracks_generation and _spec_changed(res, old, new):
            new_meta["generation"] = int(old_meta.get("generation") or 0) + 1
        scope = "status" if subresource == "status" else ("main" if res.has_status else "all")
        if managers is None:
            managers = Managers(old_meta.get("managedFields"))
            track_update(
                managers,
                manager,
                subresource,
                res.api_version(version),
                self._now(),
                object_leaves(old, res.shape, scope),
                object_leaves(new, res.shape, scope),
            )
        rendered = managers.render()
        if rendered:
            new_meta["managedFields"] = rendered
        else:
            new_meta.pop("managedFields", None)
        if _same(old, new):
            return self._present(res, old, version)
        if dry_run:
            return self._present(res, new, version)
        if res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._install_crd(new, old)
        if (
            new_meta.get("deletionTimestamp")
            and not new_meta.get("finalizers")
            and not _ns_finalizers(res, new)
        ):
            return self._present(res, self._remove(res, new, old), version)
        stored = self._commit(res, "MODIFIED", new, old)
        return self._present(res, stored, version)

    def _check_immutable_meta(self, res: Resource, old: JsonObj, body: JsonObj) -> None:
        """Deletion is started by DELETE only; a write may not set or change its fields."""
        old_meta, new_meta = _meta(old), _meta(body)
        errors = [
            FieldError(FIELD_INVALID, f"metadata.{field}", "field is immutable", new_meta[field])
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds")
            if new_meta.get(field) is not None and new_meta[field] != old_meta.get(field)
        ]
        if errors:
            raise errs.invalid(res.kind, res.group, str(old_meta["name"]), errors)

    def _merge_system_fields(
        self, res: Resource, old: JsonObj, body: JsonObj, subresource: str
    ) -> JsonObj:
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in body:
                new["status"] = copy.deepcopy(body["status"])
            else:
                new.pop("status", None)
            new["apiVersion"] = res.api_version()
            return new
        new = copy.deepcopy(body)
        new["apiVersion"] = res.api_version()
        new["kind"] = old["kind"]
        meta = new.setdefault("metadata", {})
        old_meta = _meta(old)
        for field in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "managedFields",
        ):
            if field in old_meta:
                meta[field] = copy.deepcopy(old_meta[field])
            else:
                meta.pop(field, None)
        meta.pop("selfLink", None)
        if res.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return new

    # --- patch -----------------------------------------------------------------------------

    def patch(
        self,
        kind: ResourceKind | str,
        namespace: str | None,
        name: str,
        patch: Any,
        patch_type: str = MERGE_PATCH,
        *,
        subresource: str = "",
        field_manager: str | None = None,
        force: bool = False,
        dry_run: bool = False,
    ) -> JsonObj:
        """PATCH with any of the four patch types; apply patches may create the object."""
        res = self.resource(kind)
        version = self._version_of(res, kind)
        ns = (namespace or "default") if res.namespaced else None
        if patch_type == APPLY_PATCH:
            return self._apply(
                res, version, ns, name, patch, subresource, field_manager, force, dry_run
            )
        if patch_type == STRATEGIC_PATCH and res.custom:
            raise errs.unsupported_media_type((JSON_PATCH, MERGE_PATCH, APPLY_PATCH))
        if patch_type not in PATCH_TYPES:
            raise errs.unsupported_media_type(PATCH_TYPES)
        old = self._raw(res, ns, name)
        if old is None:
            raise errs.not_found(res.plural, res.group, name)
        current = self._present(res, old, version)
        if patch_type == MERGE_PATCH:
            if not isinstance(patch, dict):
                raise errs.bad_request("merge patch must be a JSON object")
            patched = merge_patch(current, patch)
        elif patch_type == JSON_PATCH:
            patched = json_patch(current, patch)
        else:
            patched = strategic_merge_patch(current, patch, res.shape)
        if not isinstance(patched, dict):
            raise errs.bad_request("the patched object is not a JSON object")
        meta = _meta(patched)
        if meta.get("name", name) != name:
            raise errs.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        rv = meta.get("resourceVersion")
        if rv and str(rv) != _meta(old)["resourceVersion"]:
            raise errs.conflict(res.plural, res.group, name, errs.STALE_OBJECT)
        uid = meta.get("uid")
        if uid and uid != _meta(old)["uid"]:
            raise errs.conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{_meta(old)['uid']}",
            )
        self._check_type(res, version, patched)
        return self._write(
            res, version, old, patched, subresource, field_manager or "unknown", dry_run
        )

    def _apply(
        self,
        res: Resource,
        version: str,
        ns: str | None,
        name: str,
        patch: Any,
        subresource: str,
        field_manager: str | None,
        force: bool,
        dry_run: bool,
    ) -> JsonObj:
        if not field_manager:
            raise errs.invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                [FieldError(FIELD_REQUIRED, "fieldManager", "is required for apply patch")],
            )
        if isinstance(patch, str | bytes):
            try:
                # Clients send JSON, which is YAML too: json reads a StatefulSet in ~20 us,
                # PyYAML's pure-Python safe_load in ~20 ms.
                patch = json.loads(patch)
            except ValueError:
                try:
                    patch = yaml.safe_load(patch)
                except yaml.YAMLError as err:
                    raise errs.bad_request(f"error decoding YAML: {err}") from None
        if not isinstance(patch, dict):
            raise errs.bad_request("error decoding YAML: the apply configuration must be an object")
        self._check_type(res, version, patch)
        if not patch.get("apiVersion") or not patch.get("kind"):
            raise errs.bad_request("apiVersion and kind must be set in an apply configuration")
        meta = _meta(patch)
        if meta.get("name") and meta["name"] != name:
            raise errs.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        scope = "status" if subresource == "status" else ("main" if res.has_status else "all")
        old = self._raw(res, ns, name)
        now = self._now()
        api_version = res.api_version(version)
        if old is None:
            if subresource:
                raise errs.not_found(res.plural, res.group, name)
            base: JsonObj = {
                "apiVersion": api_version,
                "kind": res.kind,
                "metadata": {"name": name},
            }
            if ns:
                base["metadata"]["namespace"] = ns
            managers = Managers(None)
            desired = server_side_apply(
                base,
                patch,
                res.shape,
                managers,
                field_manager,
                "",
                api_version,
                now,
                force=force,
                scope=scope,
            )
            desired["metadata"].pop("resourceVersion", None)
            created = self._prepare_create(res, version, desired, ns, seeding=False)
            rendered = managers.render()
            if rendered:
                created["metadata"]["managedFields"] = rendered
            if dry_run:
                return self._present(res, created, version)
            if res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._install_crd(created, None)
            return self._present(res, self._commit(res, "ADDED", created, None), version)
        rv = meta.get("resourceVersion")
        if rv and str(rv) != _meta(old)["resourceVersion"]:
            raise errs.conflict(res.plural, res.group, name, errs.STALE_OBJECT)
        current = self._present(res, old, version)
        managers = Managers(_meta(old).get("managedFields"))
        desired = server_side_apply(
            current,
            patch,
            res.shape,
            managers,
            field_manager,
            subresource,
            api_version,
            now,
            force=force,
            scope=scope,
        )
        return self._write(
            res, version, old, desired, subresource, field_manager, dry_run, managers
        )

    # --- delete ----------------------------------------------------------------------------

    def delete(
        self,
        kind: ResourceKind | str,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str | None = None,
        preconditions: Mapping[str, Any] | None = None,
        grace_period_seconds: int | None = None,
        dry_run: bool = False,
    ) -> tuple[JsonObj, bool]:
        """DELETE: returns (object, deleted now). With finalizers the object stays, terminating."""
        res = self.resource(kind)
        version = self._version_of(res, kind)
        ns = (namespace or "default") if res.namespaced else None
        obj = self._raw(res, ns, name)
        if obj is None:
            raise errs.not_found(res.plural, res.group, name)
        meta = _meta(obj)
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errs.conflict(
                res.plural,
                res.group,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{meta.get('uid')}",
            )
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != meta.get(
            "resourceVersion"
        ):
            raise errs.conflict(
                res.plural,
                res.group,
                name,
                "Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta.get('resourceVersion')}",
            )
        if res.key == ("", "namespaces") and name in IMMORTAL_NAMESPACES:
            raise errs.forbidden("namespaces", "", name, "this namespace may not be deleted")
        policy = propagation_policy or "Background"
        if policy not in ("Background", "Foreground", "Orphan"):
            raise errs.invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    FieldError(
                        "FieldValueNotSupported",
                        "propagationPolicy",
                        'supported values: "Foreground", "Background", "Orphan", nil',
                        policy,
                    )
                ],
            )
        if dry_run:
            return self._present(res, obj, version), not meta.get("finalizers")
        result, gone = self._delete(res, obj, policy, grace_period_seconds)
        return self._present(res, result, version), gone

    def _delete(
        self, res: Resource, obj: JsonObj, policy: str, grace: int | None = None
    ) -> tuple[JsonObj, bool]:
        meta = _meta(obj)
        uid = str(meta["uid"])
        if meta.get("deletionTimestamp"):
            return obj, False
        dependents = [k for k in self._dependents.get(uid, ()) if self._lookup(k) is not None]
        if policy == "Orphan":
            for key in sorted(dependents):
                self._drop_owner_ref(key, uid)
            dependents = []
        finalizers = list(meta.get("finalizers") or ())
        if policy == "Foreground" and dependents and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if finalizers or _ns_finalizers(res, obj) or res.key == ("", "namespaces"):
            new = copy.deepcopy(obj)
            new_meta = new["metadata"]
            new_meta["finalizers"] = finalizers
            if not finalizers:
                new_meta.pop("finalizers")
            new_meta["deletionTimestamp"] = self._now()
            new_meta["deletionGracePeriodSeconds"] = (
                grace if grace is not None and res.key == ("", "pods") else 0
            )
            if int(new_meta.get("generation") or 0) > 0:
                new_meta["generation"] = int(new_meta["generation"]) + 1
            if res.key == ("", "namespaces"):
                new.setdefault("status", {})["phase"] = "Terminating"
            if res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                new.setdefault("status", {}).setdefault("conditions", []).append(
                    {
                        "type": "Terminating",
                        "status": "True",
                        "lastTransitionTime": self._now(),
                        "reason": "InstanceDeletionInProgress",
                        "message": "CustomResource deletion is in progress",
                    }
                )
            stored = self._commit(res, "MODIFIED", new, obj)
            if policy == "Foreground":
                for key in sorted(dependents):
                    self._delete_key(key, "Foreground")
            if res.key == ("", "namespaces"):
                self._empty_namespace(str(meta["name"]))
            elif res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
                self._empty_crd(stored)
            final = self._lookup((res.key, meta.get("namespace", ""), str(meta["name"])))
            return (final, False) if final is not None else (stored, True)
        return self._remove(res, obj, obj), True

    def _remove(self, res: Resource, final: JsonObj, old: JsonObj) -> JsonObj:
        """Delete an object for good: DELETED event, then garbage collection of dependents."""
        removed = self._commit(res, "DELETED", copy.deepcopy(final), old)
        meta = _meta(removed)
        uid = str(meta["uid"])
        if res.key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            spec = removed.get("spec") or {}
            self._unregister((str(spec.get("group")), str((spec.get("names") or {}).get("plural"))))
        for key in sorted(self._dependents.pop(uid, set())):
            dep = self._lookup(key)
            if dep is None:
                continue
            alive = [
                ref
                for ref in _meta(dep).get("ownerReferences") or ()
                if ref.get("uid") != uid and str(ref.get("uid")) in self._uids
            ]
            if alive:
                self._drop_owner_ref(key, uid)
            else:
                self._delete_key(key, "Background")
        self._settle_owners(removed)
        ns = meta.get("namespace")
        if res.namespaced and ns:
            ns_obj = self._raw(self._resources[("", "namespaces")], None, str(ns))
            if ns_obj is not None and _meta(ns_obj).get("deletionTimestamp"):
                self._finish_namespace(str(ns))
        if res.custom:
            crd = self._raw(
                self._resources[("apiextensions.k8s.io", "customresourcedefinitions")],
                None,
                res.crd_name,
            )
            if crd is not None and _meta(crd).get("deletionTimestamp"):
                self._finish_crd(crd)
        return removed

    def _lookup(self, key: ObjKey) -> JsonObj | None:
        rkey, ns, name = key
        return self._data.get(rkey, {}).get(ns, {}).get(name)

    def _delete_key(self, key: ObjKey, policy: str) -> None:
        obj = self._lookup(key)
        if obj is not None:
            res = self._resources[key[0]]
            has_deps = any(
                self._lookup(k) for k in self._dependents.get(str(_meta(obj)["uid"]), ())
            )
            self._delete(res, obj, policy if has_deps else "Background")

    def _drop_owner_ref(self, key: ObjKey, owner_uid: str) -> None:
        obj = self._lookup(key)
        if obj is None:
            return
        new = copy.deepcopy(obj)
        refs = [
            r for r in new["metadata"].get("ownerReferences") or () if r.get("uid") != owner_uid
        ]
        if refs:
            new["metadata"]["ownerReferences"] = refs
        else:
            new["metadata"].pop("ownerReferences", None)
        self._commit(self._resources[key[0]], "MODIFIED", new, obj)

    def _settle_owners(self, removed: JsonObj) -> None:
        """An owner deleted in the foreground goes once no blocking dependent is left."""
        for uid in _owner_uids(removed):
            key = self._uids.get(uid)
            owner = self._lookup(key) if key else None
            if owner is None or FOREGROUND not in (_meta(owner).get("finalizers") or ()):
                continue
            assert key is not None
            blocking = [
                k
                for k in self._dependents.get(uid, ())
                if (dep := self._lookup(k)) is not None
                and any(
                    r.get("uid") == uid and r.get("blockOwnerDeletion")
                    for r in _meta(dep).get("ownerReferences") or ()
                )
            ]
            if blocking:
                continue
            res = self._resources[key[0]]
            new = copy.deepcopy(owner)
            finalizers = [f for f in new["metadata"]["finalizers"] if f != FOREGROUND]
            if finalizers:
                new["metadata"]["finalizers"] = finalizers
                self._commit(res, "MODIFIED", new, owner)
            else:
                new["metadata"].pop("finalizers")
                self._remove(res, new, owner)

    def _empty_namespace(self, ns: str) -> None:
        for res in list(self._resources.values()):
            if not res.namespaced:
                continue
            for obj in list(self._data.get(res.key, {}).get(ns, {}).values()):
                current = self._lookup((res.key, ns, str(_meta(obj)["name"])))
                if current is not None:
                    self._delete(res, current, "Background")
        self._finish_namespace(ns)

    def _finish_namespace(self, ns: str) -> None:
        for res in self._resources.values():
            if res.namespaced and self._data.get(res.key, {}).get(ns):
                return
        namespaces = self._resources[("", "namespaces")]
        obj = self._raw(namespaces, None, ns)
        if obj is None:
            return
        new = copy.deepcopy(obj)
        new.setdefault("spec", {}).pop("finalizers", None)
        if not _meta(new).get("finalizers"):
            self._remove(namespaces, new, obj)
        else:
            self._commit(namespaces, "MODIFIED", new, obj)

    def _empty_crd(self, crd: JsonObj) -> None:
        spec = crd.get("spec") or {}
        key = (str(spec.get("group")), str((spec.get("names") or {}).get("plural")))
        res = self._resources.get(key)
        if res is not None:
            for obj in list(self._iter(res, None)):
                meta = _meta(obj)
                current = self._lookup((key, meta.get("namespace", ""), str(meta["name"])))
                if current is not None:
                    self._delete(res, current, "Background")
        current_crd = self._raw(
            self._resources[("apiextensions.k8s.io", "customresourcedefinitions")],
            None,
            str(_meta(crd)["name"]),
        )
        if current_crd is not None:
            self._finish_crd(current_crd)

    def _finish_crd(self, crd: JsonObj) -> None:
        spec = crd.get("spec") or {}
        key = (str(spec.get("group")), str((spec.get("names") or {}).get("plural")))
        res = self._resources.get(key)
        if res is not None and next(iter(self._iter(res, None)), None) is not None:
            return
        crds = self._resources[("apiextensions.k8s.io", "customresourcedefinitions")]
        new = copy.deepcopy(crd)
        finalizers = [
            f for f in new["metadata"].get("finalizers") or () if f != CRD_CLEANUP_FINALIZER
        ]
        if finalizers:
            new["metadata"]["finalizers"] = finalizers
            self._commit(crds, "MODIFIED", new, crd)
        else:
            new["metadata"].pop("finalizers", None)
            self._remove(crds, new, crd)

    def delete_collection(
        self,
        kind: ResourceKind | str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        propagation_policy: str | None = None,
        dry_run: bool = False,
    ) -> builtins.list[JsonObj]:
        """DELETE on a collection: delete every matching object; returns their last states."""
        res = self.resource(kind)
        listed = self.list(
            kind, namespace, label_selector=label_selector, field_selector=field_selector
        )
        out: builtins.list[JsonObj] = []
        for item in listed.items:
            meta = _meta(item)
            try:
                obj, _ = self.delete(
                    kind,
                    meta.get("namespace"),
                    str(meta["name"]),
                    propagation_policy=propagation_policy,
                    dry_run=dry_run,
                )
            except errs.ApiError as err:
                if err.code == 404 or (err.code == 403 and res.key == ("", "namespaces")):
                    continue
                raise
            out.append(obj)
        return out

    # --- CRDs ------------------------------------------------------------------------------

    def _install_crd(self, crd: JsonObj, old: JsonObj | None) -> None:
        """Serve what a CRD defines and give it the status the apiextensions controllers set."""
        if _meta(crd).get("deletionTimestamp"):
            return
        crd["status"] = crd_status(crd, self._now(), (old or {}).get("status"))
        res = resource_from_crd(crd)
        existing = self._resources.get(res.key)
        if existing is not None and not existing.custom:
            raise errs.invalid(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                str(_meta(crd)["name"]),
                [
                    FieldError(
                        FIELD_INVALID,
                        "spec.names.plural",
                        "the name is served by a built-in resource",
                        res.plural,
                    )
                ],
            )
        self._register(res)


def _fold_string_data(res: Resource, obj: JsonObj) -> None:
    """A Secret's `stringData` is write-only: its entries are merged into `data` (base64, and
    winning over `data`'s) and the field is dropped, as the API server does; `type` defaults to
    Opaque."""
    if res.key != ("", "secrets"):
        return
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if not isinstance(string_data, Mapping) or not string_data:
        return
    data = obj.get("data")
    merged: JsonObj = dict(data) if isinstance(data, Mapping) else {}
    for key, value in string_data.items():
        merged[str(key)] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
    obj["data"] = merged


def _owner_uids(obj: Mapping[str, Any]) -> list[str]:
    return [str(r.get("uid")) for r in _meta(obj).get("ownerReferences") or () if r.get("uid")]


def _ns_finalizers(res: Resource, obj: Mapping[str, Any]) -> bool:
    return res.key == ("", "namespaces") and bool((obj.get("spec") or {}).get("finalizers"))


def _spec_changed(res: Resource, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    skip = {"metadata", "status"} if res.has_status else {"metadata"}
    keys = (set(old) | set(new)) - skip
    return any(old.get(k) != new.get(k) for k in keys)


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a write changes nothing but bookkeeping (then it is not committed)."""

    def strip(obj: Mapping[str, Any]) -> JsonObj:
        out = dict(obj)
        meta = dict(_meta(obj))
        meta.pop("resourceVersion", None)
        meta.pop("managedFields", None)
        out["metadata"] = meta
        return out

    if strip(old) != strip(new):
        return False
    old_fields = [
        {k: v for k, v in e.items() if k != "time"} for e in _meta(old).get("managedFields") or ()
    ]
    new_fields = [
        {k: v for k, v in e.items() if k != "time"} for e in _meta(new).get("managedFields") or ()
    ]
    return old_fields == new_fields


def _crd_update_errors(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    for field in ("group",):
        if (new.get("spec") or {}).get(field) != (old.get("spec") or {}).get(field):
            errors.append(
                FieldError(
                    FIELD_INVALID,
                    f"spec.{field}",
                    "field is immutable",
                    (new.get("spec") or {}).get(field),
                )
            )
    if ((new.get("spec") or {}).get("names") or {}).get("plural") != (
        (old.get("spec") or {}).get("names") or {}
    ).get("plural"):
        errors.append(
            FieldError(FIELD_INVALID, "status.acceptedNames.plural", "field is immutable", "plural")
        )
    return errors
