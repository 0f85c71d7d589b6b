"""The Python surface: facade names, the store API, faults, request counters, Status bodies,
kubeconfig and the standalone server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml
from emu_support import CM, GADGETS, PODS, Http, configmap, gadget, pod

import kaito.kube.emulator as emulator_pkg
from kaito.kube._kinds import CONFIG_MAP
from kaito.kube.emulator import ApiError, Emulator, Store, serve


def test_exported_names() -> None:
    assert sorted(emulator_pkg.__all__) == sorted(
        [
            "APPLY_PATCH",
            "JSON_PATCH",
            "MERGE_PATCH",
            "STRATEGIC_PATCH",
            "ApiError",
            "Emulator",
            "Fault",
            "Faults",
            "FieldError",
            "ListResult",
            "RequestInfo",
            "RequestLog",
            "Store",
            "WatchEvent",
            "Watcher",
            "nodeclaim_crd",
            "run_standalone",
            "serve",
        ]
    )


def test_import_is_light() -> None:
    code = (
        "import sys, kaito.kube.emulator; "
        "heavy = [m for m in ('torch', 'transformers', 'cel') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


# --- store -----------------------------------------------------------------------------------


def test_store_is_usable_without_a_server() -> None:
    store = Store()
    created = store.create(CONFIG_MAP, configmap("a"))
    fetched = store.get(CONFIG_MAP, "default", "a")
    assert fetched == created
    assert store.get("cm", "default", "missing") is None
    with pytest.raises(ApiError) as caught:
        store.read("configmaps", "default", "missing")
    assert caught.value.code == 404
    with pytest.raises(ApiError):
        store.resource("widgets")


def test_store_hands_out_copies() -> None:
    store = Store()
    created = store.create("configmaps", configmap("a"))
    created["data"]["k"] = "mutated"
    store.objects("configmaps")[0]["data"]["k"] = "mutated"
    listed = store.list("configmaps", "default")
    listed.items[0]["data"]["k"] = "mutated"
    assert store.read("configmaps", "default", "a")["data"] == {"k": "v"}


def test_seed_keeps_status_and_creates_namespaces() -> None:
    store = Store()
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "resourceVersion": "99"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    seeded = store.seed([node, {**pod("p", "team"), "status": {"phase": "Running"}}])
    assert seeded[0]["status"]["conditions"][0]["type"] == "Ready"
    assert store.read("pods", "team", "p")["status"] == {"phase": "Running"}
    assert store.get("namespaces", None, "team") is not None
    with pytest.raises(ApiError):
        store.seed([{"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}}])


def test_objects_are_indexed_by_namespace() -> None:
    store = Store()
    store.seed([configmap("a", "one"), configmap("b", "two"), configmap("c", "two")])
    assert [o["metadata"]["name"] for o in store.objects("configmaps", "two")] == ["b", "c"]
    assert len(store.objects("configmaps")) == 3


def test_dry_run_create_and_delete_store_nothing() -> None:
    store = Store()
    before = store.resource_version
    preview = store.create("configmaps", configmap("a"), dry_run=True)
    assert preview["metadata"]["name"] == "a"
    assert store.get("configmaps", "default", "a") is None
    store.create("configmaps", configmap("b"))
    store.delete("configmaps", "default", "b", dry_run=True)
    assert store.get("configmaps", "default", "b") is not None
    assert store.resource_version == before + 1


# --- Status bodies ---------------------------------------------------------------------------


async def test_status_body_shape(http: Http) -> None:
    reply = await http.get(f"{GADGETS}/ghost")
    assert reply.status == 404
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'gadgets.test.kaito.sh "ghost" not found',
        "reason": "NotFound",
        "details": {"name": "ghost", "group": "test.kaito.sh", "kind": "gadgets"},
        "code": 404,
    }


async def test_invalid_body_shape(http: Http) -> None:
    reply = await http.post(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    assert reply.status == 422
    assert reply.body["message"] == 'Pod "p" is invalid: spec.containers: Required value'
    assert reply.body["details"] == {
        "name": "p",
        "kind": "Pod",
        "causes": [
            {
                "reason": "FieldValueRequired",
                "message": "Required value",
                "field": "spec.containers",
            }
        ],
    }


async def test_malformed_json_and_wrong_kind_are_bad_requests(http: Http) -> None:
    assert (await http.post(CM, "{not json")).status == 400
    wrong = await http.post(CM, {**configmap("a"), "kind": "Secret"})
    assert wrong.status == 400
    other_version = await http.post(CM, {**configmap("a"), "apiVersion": "v2"})
    assert other_version.status == 400


async def test_yaml_request_bodies(http: Http) -> None:
    text = yaml.safe_dump(configmap("a"))
    reply = await http.post(CM, text, content_type="application/yaml")
    assert reply.status == 201


# --- faults and counters ---------------------------------------------------------------------


async def test_fault_answers_with_a_code_a_limited_number_of_times(
    emu: Emulator, http: Http
) -> None:
    fault = emu.faults.add(verb="create", plural="configmaps", code=500, times=2)
    for _ in range(2):
        reply = await http.post(CM, configmap("a"))
        assert reply.status == 500
        assert reply.body["reason"] == "InternalError"
    assert (await http.post(CM, configmap("a"))).status == 201
    assert fault.hits == 2
    assert len(emu.faults) == 0


async def test_fault_matching_by_name_namespace_and_subresource(emu: Emulator, http: Http) -> None:
    await http.post(PODS, pod("p"))
    await http.post(PODS, pod("q"))
    emu.faults.add(verb="patch", plural="pods/status", name="q", code=429, times=None)
    emu.faults.add(verb="get", namespace="kube-system", code=503, times=None)
    emu.faults.add(verb="list", kind="Pod", code=504, times=1)
    assert (await http.get(PODS)).status == 504
    ok = await http.patch(f"{PODS}/p/status", {"status": {}}, "application/merge-patch+json")
    assert ok.status == 200
    throttled = await http.patch(f"{PODS}/q/status", {"status": {}}, "application/merge-patch+json")
    assert throttled.status == 429
    assert throttled.body["reason"] == "TooManyRequests"
    assert (
        await http.patch(f"{PODS}/q", {"metadata": {}}, "application/merge-patch+json")
    ).status == 200
    assert (await http.get("/api/v1/namespaces/kube-system/configmaps/x")).status == 503
    emu.faults.clear()
    assert (await http.get("/api/v1/namespaces/kube-system/configmaps/x")).status == 404


async def test_fault_latency(emu: Emulator, http: Http) -> None:
    emu.faults.add(verb="get", plural="configmaps", latency=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await http.get(f"{CM}/x")
    assert loop.time() - started >= 0.3


async def test_fault_aborts_the_connection(emu: Emulator) -> None:
    emu.faults.add(verb="create", plural="configmaps", abort=True)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(emu.url + CM, json=configmap("a")) as resp:
                await resp.read()
    assert emu.store.get("configmaps", "default", "a") is None


async def test_fault_closes_a_watch_after_events(emu: Emulator) -> None:
    emu.faults.add(verb="watch", plural="configmaps", close_watch_after_events=2)
    emu.store.seed([configmap("a"), configmap("b"), configmap("c")])
    async with (
        aiohttp.ClientSession() as session,
        session.get(emu.url + CM, params={"watch": "1"}) as resp,
    ):
        lines = [line async for line in resp.content]
    assert len(lines) == 2


async def test_fault_drops_a_watch_after_seconds(emu: Emulator) -> None:
    emu.faults.add(verb="watch", plural="configmaps", close_watch_after=0.3, abort=True)

    async def drain() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.get(emu.url + CM, params={"watch": "1"}) as resp,
        ):
            async for _ in resp.content:
                pass

    with pytest.raises(aiohttp.ClientPayloadError):
        await drain()


async def test_request_counters(emu: Emulator, http: Http) -> None:
    emu.requests.reset()
    await http.post(CM, configmap("a"))
    await http.get(f"{CM}/a")
    await http.get(CM)
    await http.patch(f"{CM}/a", {"data": {}}, "application/merge-patch+json")
    await http.post(GADGETS, gadget("g"))
    await http.patch(f"{GADGETS}/g/status", {"status": {}}, "application/merge-patch+json")
    await http.delete(f"{CM}/a")
    await http.get("/api/v1")
    assert emu.requests.count("create") == 2
    assert emu.requests.count("get", "configmaps") == 1
    assert emu.requests.count("list") == 1
    assert emu.requests.count("patch", "gadgets/status") == 1
    assert emu.requests.count("patch", "gadgets") == 1
    assert emu.requests.count(plural="configmaps", name="a") == 3
    assert emu.requests.writes() == 5
    assert emu.requests.writes("configmaps") == 3


# --- kubeconfig and standalone ---------------------------------------------------------------


async def test_write_kubeconfig(emu: Emulator, tmp_path: Path) -> None:
    path = emu.write_kubeconfig(tmp_path / "sub" / "config", namespace="team")
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "kaito-emulator"
    assert config["clusters"][0]["cluster"] == {"server": emu.url, "insecure-skip-tls-verify": True}
    assert config["contexts"][0]["context"]["namespace"] == "team"
    assert config["users"][0]["user"]["token"]


async def test_bearer_tokens_are_accepted(emu: Emulator) -> None:
    headers = {"Authorization": "Bearer anything"}
    async with aiohttp.ClientSession(headers=headers) as session, session.get(emu.url + CM) as r:
        assert r.status == 200


async def test_serve_runs_until_stopped(tmp_path: Path) -> None:
    stop = asyncio.Event()
    lines: list[str] = []
    task = asyncio.create_task(
        serve(port=0, kubeconfig_path=tmp_path / "kc", announce=lines.append, stop=stop)
    )
    for _ in range(100):
        if len(lines) == 2:
            break
        await asyncio.sleep(0.02)
    url = lines[1].rsplit(" ", 1)[1]
    assert yaml.safe_load((tmp_path / "kc").read_text())["clusters"][0]["cluster"]["server"] == url
    async with aiohttp.ClientSession() as session, session.get(url + "/healthz") as resp:
        assert resp.status == 200
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = Emulator().url


async def test_a_defect_is_answered_as_an_internal_error_status(
    emu: Emulator, http: Http, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(emu.store, "read", broken)
    reply = await http.get(f"{CM}/a")
    assert reply.status == 500
    assert reply.body["reason"] == "InternalError"
    assert reply.body["message"] == "Internal error occurred: boom"
