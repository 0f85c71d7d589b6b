"""The HTTP face of the store: kube-apiserver's REST paths, discovery, tables and watch streams.

This layer only translates. It parses a request into a `RequestInfo` (verb, resource, name,
namespace, subresource) as kube-apiserver's request-info resolver does, counts it, lets armed
faults act on it, and calls the store; errors from the store are `ApiError`s and are written as
`kind: Status` bodies. Watches are chunked streams of JSON lines, one event per line, with
optional bookmarks, `timeoutSeconds`, and an ERROR event carrying a 410 Status when the
requested resourceVersion is older than the event history — the protocol client-go and
kubernetes_asyncio implement.

Discovery documents are generated from the store's served resources, which include the kinds
of every established CRD, so kubectl and dynamic clients find custom resources the moment the
CRD is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import yaml
from aiohttp import web

from kaito.kube._kinds import ResourceKind
from kaito.kube.emulator import _errors as errs
from kaito.kube.emulator._errors import ApiError
from kaito.kube.emulator._faults import Fault, Faults, RequestInfo, RequestLog
from kaito.kube.emulator._patch import json_patch, merge_patch, parse_json
from kaito.kube.emulator._resources import Resource
from kaito.kube.emulator._store import APPLY_PATCH, PATCH_TYPES, Store, Watcher, WatchEvent
from kaito.kube.emulator._tables import build_table

JsonObj = dict[str, Any]

_log = logging.getLogger(__name__)
_STREAMING = web.RequestKey("kaito.emulator.streaming", bool)

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0+kaito.emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_TABLE_ACCEPT = re.compile(r"as=Table")
_SUBRESOURCE_VERBS = ("get", "patch", "update")
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, separators=(",", ":")).encode(),
        content_type="application/json",
    )


def _error(err: ApiError) -> web.Response:
    return _json(err.status(), err.code)


def _version_key(version: str) -> tuple[int, int, int]:
    """kube-aware version priority: GA over beta over alpha, higher numbers first."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if m is None:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class ApiServer:
    """An aiohttp application serving a `Store` the way kube-apiserver serves etcd."""

    def __init__(
        self,
        store: Store,
        faults: Faults,
        requests: RequestLog,
        *,
        bookmark_interval: float = 60.0,
        address: Callable[[], str] = lambda: "127.0.0.1:0",
    ) -> None:
        self.store = store
        self.faults = faults
        self.requests = requests
        self.bookmark_interval = bookmark_interval
        self.address = address
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/{tail:.*}", self.handle)
        self._watch_tasks: set[asyncio.Task[Any]] = set()

    # --- dispatch --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        try:
            special = self._special(request, path)
            if special is not None:
                return special
            info, kind = self._resolve(request, path)
            self.requests.record(info)
            fault = self.faults.match(info)
            if fault is not None:
                answered = await self._apply_fault(request, fault)
                if answered is not None:
                    return answered
            if info.verb == "watch":
                return await self._watch(request, info, kind, fault)
            return await self._dispatch(request, info, kind)
        except ApiError as err:
            return _error(err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as err:
            if request.get(_STREAMING):
                raise
            # A defect of the emulator still answers the way kube-apiserver answers a panic.
            _log.exception("internal error serving %s %s", request.method, request.path)
            return _error(errs.generic(500, f"Internal error occurred: {err}"))

    async def _apply_fault(self, request: web.Request, fault: Fault) -> web.StreamResponse | None:
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if (
            fault.abort
            and fault.close_watch_after is None
            and fault.close_watch_after_events is None
        ):
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if fault.code is not None:
            return _error(errs.generic(fault.code, fault.message, fault.reason))
        return None

    def _special(self, request: web.Request, path: str) -> web.StreamResponse | None:
        if request.method != "GET" and path in ("/", "/api", "/apis", "/version"):
            return _error(errs.method_not_allowed())
        if path.startswith(("/healthz", "/readyz", "/livez")):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return _json(VERSION_INFO)
        if path == "/":
            return _json(
                {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}
            )
        if path == "/api":
            return _json(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.address()}
                    ],
                }
            )
        if path == "/apis":
            return _json(self._group_list())
        if path == "/api/v1":
            return _json(self._resource_list("", "v1"))
        parts = path.split("/")
        if len(parts) == 3 and parts[1] == "apis":
            group = self._group(parts[2])
            if group is None:
                raise errs.resource_not_found()
            return _json({"kind": "APIGroup", "apiVersion": "v1", **group})
        if len(parts) == 4 and parts[1] == "apis":
            if not any(k.group == parts[2] and k.version == parts[3] for k in self.store.kinds):
                raise errs.resource_not_found()
            return _json(self._resource_list(parts[2], parts[3]))
        if path.startswith("/openapi"):
            raise errs.resource_not_found()
        return None

    # --- discovery -------------------------------------------------------------------------

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for kind in self.store.kinds:
            if kind.group:
                versions = groups.setdefault(kind.group, [])
                if kind.version not in versions:
                    versions.append(kind.version)
        for versions in groups.values():
            versions.sort(key=_version_key)
        return groups

    def _group(self, name: str) -> JsonObj | None:
        versions = self._groups().get(name)
        if not versions:
            return None
        listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"name": name, "versions": listed, "preferredVersion": listed[0]}

    def _group_list(self) -> JsonObj:
        groups = [g for name in self._groups() if (g := self._group(name)) is not None]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resource_list(self, group: str, version: str) -> JsonObj:
        resources: list[JsonObj] = []
        kinds = sorted(
            (k for k in self.store.kinds if k.group == group and k.version == version),
            key=lambda k: k.plural,
        )
        for kind in kinds:
            entry: JsonObj = {
                "name": kind.plural,
                "singularName": kind.singular or kind.kind.lower(),
                "namespaced": kind.namespaced,
                "kind": kind.kind,
                "verbs": list(kind.verbs),
            }
            if kind.short_names:
                entry["shortNames"] = list(kind.short_names)
            if kind.categories:
                entry["categories"] = list(kind.categories)
            resources.append(entry)
            for sub in kind.subresources:
                sub_entry: JsonObj = {
                    "name": f"{kind.plural}/{sub}",
                    "singularName": "",
                    "namespaced": kind.namespaced,
                    "kind": kind.kind,
                    "verbs": list(_SUBRESOURCE_VERBS),
                }
                if sub == "scale":
                    sub_entry.update(group="autoscaling", version="v1", kind="Scale")
                resources.append(sub_entry)
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }

    # --- request resolution ----------------------------------------------------------------

    def _resolve(self, request: web.Request, path: str) -> tuple[RequestInfo, ResourceKind]:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errs.resource_not_found()
        namespace = ""
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise errs.resource_not_found()
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        kind = self.store.kinds.by_plural(group, version, plural)
        if kind is None:
            raise errs.resource_not_found()
        if namespace and not kind.namespaced:
            raise errs.resource_not_found()
        if kind.namespaced and name and not namespace:
            raise errs.resource_not_found()
        if subresource and subresource not in kind.subresources:
            raise errs.resource_not_found()
        method = request.method
        query = request.query
        if name:
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
        elif method == "GET":
            verb = "watch" if _truthy(query.get("watch")) else "list"
        else:
            verb = {"POST": "create", "DELETE": "deletecollection"}.get(method)
        if verb is None:
            raise errs.method_not_allowed()
        info = RequestInfo(
            verb=verb,
            plural=plural,
            kind=kind.kind,
            group=group,
            version=version,
            namespace=namespace,
            name=name,
            subresource=subresource,
            path=path,
        )
        return info, kind

    # --- verbs -----------------------------------------------------------------------------

    async def _dispatch(
        self, request: web.Request, info: RequestInfo, kind: ResourceKind
    ) -> web.StreamResponse:
        query = request.query
        dry_run = query.get("dryRun") == "All"
        manager = query.get("fieldManager") or _agent_manager(request)
        ns = info.namespace or None
        if info.subresource == "scale":
            return await self._scale(request, info, kind)
        if info.verb == "get":
            obj = self.store.read(kind, ns, info.name)
            if _wants_table(request):
                return _json(self._table(request, kind, [obj], str(self.store.resource_version)))
            return _json(obj)
        if info.verb == "list":
            return self._list(request, info, kind)
        if info.verb == "create":
            body = await _read_object(request)
            created = self.store.create(
                kind, body, namespace=ns, field_manager=manager, dry_run=dry_run
            )
            return _json(created, 201)
        if info.verb == "update":
            body = await _read_object(request)
            updated = self.store.update(
                kind,
                body,
                namespace=ns,
                name=info.name,
                subresource=info.subresource,
                field_manager=manager,
                dry_run=dry_run,
            )
            return _json(updated)
        if info.verb == "patch":
            return await self._patch(request, info, kind, manager, dry_run)
        if info.verb == "delete":
            options = await _delete_options(request)
            obj, gone = self.store.delete(
                kind,
                ns,
                info.name,
                propagation_policy=options.get("propagationPolicy"),
                preconditions=options.get("preconditions"),
                grace_period_seconds=options.get("gracePeriodSeconds"),
                dry_run=dry_run,
            )
            res = self.store.resource(kind)
            if gone and res.key not in (("", "pods"), ("", "serviceaccounts")):
                meta = obj.get("metadata") or {}
                details: JsonObj = {"name": meta.get("name", info.name)}
                if res.group:
                    details["group"] = res.group
                details["kind"] = res.plural
                details["uid"] = meta.get("uid", "")
                return _json(
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": details,
                    }
                )
            return _json(obj)
        if info.verb == "deletecollection":
            options = await _delete_options(request)
            deleted = self.store.delete_collection(
                kind,
                ns,
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                propagation_policy=options.get("propagationPolicy"),
                dry_run=dry_run,
            )
            res = self.store.resource(kind)
            return _json(
                {
                    "kind": res.list_kind,
                    "apiVersion": kind.api_version,
                    "metadata": {"resourceVersion": str(self.store.resource_version)},
                    "items": deleted,
                }
            )
        raise errs.method_not_allowed()

    def _list(self, request: web.Request, info: RequestInfo, kind: ResourceKind) -> web.Response:
        query = request.query
        limit_text = query.get("limit")
        try:
            limit = int(limit_text) if limit_text else None
        except ValueError:
            raise errs.bad_request(f"invalid limit: {limit_text}") from None
        page = self.store.list(
            kind,
            info.namespace or None,
            label_selector=query.get("labelSelector"),
            field_selector=query.get("fieldSelector"),
            limit=limit,
            continue_token=query.get("continue"),
        )
        if _wants_table(request):
            return _json(
                self._table(
                    request, kind, page.items, str(page.resource_version), page.continue_token
                )
            )
        res = self.store.resource(kind)
        meta: JsonObj = {"resourceVersion": str(page.resource_version)}
        if page.continue_token:
            meta["continue"] = page.continue_token
        if page.remaining is not None:
            meta["remainingItemCount"] = page.remaining
        return _json(
            {
                "kind": res.list_kind,
                "apiVersion": kind.api_version,
                "metadata": meta,
                "items": page.items,
            }
        )

    def _table(
        self,
        request: web.Request,
        kind: ResourceKind,
        items: list[JsonObj],
        resource_version: str,
        continue_token: str = "",
        columns: bool = True,
    ) -> JsonObj:
        return build_table(
            self.store.resource(kind),
            kind.version,
            items,
            include_object=request.query.get("includeObject", "Metadata"),
            resource_version=resource_version,
            continue_token=continue_token,
            columns=columns,
            now=self.store.clock(),
        )

    async def _patch(
        self,
        request: web.Request,
        info: RequestInfo,
        kind: ResourceKind,
        manager: str,
        dry_run: bool,
    ) -> web.Response:
        content_type = request.content_type
        if content_type not in PATCH_TYPES:
            accepted: tuple[str, ...] = PATCH_TYPES
            if self.store.resource(kind).custom:
                accepted = tuple(t for t in PATCH_TYPES if "strategic" not in t)
            raise errs.unsupported_media_type(accepted)
        raw = await request.read()
        if content_type == APPLY_PATCH:
            patch: Any = raw.decode("utf-8", errors="replace")
            manager = request.query.get("fieldManager", "")
        else:
            patch = parse_json(raw)
        existed = self.store.get(kind, info.namespace or None, info.name) is not None
        result = self.store.patch(
            kind,
            info.namespace or None,
            info.name,
            patch,
            content_type,
            subresource=info.subresource,
            field_manager=manager,
            force=_truthy(request.query.get("force")),
            dry_run=dry_run,
        )
        return _json(result, 200 if existed else 201)

    async def _scale(
        self, request: web.Request, info: RequestInfo, kind: ResourceKind
    ) -> web.Response:
        res = self.store.resource(kind)
        paths = res.scale or {}
        spec_path = str(paths.get("specReplicasPath", ".spec.replicas")).lstrip(".").split(".")
        status_path = (
            str(paths.get("statusReplicasPath", ".status.replicas")).lstrip(".").split(".")
        )
        selector_path = str(paths.get("labelSelectorPath", "")).lstrip(".").split(".")
        ns = info.namespace or None
        obj = self.store.read(kind, ns, info.name)
        if info.verb in ("update", "patch"):
            current = _scale_object(obj, spec_path, status_path, selector_path)
            if info.verb == "update":
                desired = await _read_object(request)
            else:
                body = parse_json(await request.read())
                desired = (
                    json_patch(current, body)
                    if request.content_type == "application/json-patch+json"
                    else merge_patch(current, body)
                )
            rv = (desired.get("metadata") or {}).get("resourceVersion")
            if rv and str(rv) != obj["metadata"]["resourceVersion"]:
                raise errs.conflict(res.plural, res.group, info.name, errs.STALE_OBJECT)
            replicas = (desired.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise errs.invalid(
                    "Scale",
                    "autoscaling",
                    info.name,
                    [
                        errs.FieldError(
                            errs.FIELD_INVALID,
                            "spec.replicas",
                            "must be greater than or equal to 0",
                            replicas,
                        )
                    ],
                )
            patch: JsonObj = {}
            node = patch
            for part in spec_path[:-1]:
                node = node.setdefault(part, {})
            node[spec_path[-1]] = replicas
            obj = self.store.patch(
                kind,
                ns,
                info.name,
                patch,
                "application/merge-patch+json",
                field_manager=request.query.get("fieldManager") or _agent_manager(request),
            )
        return _json(_scale_object(obj, spec_path, status_path, selector_path))

    # --- watch -----------------------------------------------------------------------------

    async def _watch(
        self,
        request: web.Request,
        info: RequestInfo,
        kind: ResourceKind,
        fault: Fault | None,
    ) -> web.StreamResponse:
        query = request.query
        send_initial = query.get("sendInitialEvents")
        timeout_text = query.get("timeoutSeconds")
        try:
            timeout = float(timeout_text) if timeout_text else None
        except ValueError:
            raise errs.bad_request(f"invalid timeoutSeconds: {timeout_text}") from None
        table = _wants_table(request)
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        try:
            watcher, start_rv = self.store.watch(
                kind,
                info.namespace or None,
                resource_version=query.get("resourceVersion"),
                label_selector=query.get("labelSelector"),
                field_selector=query.get("fieldSelector"),
                send_initial_events=_truthy(send_initial) if send_initial is not None else None,
            )
        except ApiError as err:
            if err.code != 410:
                raise
            await response.prepare(request)
            await _write_line(response, {"type": "ERROR", "object": err.status()})
            await response.write_eof()
            return response
        await response.prepare(request)
        request[_STREAMING] = True
        task = asyncio.current_task()
        if task is not None:
            self._watch_tasks.add(task)
        try:
            await self._stream(
                request,
                response,
                watcher,
                kind,
                start_rv=start_rv,
                initial=watcher.queue.qsize() if _truthy(send_initial) else 0,
                bookmarks=_truthy(query.get("allowWatchBookmarks")) and not table,
                limit=timeout,
                table=table,
                fault=fault,
            )
        except (ConnectionResetError, asyncio.CancelledError):
            watcher.close()
            raise
        finally:
            watcher.close()
            if task is not None:
                self._watch_tasks.discard(task)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        watcher: Watcher,
        kind: ResourceKind,
        *,
        start_rv: int,
        initial: int,
        bookmarks: bool,
        limit: float | None,
        table: bool,
        fault: Fault | None,
    ) -> None:
        started = time.monotonic()
        deadline = started + limit if limit is not None else None
        if fault is not None and fault.close_watch_after is not None:
            cut = started + fault.close_watch_after
            deadline = cut if deadline is None else min(deadline, cut)
        event_limit = fault.close_watch_after_events if fault is not None else None
        next_bookmark = started + self.bookmark_interval
        sent = 0
        first_table = True
        if _truthy(request.query.get("sendInitialEvents")) and initial == 0 and bookmarks:
            await self._bookmark(response, kind, start_rv, initial_end=True)
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = 1.0
            if deadline is not None:
                wait = min(wait, deadline - now)
            if bookmarks:
                wait = min(wait, max(0.0, next_bookmark - now))
            event = await watcher.next_raw(wait)
            if event is None:
                if watcher.closed:
                    break
                if request.transport is None or request.transport.is_closing():
                    break
                if bookmarks and time.monotonic() >= next_bookmark and not watcher.pending():
                    await self._bookmark(response, kind, self.store.resource_version)
                    next_bookmark = time.monotonic() + self.bookmark_interval
                continue
            await self._send(response, watcher, kind, event, table, first_table)
            first_table = False
            sent += 1
            if initial and sent == initial and bookmarks:
                await self._bookmark(response, kind, start_rv, initial_end=True)
            if event_limit is not None and sent >= event_limit:
                break
        if fault is not None and fault.abort and request.transport is not None:
            request.transport.abort()

    async def _send(
        self,
        response: web.StreamResponse,
        watcher: Watcher,
        kind: ResourceKind,
        event: WatchEvent,
        table: bool,
        first: bool,
    ) -> None:
        res = watcher.resource
        obj = _present_shared(res, event.object, kind.version)
        if table:
            body: Any = build_table(
                res,
                kind.version,
                [obj],
                resource_version=str(event.resource_version),
                columns=first,
                now=self.store.clock(),
            )
        else:
            body = obj
        await _write_line(response, {"type": event.type, "object": body})

    async def _bookmark(
        self, response: web.StreamResponse, kind: ResourceKind, rv: int, initial_end: bool = False
    ) -> None:
        meta: JsonObj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        obj = {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta}
        await _write_line(response, {"type": "BOOKMARK", "object": obj})

    async def shutdown(self) -> None:
        """End every watch stream so the server can stop promptly."""
        self.store.close_watches()
        tasks = list(self._watch_tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)


def _present_shared(res: Resource, obj: JsonObj, version: str) -> JsonObj:
    """The object as seen at `version`, sharing the stored snapshot (serialised, not kept)."""
    if res.custom and obj.get("apiVersion") != res.api_version(version):
        return {**obj, "apiVersion": res.api_version(version)}
    return obj


async def _write_line(response: web.StreamResponse, event: JsonObj) -> None:
    await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")


def _wants_table(request: web.Request) -> bool:
    return bool(_TABLE_ACCEPT.search(request.headers.get("Accept", "")))


def _agent_manager(request: web.Request) -> str:
    agent = request.headers.get("User-Agent", "")
    return agent.split("/")[0][:128] or "unknown"


async def _read_object(request: web.Request) -> JsonObj:
    raw = await request.read()
    if request.content_type in ("application/yaml", "application/x-yaml"):
        try:
            body = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise errs.bad_request(f"error decoding YAML: {err}") from None
    elif request.content_type in ("application/json", "", "application/octet-stream", "text/plain"):
        body = parse_json(raw)
    else:
        raise errs.unsupported_media_type(("application/json", "application/yaml"))
    if not isinstance(body, dict):
        raise errs.bad_request("the request body must be a JSON object")
    return body


async def _delete_options(request: web.Request) -> JsonObj:
    options: JsonObj = {}
    raw = await request.read()
    if raw.strip():
        body = parse_json(raw)
        if isinstance(body, dict):
            options.update(body)
    query = request.query
    if "propagationPolicy" in query:
        options["propagationPolicy"] = query["propagationPolicy"]
    if "gracePeriodSeconds" in query:
        try:
            options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
        except ValueError:
            raise errs.bad_request("gracePeriodSeconds must be an integer") from None
    if "orphanDependents" in query:
        options["orphanDependents"] = _truthy(query["orphanDependents"])
    if not options.get("propagationPolicy") and options.get("orphanDependents") is not None:
        options["propagationPolicy"] = "Orphan" if options["orphanDependents"] else "Background"
    return options


def _dig(obj: Any, path: list[str]) -> Any:
    for part in path:
        if not part:
            return None
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _scale_object(
    obj: JsonObj, spec_path: list[str], status_path: list[str], selector_path: list[str]
) -> JsonObj:
    meta = obj.get("metadata") or {}
    status: JsonObj = {"replicas": int(_dig(obj, status_path) or 0)}
    selector = _dig(obj, selector_path) if selector_path != [""] else None
    if selector is None and obj.get("kind") in ("Deployment", "StatefulSet", "ReplicaSet"):
        labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None
    if selector:
        status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": int(_dig(obj, spec_path) or 0)},
        "status": status,
    }
