"""What KubeClient puts on the wire and how it reads the answers, against a scripted server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, ApiException, Configuration

from kaito.kube import (
    CONFIG_MAP,
    NAMESPACE,
    POD,
    WORKSPACE,
    ApiError,
    Conflict,
    Gone,
    Invalid,
    KubeClient,
    NotFound,
    PatchType,
    Preconditions,
    PropagationPolicy,
    RequestTimeout,
    TooManyRequests,
    TransportError,
)

pytestmark = pytest.mark.timeout(15)

POD_PATH = "/api/v1/namespaces/ns/pods"
WS_PATH = "/apis/kaito.sh/v1beta1/namespaces/ns/workspaces"


def pod(name: str = "p", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", **meta},
    }


def failure(code: int, reason: str, message: str = "no") -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


async def test_get_sends_token_and_returns_the_object(server: Any, client: KubeClient) -> None:
    server.reply("GET", f"{POD_PATH}/p", pod(resourceVersion="3"))
    obj = await client.get(POD, "p", namespace="ns")
    assert obj["metadata"]["resourceVersion"] == "3"
    seen = server.last()
    assert seen.headers["Authorization"] == "Bearer t0ken"
    assert seen.headers["Accept"] == "application/json"
    assert client.requests.count("get", "pods") == 1


async def test_cluster_scoped_kinds_ignore_the_namespace(server: Any, client: KubeClient) -> None:
    server.reply("GET", "/api/v1/namespaces/kube-system", {"kind": "Namespace"})
    await client.get(NAMESPACE, "kube-system", namespace="whatever")
    assert server.last().path == "/api/v1/namespaces/kube-system"


async def test_namespaced_calls_need_a_namespace(client: KubeClient) -> None:
    with pytest.raises(ValueError, match="namespaced"):
        await client.get(POD, "p")
    with pytest.raises(ValueError, match="namespaced"):
        await client.create(POD, {"metadata": {"name": "p"}})
    with pytest.raises(ValueError, match=r"metadata\.name"):
        await client.update(POD, {"metadata": {"namespace": "ns"}})
    assert client.requests.count() == 0


async def test_list_query_and_page(server: Any, client: KubeClient) -> None:
    server.reply(
        "GET",
        "/api/v1/pods",
        {
            "kind": "PodList",
            "metadata": {"resourceVersion": "10", "continue": "next"},
            "items": [pod("a"), pod("b")],
        },
    )
    page = await client.list(
        POD,
        label_selector={"app": "x", "tier": "web"},
        field_selector="status.phase!=Failed",
        limit=2,
        continue_token="prev",
    )
    assert [o["metadata"]["name"] for o in page.items] == ["a", "b"]
    assert page.resource_version == "10"
    assert page.continue_token == "next"
    assert server.last().query == {
        "labelSelector": "app=x,tier=web",
        "fieldSelector": "status.phase!=Failed",
        "limit": "2",
        "continue": "prev",
    }


async def test_create_fills_type_and_namespace_from_the_object(
    server: Any, client: KubeClient
) -> None:
    async def echo(request: web.Request) -> web.Response:
        body = await request.json()
        body["metadata"]["uid"] = "u1"
        return web.json_response(body, status=201)

    server.on("POST", WS_PATH, echo)
    created = await client.create(WORKSPACE, {"metadata": {"name": "w", "namespace": "ns"}})
    assert created["metadata"]["uid"] == "u1"
    sent = server.last().body
    assert sent["apiVersion"] == "kaito.sh/v1beta1"
    assert sent["kind"] == "Workspace"
    assert server.last().headers["Content-Type"] == "application/json"
    assert client.requests.count("create", "workspaces.kaito.sh") == 1


async def test_update_and_status_writes_use_put_on_the_right_paths(
    server: Any, client: KubeClient
) -> None:
    server.reply("PUT", f"{WS_PATH}/w", {"kind": "Workspace"})
    server.reply("PUT", f"{WS_PATH}/w/status", {"kind": "Workspace"})
    obj = {"metadata": {"name": "w", "namespace": "ns", "resourceVersion": "4"}}
    await client.update(WORKSPACE, obj)
    assert server.last().body["metadata"]["resourceVersion"] == "4"
    await client.update_status(WORKSPACE, {**obj, "status": {"conditions": []}})
    assert server.last().path == f"{WS_PATH}/w/status"
    assert client.requests.count("update", "workspaces.kaito.sh") == 1
    assert client.requests.count("update", "workspaces.kaito.sh/status") == 1
    assert client.requests.writes == 2


@pytest.mark.parametrize(
    ("patch_type", "body"),
    [
        (PatchType.MERGE, {"metadata": {"labels": {"a": "1"}}}),
        (PatchType.STRATEGIC, {"spec": {"containers": [{"name": "c", "image": "i"}]}}),
        (PatchType.JSON, [{"op": "test", "path": "/metadata/name", "value": "p"}]),
    ],
)
async def test_patch_content_types(
    server: Any, client: KubeClient, patch_type: PatchType, body: Any
) -> None:
    server.reply("PATCH", f"{POD_PATH}/p", pod())
    await client.patch(POD, "p", body, namespace="ns", patch_type=patch_type)
    seen = server.last()
    assert seen.headers["Content-Type"] == patch_type.value
    assert seen.body == body
    assert seen.query == {}


async def test_server_side_apply_sends_manager_and_force(server: Any, client: KubeClient) -> None:
    server.reply("PATCH", f"{POD_PATH}/p", pod())
    server.reply("PATCH", f"{POD_PATH}/p/status", pod())
    await client.patch(
        POD,
        "p",
        {"metadata": {"name": "p"}},
        namespace="ns",
        patch_type=PatchType.APPLY,
        field_manager="kaito",
        force=True,
    )
    seen = server.last()
    assert seen.headers["Content-Type"] == "application/apply-patch+yaml"
    assert seen.query == {"fieldManager": "kaito", "force": "true"}
    assert seen.body["apiVersion"] == "v1"
    assert seen.body["kind"] == "Pod"
    await client.patch_status(
        POD,
        "p",
        {"status": {"phase": "Running"}},
        namespace="ns",
        patch_type=PatchType.APPLY,
        field_manager="kubelet",
    )
    assert server.last().path == f"{POD_PATH}/p/status"
    assert server.last().query == {"fieldManager": "kubelet", "force": "false"}
    assert client.requests.count("patch") == 2


async def test_patch_argument_errors(client: KubeClient) -> None:
    with pytest.raises(ValueError, match="field_manager"):
        await client.patch(POD, "p", {}, namespace="ns", patch_type=PatchType.APPLY)
    with pytest.raises(ValueError, match="force"):
        await client.patch(POD, "p", {}, namespace="ns", force=True)
    with pytest.raises(TypeError):
        await client.patch(
            POD, "p", [{"op": "remove"}], namespace="ns",
            patch_type=PatchType.APPLY, field_manager="m",
        )  # fmt: skip
    assert client.requests.count() == 0


async def test_delete_sends_options_in_the_body(server: Any, client: KubeClient) -> None:
    server.reply("DELETE", f"{POD_PATH}/p", {"kind": "Status", "status": "Success"})
    result = await client.delete(
        POD,
        "p",
        namespace="ns",
        propagation_policy=PropagationPolicy.FOREGROUND,
        preconditions=Preconditions(uid="u", resource_version="9"),
        grace_period_seconds=0,
    )
    assert result.gone
    assert result.object is None
    assert server.last().body == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Foreground",
        "preconditions": {"uid": "u", "resourceVersion": "9"},
        "gracePeriodSeconds": 0,
    }


@pytest.mark.parametrize(
    ("code", "meta", "gone"),
    [
        (200, {}, True),
        (200, {"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["x"]}, False),
        (202, {}, False),
    ],
)
async def test_delete_reports_gone_or_terminating(
    server: Any, client: KubeClient, code: int, meta: dict[str, Any], gone: bool
) -> None:
    server.reply("DELETE", f"{POD_PATH}/p", pod(**meta), status=code)
    result = await client.delete(POD, "p", namespace="ns")
    assert result.gone is gone
    assert result.object is not None
    assert result.object["metadata"]["name"] == "p"


async def test_failures_become_api_errors_with_the_transport_error_as_cause(
    server: Any, client: KubeClient
) -> None:
    server.reply("GET", f"{POD_PATH}/gone", failure(404, "NotFound"), status=404)
    with pytest.raises(NotFound) as caught:
        await client.get(POD, "gone", namespace="ns")
    assert isinstance(caught.value.__cause__, ApiException)
    assert caught.value.status["reason"] == "NotFound"

    invalid = failure(422, "Invalid", 'Pod "p" is invalid')
    invalid["details"] = {"causes": [{"field": "spec", "reason": "FieldValueRequired"}]}
    server.reply("POST", POD_PATH, invalid, status=422)
    with pytest.raises(Invalid) as caught_invalid:
        await client.create(POD, pod())
    assert caught_invalid.value.causes[0].field == "spec"

    server.reply("PUT", f"{POD_PATH}/p", failure(409, "Conflict"), status=409)
    with pytest.raises(Conflict):
        await client.update(POD, pod(resourceVersion="1"))

    server.reply(
        "GET", POD_PATH, failure(429, "TooManyRequests"), status=429, headers={"Retry-After": "2"}
    )
    with pytest.raises(TooManyRequests) as throttled:
        await client.list(POD, namespace="ns")
    assert throttled.value.retry_after == 2.0


async def test_a_success_that_is_not_json_is_a_transport_error(
    server: Any, client: KubeClient
) -> None:
    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>proxy login</html>", content_type="text/html")

    server.on("GET", f"{POD_PATH}/p", html)
    with pytest.raises(TransportError, match="not a JSON object"):
        await client.get(POD, "p", namespace="ns")


async def test_request_timeout(server: Any, client: KubeClient) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response(pod())

    server.on("GET", f"{POD_PATH}/p", slow)
    quick = client.with_timeout(0.2)
    assert quick.request_timeout == 0.2
    with pytest.raises(RequestTimeout) as caught:
        await quick.get(POD, "p", namespace="ns")
    assert isinstance(caught.value.__cause__, TimeoutError)
    # The view shares the counter and the connections of the client it came from.
    assert client.requests.count("get") == 1
    await quick.close()
    server.reply("GET", f"{POD_PATH}/q", pod("q"))
    assert (await client.get(POD, "q", namespace="ns"))["metadata"]["name"] == "q"


async def test_connection_refused_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    api = ApiClient(Configuration(host=f"http://127.0.0.1:{port}"))
    async with KubeClient(api, request_timeout=2, owns_api_client=True) as kube:
        with pytest.raises(TransportError) as caught:
            await kube.get(CONFIG_MAP, "c", namespace="ns")
        assert not isinstance(caught.value, ApiError)
        assert caught.value.__cause__ is not None
        events = kube.watch(CONFIG_MAP, namespace="ns")
        with pytest.raises(TransportError):
            await anext(events)
    assert api.rest_client.pool_manager.closed


async def test_a_client_given_an_api_client_leaves_it_open(server: Any) -> None:
    api = ApiClient(Configuration(host=server.url))
    async with KubeClient(api) as kube:
        assert kube.host == server.url
        assert repr(kube) == f"KubeClient({server.url!r})"
    assert not api.rest_client.pool_manager.closed
    await api.close()


# -- watch -------------------------------------------------------------------------------


def streaming(*frames: dict[str, Any] | str, hold: float = 0.0) -> Any:
    """A handler that writes frames as lines (strings as they are), then maybe stays open."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        for frame in frames:
            line = frame if isinstance(frame, str) else json.dumps(frame)
            await response.write(line.encode() + b"\n")
        if hold:
            await asyncio.sleep(hold)
        return response

    return handler


async def test_watch_yields_typed_events_in_order(server: Any, client: KubeClient) -> None:
    server.on(
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        streaming(
            {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}},
            "",
            {"type": "MODIFIED", "object": {"metadata": {"name": "a", "resourceVersion": "6"}}},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "8"}}},
            {"type": "DELETED", "object": {"metadata": {"name": "a", "resourceVersion": "9"}}},
        ),
    )
    events = [
        e
        async for e in client.watch(
            CONFIG_MAP,
            namespace="ns",
            resource_version="4",
            label_selector={"app": "x"},
            field_selector="metadata.name=a",
            timeout_seconds=5,
            allow_bookmarks=True,
        )
    ]
    assert [(e.type, e.resource_version) for e in events] == [
        ("ADDED", "5"),
        ("MODIFIED", "6"),
        ("BOOKMARK", "8"),
        ("DELETED", "9"),
    ]
    assert server.last().query == {
        "watch": "true",
        "resourceVersion": "4",
        "labelSelector": "app=x",
        "fieldSelector": "metadata.name=a",
        "timeoutSeconds": "5",
        "allowWatchBookmarks": "true",
    }
    assert client.requests.count("watch", "configmaps") == 1


async def test_watch_error_frame_raises_gone(server: Any, client: KubeClient) -> None:
    expired = failure(410, "Expired", "too old resource version: 1 (40)")
    server.on(
        "GET",
        "/api/v1/namespaces/ns/configmaps",
        streaming(
            {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "41"}}},
            {"type": "ERROR", "object": expired},
        ),
    )
    events = client.watch(CONFIG_MAP, namespace="ns", resource_version="1")
    assert (await anext(events)).type == "ADDED"
    with pytest.raises(Gone) as caught:
        await anext(events)
    assert caught.value.code == 410


async def test_watch_http_failure_raises_before_any_event(server: Any, client: KubeClient) -> None:
    server.reply("GET", "/api/v1/pods", failure(410, "Expired"), status=410)
    with pytest.raises(Gone) as caught:
        await anext(client.watch(POD, resource_version="1"))
    assert isinstance(caught.value.__cause__, ApiException)
    server.reply("GET", "/api/v1/configmaps", failure(400, "BadRequest", "bad selector"), 400)
    with pytest.raises(ApiError, match="bad selector"):
        await anext(client.watch(CONFIG_MAP, field_selector="spec.nope=1"))


@pytest.mark.parametrize(
    "frame",
    ['{"type": "ADDED"', '{"type": "ADDED", "object": 3}', '{"type": "WHAT", "object": {}}'],
)
async def test_malformed_watch_frames(server: Any, client: KubeClient, frame: str) -> None:
    server.on("GET", "/api/v1/configmaps", streaming(frame))
    with pytest.raises(TransportError):
        await anext(client.watch(CONFIG_MAP))


async def test_leaving_a_watch_early_closes_it(server: Any, client: KubeClient) -> None:
    server.on(
        "GET",
        "/api/v1/configmaps",
        streaming({"type": "ADDED", "object": {"metadata": {"name": "a"}}}, hold=30),
    )
    events = client.watch(CONFIG_MAP)
    async with contextlib.aclosing(events):
        first = await anext(events)
        assert first.object["metadata"]["name"] == "a"
    server.reply("GET", "/api/v1/namespaces/ns/configmaps/c", {"kind": "ConfigMap"})
    assert (await client.get(CONFIG_MAP, "c", namespace="ns"))["kind"] == "ConfigMap"


async def test_a_watch_silent_past_its_timeout_fails(server: Any, client: KubeClient) -> None:
    # One event, then silence far past timeoutSeconds (a server that forgot to close).
    server.on(
        "GET",
        "/api/v1/configmaps",
        streaming({"type": "ADDED", "object": {"metadata": {"name": "a"}}}, hold=30),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = client.with_timeout(0.3).watch(CONFIG_MAP, timeout_seconds=1)
    async with contextlib.aclosing(events):
        assert (await anext(events)).type == "ADDED"
        with pytest.raises(RequestTimeout):
            await anext(events)
    assert 1.0 <= loop.time() - started < 5
