"""Watch streams: chunked JSON lines, history replay, 410 Gone, bookmarks, selectors, timeouts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from emu_support import CM, configmap

from kaito.kube.emulator import Emulator


@asynccontextmanager
async def stream(emu: Emulator, path: str, **params: str) -> AsyncIterator[Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(emu.url + path, params={"watch": "true", **params}) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.headers.get("Transfer-Encoding") == "chunked"

        async def next_event(wait: float = 2.0) -> dict[str, Any] | None:
            line = await asyncio.wait_for(resp.content.readline(), wait)
            return json.loads(line) if line else None

        yield next_event


def summary(event: dict[str, Any] | None) -> tuple[str, str]:
    assert event is not None
    return event["type"], event["object"]["metadata"].get("name", "")


async def test_watch_without_resource_version_starts_with_current_objects(emu: Emulator) -> None:
    emu.store.seed([configmap("a"), configmap("b")])
    async with stream(emu, CM) as next_event:
        assert summary(await next_event()) == ("ADDED", "a")
        assert summary(await next_event()) == ("ADDED", "b")
        emu.store.patch("configmaps", "default", "a", {"data": {"x": "1"}})
        emu.store.delete("configmaps", "default", "b")
        modified = await next_event()
        assert summary(modified) == ("MODIFIED", "a")
        assert modified is not None
        assert modified["object"]["data"]["x"] == "1"
        deleted = await next_event()
        assert summary(deleted) == ("DELETED", "b")
        assert deleted is not None
        assert int(deleted["object"]["metadata"]["resourceVersion"]) == emu.store.resource_version


async def test_watch_from_resource_version_replays_later_events_in_order(emu: Emulator) -> None:
    store = emu.store
    store.create("configmaps", configmap("a"))
    since = store.resource_version
    store.create("configmaps", configmap("b"))
    store.patch("configmaps", "default", "a", {"data": {"x": "1"}})
    store.create(
        "pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
    )
    async with stream(emu, CM, resourceVersion=str(since)) as next_event:
        first, second = await next_event(), await next_event()
        assert [summary(first), summary(second)] == [("ADDED", "b"), ("MODIFIED", "a")]
        assert first is not None
        assert second is not None
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in (first, second)]
        assert rvs == sorted(rvs)
        assert rvs[0] > since


async def test_watch_from_a_compacted_resource_version_is_gone(emu: Emulator) -> None:
    store = emu.store
    store.history_limit = 3
    store.create("configmaps", configmap("a"))
    old = store.resource_version
    for i in range(5):
        store.patch("configmaps", "default", "a", {"data": {"i": str(i)}})
    async with stream(emu, CM, resourceVersion=str(old)) as next_event:
        event = await next_event()
        assert event is not None
        assert event["type"] == "ERROR"
        status = event["object"]
        assert status["kind"] == "Status"
        assert status["code"] == 410
        assert status["reason"] == "Expired"
        assert status["message"].startswith(f"too old resource version: {old}")
        assert await next_event() is None


async def test_bookmarks_carry_only_the_resource_version(emu: Emulator) -> None:
    async with stream(emu, CM, resourceVersion="1", allowWatchBookmarks="true") as next_event:
        event = await next_event()
        assert event is not None
        assert event["type"] == "BOOKMARK"
        assert event["object"]["kind"] == "ConfigMap"
        assert event["object"]["apiVersion"] == "v1"
        assert event["object"]["metadata"] == {"resourceVersion": str(emu.store.resource_version)}


async def test_no_bookmarks_unless_asked(emu: Emulator) -> None:
    async with stream(emu, CM, resourceVersion="1", timeoutSeconds="1") as next_event:
        assert await next_event() is None


async def test_send_initial_events_ends_with_an_annotated_bookmark(emu: Emulator) -> None:
    emu.store.seed([configmap("a")])
    params = {
        "sendInitialEvents": "true",
        "resourceVersionMatch": "NotOlderThan",
        "allowWatchBookmarks": "true",
    }
    async with stream(emu, CM, **params) as next_event:
        assert summary(await next_event()) == ("ADDED", "a")
        bookmark = await next_event()
        assert bookmark is not None
        assert bookmark["type"] == "BOOKMARK"
        annotations = bookmark["object"]["metadata"]["annotations"]
        assert annotations == {"k8s.io/initial-events-end": "true"}


async def test_timeout_seconds_ends_the_stream(emu: Emulator) -> None:
    started = time.monotonic()
    async with stream(emu, CM, resourceVersion="1", timeoutSeconds="1") as next_event:
        assert await next_event(3) is None
    assert 0.9 <= time.monotonic() - started < 2.5


async def test_label_selector_turns_transitions_into_added_and_deleted(emu: Emulator) -> None:
    store = emu.store
    store.create("configmaps", configmap("a", app="web"))
    async with stream(emu, CM, labelSelector="app=web") as next_event:
        assert summary(await next_event()) == ("ADDED", "a")
        store.patch("configmaps", "default", "a", {"metadata": {"labels": {"app": "db"}}})
        left = await next_event()
        assert summary(left) == ("DELETED", "a")
        assert left is not None
        assert left["object"]["metadata"]["labels"] == {"app": "db"}
        store.create("configmaps", configmap("other", app="db"))
        store.patch("configmaps", "default", "a", {"metadata": {"labels": {"app": "web"}}})
        assert summary(await next_event()) == ("ADDED", "a")


async def test_field_selector_on_watch(emu: Emulator) -> None:
    store = emu.store
    async with stream(emu, CM, fieldSelector="metadata.name=b") as next_event:
        store.create("configmaps", configmap("a"))
        store.create("configmaps", configmap("b"))
        assert summary(await next_event()) == ("ADDED", "b")


async def test_namespaced_watch_sees_only_its_namespace(emu: Emulator) -> None:
    emu.store.seed([configmap("x", "other")])
    async with stream(emu, CM) as next_event:
        emu.store.create("configmaps", configmap("y", "other"))
        emu.store.create("configmaps", configmap("a"))
        assert summary(await next_event()) == ("ADDED", "a")


async def test_all_namespace_watch(emu: Emulator) -> None:
    emu.store.seed([configmap("x", "other")])
    async with stream(emu, "/api/v1/configmaps") as next_event:
        assert summary(await next_event()) == ("ADDED", "x")


async def test_event_order_equals_resource_version_order_under_concurrency(
    emu: Emulator,
) -> None:
    async with stream(
        emu, "/api/v1/configmaps", resourceVersion=str(emu.store.resource_version)
    ) as next_event:

        async def writer(i: int) -> None:
            async with aiohttp.ClientSession() as session:
                for j in range(5):
                    body = configmap(f"w{i}-{j}")
                    async with session.post(emu.url + CM, json=body) as resp:
                        assert resp.status == 201

        await asyncio.gather(*(writer(i) for i in range(4)))
        rvs = []
        for _ in range(20):
            event = await next_event()
            assert event is not None
            rvs.append(int(event["object"]["metadata"]["resourceVersion"]))
        assert rvs == sorted(rvs)
        assert len(set(rvs)) == 20


async def test_in_process_watcher_iterates_copies(emu: Emulator) -> None:
    store = emu.store
    watcher, _ = store.watch("configmaps", "default", resource_version=store.resource_version)
    store.create("configmaps", configmap("a"))
    watcher.close()
    events = [event async for event in watcher]
    assert [e.type for e in events] == ["ADDED"]
    events[0].object["data"]["k"] = "mutated"
    assert store.read("configmaps", "default", "a")["data"] == {"k": "v"}


async def test_stop_ends_open_watches(emu: Emulator) -> None:
    async with stream(emu, CM, resourceVersion="1") as next_event:
        await emu.stop()
        assert await next_event() is None
