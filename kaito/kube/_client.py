"""`KubeClient`: the cluster protocols spoken over HTTP with kubernetes_asyncio.

kubernetes_asyncio's generated API classes exist only for built-in kinds, and its dynamic
client returns wrapped objects and hides the Status body. kaito needs one path for every kind
(Workspaces and NodeClaims as much as Pods), raw dicts in and out, and the full Status on
failure. So the client builds each request itself from a `ResourceKind` (path, query,
content type, body) and sends it through kubernetes_asyncio's `ApiClient.call_api`, which
keeps everything the library does well: kubeconfig and in-cluster credentials, token refresh,
TLS, proxies, and one aiohttp session per client.

Every request is counted in `KubeClient.requests` (by verb and resource), which is how tests
prove that a converged reconcile costs zero writes.
"""

from __future__ import annotations

import builtins
import collections
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, cast

import aiohttp
from kubernetes_asyncio.client import ApiClient, ApiException, Configuration

from kaito.kube._config import in_cluster, load_in_cluster, load_kubeconfig
from kaito.kube._errors import (
    ApiError,
    RequestTimeout,
    TransportError,
    error_from_status,
)
from kaito.kube._kinds import ResourceKind
from kaito.kube._protocols import Client, PatchBody
from kaito.kube._types import (
    WATCH_EVENT_TYPES,
    DeleteResult,
    ObjectList,
    PatchType,
    Preconditions,
    PropagationPolicy,
    RawObject,
    Selector,
    WatchEvent,
    WatchEventType,
)

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds one request may take, unless the client or the call says otherwise."""

_USER_AGENT: Final = "kaito"
_JSON: Final = "application/json"
# Map every success code to the "object" type so that call_api hands back the parsed JSON
# as it is, instead of deserializing into a generated model.
_RAW_JSON: Final = {200: "object", 201: "object", 202: "object"}
_WRITE_VERBS: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})


class RequestCounter:
    """Requests sent by one client, by verb and resource.

    The verb is the Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`,
    `delete`); the resource is `plural.group`, with `/status` appended for status writes.
    """

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()

    def record(self, verb: str, resource: str) -> None:
        self._counts[(verb, resource)] += 1

    def count(self, verb: str | None = None, resource: str | None = None) -> int:
        """Requests matching the verb and the resource (None matches any)."""
        return sum(
            n
            for (v, r), n in self._counts.items()
            if (verb is None or v == verb) and (resource is None or r == resource)
        )

    @property
    def writes(self) -> int:
        """Requests that may change the cluster: create, update, patch, delete."""
        return sum(n for (v, _), n in self._counts.items() if v in _WRITE_VERBS)

    def by_verb(self) -> dict[str, int]:
        totals: collections.Counter[str] = collections.Counter()
        for (verb, _), n in self._counts.items():
            totals[verb] += n
        return dict(totals)

    def reset(self) -> None:
        self._counts.clear()

    def __repr__(self) -> str:
        return f"RequestCounter({self.by_verb()!r})"


def selector_string(selector: Selector) -> str:
    """The wire form of a selector: strings pass through, mappings become `k=v,k2=v2`."""
    if isinstance(selector, str):
        return selector
    return ",".join(f"{key}={value}" for key, value in selector.items())


def _selector_query(
    label_selector: Selector | None, field_selector: Selector | None
) -> list[tuple[str, str]]:
    """The query parameters of a list or watch that filters by labels and fields."""
    query: list[tuple[str, str]] = []
    if label_selector is not None:
        query.append(("labelSelector", selector_string(label_selector)))
    if field_selector is not None:
        query.append(("fieldSelector", selector_string(field_selector)))
    return query


def _resource(kind: ResourceKind, subresource: str | None = None) -> str:
    return f"{kind.resource_name}/{subresource}" if subresource else kind.resource_name


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _with_type(kind: ResourceKind, obj: Mapping[str, Any]) -> RawObject:
    """A copy of `obj` with apiVersion and kind filled in from `kind` where missing."""
    body = dict(obj)
    body.setdefault("apiVersion", kind.api_version)
    body.setdefault("kind", kind.kind)
    return body


def _namespace_for(
    kind: ResourceKind, namespace: str | None, obj: Mapping[str, Any] | None = None
) -> str | None:
    if not kind.namespaced:
        return None
    ns = namespace or (str(_metadata(obj).get("namespace") or "") if obj is not None else "")
    if not ns:
        raise ValueError(f"{kind} is namespaced: give a namespace")
    return ns


def _name_of(obj: Mapping[str, Any]) -> str:
    name = _metadata(obj).get("name")
    if not name:
        raise ValueError("the object has no metadata.name")
    return str(name)


def _to_api_error(exc: ApiException) -> ApiError:
    headers = exc.headers if exc.headers is not None else {}
    return error_from_status(int(exc.status or 0), exc.body, headers)


def _bool(value: bool) -> str:
    return "true" if value else "false"


class KubeClient(Client):
    """The cluster `Client` protocol over HTTP, for any `ResourceKind`.

    Build one with `from_kubeconfig`, `in_cluster` or `from_config`, or around an
    `ApiClient` you configured yourself; close it (or use `async with`) to release its
    connections. Each request may take at most `request_timeout` seconds (a watch: to
    connect) before it fails with `RequestTimeout`; `with_timeout` gives a view of the same
    client with another limit.
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        request_timeout: float = DEFAULT_TIMEOUT,
        owns_api_client: bool = False,
    ) -> None:
        self._api = api_client
        self._timeout = request_timeout
        self._owns_api_client = owns_api_client
        self.requests = RequestCounter()

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def _owning(cls, configuration: Configuration, request_timeout: float) -> KubeClient:
        api = ApiClient(configuration)
        api.user_agent = _USER_AGENT
        return cls(api, request_timeout=request_timeout, owns_api_client=True)

    @classmethod
    async def from_kubeconfig(
        cls,
        path: str | os.PathLike[str] | None = None,
        context: str | None = None,
        *,
        request_timeout: float = DEFAULT_TIMEOUT,
    ) -> KubeClient:
        """A client for a kubeconfig context (default: `$KUBECONFIG` or `~/.kube/config`, and
        the file's current context). Raises `ConfigError`."""
        configuration = await load_kubeconfig(path, context)
        return cls._owning(configuration, request_timeout)

    @classmethod
    async def in_cluster(
        cls,
        *,
        token_file: str | os.PathLike[str] | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        request_timeout: float = DEFAULT_TIMEOUT,
    ) -> KubeClient:
        """A client for the cluster this pod runs in, with its service account. The file
        arguments default to the standard service-account mount. Raises `ConfigError`."""
        configuration = load_in_cluster(token_file=token_file, ca_file=ca_file)
        return cls._owning(configuration, request_timeout)

    @classmethod
    async def from_config(cls, *, request_timeout: float = DEFAULT_TIMEOUT) -> KubeClient:
        """In-cluster when `KUBERNETES_SERVICE_HOST` is set, else the default kubeconfig."""
        if in_cluster():
            return await cls.in_cluster(request_timeout=request_timeout)
        return await cls.from_kubeconfig(request_timeout=request_timeout)

    def with_timeout(self, request_timeout: float) -> KubeClient:
        """The same client (connections, request counter) with another per-request limit.

        Closing the view leaves the original open.
        """
        view = KubeClient(self._api, request_timeout=request_timeout)
        view.requests = self.requests
        return view

    @property
    def request_timeout(self) -> float:
        return self._timeout

    @property
    def api_client(self) -> ApiClient:
        """The kubernetes_asyncio client underneath, e.g. for its `DynamicClient`."""
        return self._api

    @property
    def host(self) -> str:
        """The API server's base URL."""
        return str(self._api.configuration.host)

    async def close(self) -> None:
        if self._owns_api_client:
            await self._api.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"KubeClient({self.host!r})"

    # -- transport ------------------------------------------------------------------------

    async def _call(
        self,
        verb: str,
        resource: str,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = _JSON,
    ) -> tuple[RawObject, int]:
        """Sends one request; returns the parsed JSON body and the HTTP status."""
        self.requests.record(verb, resource)
        try:
            data, status, _headers = await self._api.call_api(
                path,
                method,
                query_params=builtins.list(query),
                header_params={"Accept": _JSON, "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                response_types_map=_RAW_JSON,
                _return_http_data_only=False,
                _preload_content=True,
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            raise _to_api_error(exc) from exc
        except TimeoutError as exc:
            raise RequestTimeout(f"{method} {path}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"{method} {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise TransportError(f"{method} {path}: the answer is not a JSON object")
        return data, int(status)

    # -- Reader ---------------------------------------------------------------------------

    async def get(
        self,
        kind: ResourceKind,
        name: str,
        *,
        namespace: str | None = None,
    ) -> RawObject:
        path = kind.path(_namespace_for(kind, namespace), name)
        obj, _ = await self._call("get", _resource(kind), "GET", path)
        return obj

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
        query = _selector_query(label_selector, field_selector)
        if limit is not None:
            query.append(("limit", str(limit)))
        if continue_token is not None:
            query.append(("continue", continue_token))
        path = kind.path(namespace if kind.namespaced else None)
        body, _ = await self._call(
            "list",
            _resource(kind),
            "GET",
            path,
            query=query,
        )
        return ObjectList.from_wire(body)

    # -- Writer ---------------------------------------------------------------------------

    async def create(
        self,
        kind: ResourceKind,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
    ) -> RawObject:
        path = kind.path(_namespace_for(kind, namespace, obj))
        created, _ = await self._call(
            "create",
            _resource(kind),
            "POST",
            path,
            body=_with_type(kind, obj),
        )
        return created

    async def update(
        self,
        kind: ResourceKind,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
    ) -> RawObject:
        return await self._put(kind, obj, namespace, None)

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
        return await self._patch(
            kind, name, patch, namespace, patch_type, field_manager, force, None
        )

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
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy is not None:
            options["propagationPolicy"] = propagation_policy.value
        if preconditions is not None:
            options["preconditions"] = preconditions.to_wire()
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        path = kind.path(_namespace_for(kind, namespace), name)
        body, status = await self._call(
            "delete",
            _resource(kind),
            "DELETE",
            path,
            body=options,
        )
        if body.get("kind") == "Status":
            # Only a Status came back: the object is gone and nothing more is known.
            return DeleteResult(gone=True, object=None)
        # The server returns the object as it now is: still there (terminating) when a
        # finalizer or foreground deletion holds it, which shows as a deletionTimestamp.
        terminating = status == 202 or bool(_metadata(body).get("deletionTimestamp"))
        return DeleteResult(gone=not terminating, object=body)

    # -- StatusWriter ---------------------------------------------------------------------

    async def update_status(
        self,
        kind: ResourceKind,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
    ) -> RawObject:
        return await self._put(kind, obj, namespace, "status")

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
        return await self._patch(
            kind, name, patch, namespace, patch_type, field_manager, force, "status"
        )

    async def _put(
        self,
        kind: ResourceKind,
        obj: Mapping[str, Any],
        namespace: str | None,
        subresource: str | None,
    ) -> RawObject:
        path = kind.path(_namespace_for(kind, namespace, obj), _name_of(obj))
        if subresource:
            path += f"/{subresource}"
        updated, _ = await self._call(
            "update",
            _resource(kind, subresource),
            "PUT",
            path,
            body=_with_type(kind, obj),
        )
        return updated

    async def _patch(
        self,
        kind: ResourceKind,
        name: str,
        patch: PatchBody,
        namespace: str | None,
        patch_type: PatchType,
        field_manager: str | None,
        force: bool,
        subresource: str | None,
    ) -> RawObject:
        query: builtins.list[tuple[str, str]] = []
        if field_manager is not None:
            query.append(("fieldManager", field_manager))
        body: Any
        if patch_type is PatchType.APPLY:
            if field_manager is None:
                raise ValueError("server-side apply needs a field_manager")
            if not isinstance(patch, Mapping):
                raise TypeError("an apply patch is an object, not a list of operations")
            query.append(("force", _bool(force)))
            body = _with_type(kind, patch)
        elif force:
            raise ValueError("force applies only to server-side apply (PatchType.APPLY)")
        elif isinstance(patch, Mapping):
            body = dict(patch)
        else:
            body = [dict(op) for op in patch]
        path = kind.path(_namespace_for(kind, namespace), name)
        if subresource:
            path += f"/{subresource}"
        patched, _ = await self._call(
            "patch",
            _resource(kind, subresource),
            "PATCH",
            path,
            query=query,
            body=body,
            content_type=patch_type.value,
        )
        return patched

    # -- Watcher --------------------------------------------------------------------------

    async def watch(
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
        query = [("watch", "true"), *_selector_query(label_selector, field_selector)]
        if resource_version is not None:
            query.append(("resourceVersion", resource_version))
        if timeout_seconds is not None:
            query.append(("timeoutSeconds", str(timeout_seconds)))
        if allow_bookmarks:
            query.append(("allowWatchBookmarks", "true"))
        path = kind.path(namespace if kind.namespaced else None)
        # A watch is long-lived: bound connecting, and silence only once it lasts past the
        # server's own timeout plus one request's time, never the total duration.
        read_limit = timeout_seconds + self._timeout if timeout_seconds else None
        deadline = aiohttp.ClientTimeout(sock_connect=self._timeout, sock_read=read_limit)
        self.requests.record("watch", _resource(kind))
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                "GET",
                query_params=query,
                header_params={"Accept": _JSON, "Content-Type": _JSON},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,
                _request_timeout=deadline,
            )
        except TimeoutError as exc:
            raise RequestTimeout(f"watch {path}: no answer in time") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"watch {path}: {exc}") from exc
        try:
            if not 200 <= response.status <= 299:
                # Shaped like the ApiException the REST layer raises for other requests, so
                # every ApiError has the same kind of cause.
                failure = ApiException(status=response.status, reason=response.reason)
                failure.body = await response.read()
                failure.headers = response.headers
                raise _to_api_error(failure) from failure
            while line := await response.content.readline():
                event = _watch_event(line)
                if event is not None:
                    yield event
        except TimeoutError as exc:
            raise RequestTimeout(f"watch {path}: silent for more than {read_limit}s") from exc
        except aiohttp.ClientError as exc:
            raise TransportError(f"watch {path}: {exc}") from exc
        finally:
            response.close()


def _watch_event(line: bytes) -> WatchEvent | None:
    """The event in one line of a watch stream; None for a blank line. ERROR frames raise."""
    text = line.strip()
    if not text:
        return None
    try:
        frame = json.loads(text)
        kind = str(frame["type"])
        obj = frame["object"]
    except (ValueError, KeyError, TypeError) as exc:
        raise TransportError(f"malformed watch frame: {text[:200]!r}") from exc
    if not isinstance(obj, dict):
        raise TransportError(f"malformed watch frame: {text[:200]!r}")
    if kind == "ERROR":
        raise error_from_status(0, obj)
    if kind not in WATCH_EVENT_TYPES:
        raise TransportError(f"unknown watch event type {kind!r}")
    return WatchEvent(type=cast(WatchEventType, kind), object=obj)
