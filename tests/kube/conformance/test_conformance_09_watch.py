"""9. Watch: events after a resourceVersion in order, initial ADDED events, selectors (objects
entering and leaving them), timeoutSeconds, bookmarks, and 410 Gone for an expired version."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kaito.kube import CONFIG_MAP, Gone, KubeClient, WatchEvent

from .conftest import Backend

pytestmark = pytest.mark.timeout(60)


async def take(events: AsyncIterator[WatchEvent], count: int, within: float = 10.0) -> list:
    """The next `count` events (bookmarks skipped), or fail after `within` seconds."""
    got: list[WatchEvent] = []
    async with contextlib.aclosing(events), asyncio.timeout(within):
        async for event in events:
            if event.type == "BOOKMARK":
                continue
            got.append(event)
            if len(got) == count:
                break
    return got


def summary(events: list[WatchEvent]) -> list[tuple[str, str]]:
    return [(e.type, e.object["metadata"]["name"]) for e in events]


async def test_events_after_a_resource_version_in_order(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    mine = backend.label()
    await client.create(
        CONFIG_MAP, {"metadata": {"name": "before", "namespace": ns, "labels": mine}}
    )
    start = (await client.list(CONFIG_MAP, namespace=ns, label_selector=mine)).resource_version

    await client.create(CONFIG_MAP, {"metadata": {"name": "a", "namespace": ns, "labels": mine}})
    await client.patch(CONFIG_MAP, "a", {"data": {"x": "1"}}, namespace=ns)
    await client.create(CONFIG_MAP, {"metadata": {"name": "b", "namespace": ns, "labels": mine}})
    await client.delete(CONFIG_MAP, "a", namespace=ns)

    events = await take(
        client.watch(CONFIG_MAP, namespace=ns, resource_version=start, label_selector=mine), 4
    )
    assert summary(events) == [
        ("ADDED", "a"),
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    versions = [int(e.resource_version) for e in events]
    assert versions == sorted(versions)
    assert len(set(versions)) == 4
    assert versions[0] > int(start)
    assert events[1].object["data"] == {"x": "1"}


async def test_watch_without_version_starts_with_existing_objects(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    mine = backend.label()
    for name in ("x", "y"):
        await client.create(
            CONFIG_MAP, {"metadata": {"name": name, "namespace": ns, "labels": mine}}
        )
    events = client.watch(CONFIG_MAP, namespace=ns, label_selector=mine)
    initial = await take(events, 2)
    assert sorted(summary(initial)) == [("ADDED", "x"), ("ADDED", "y")]


async def test_live_events_reach_an_open_watch(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    mine = backend.label()
    start = (await client.list(CONFIG_MAP, namespace=ns, label_selector=mine)).resource_version
    watching = asyncio.create_task(
        take(
            client.watch(CONFIG_MAP, namespace=ns, resource_version=start, label_selector=mine),
            2,
        )
    )
    await asyncio.sleep(0.3)
    await client.create(CONFIG_MAP, {"metadata": {"name": "live", "namespace": ns, "labels": mine}})
    await client.delete(CONFIG_MAP, "live", namespace=ns)
    assert summary(await watching) == [("ADDED", "live"), ("DELETED", "live")]


async def test_selectors_filter_and_report_objects_leaving_and_entering(
    client: KubeClient, ns: str
) -> None:
    start = (await client.list(CONFIG_MAP, namespace=ns)).resource_version
    await client.create(
        CONFIG_MAP, {"metadata": {"name": "in", "namespace": ns, "labels": {"w": "yes"}}}
    )
    await client.create(
        CONFIG_MAP, {"metadata": {"name": "out", "namespace": ns, "labels": {"w": "no"}}}
    )
    # Leaves the selection: a selective watch reports it as DELETED.
    await client.patch(CONFIG_MAP, "in", {"metadata": {"labels": {"w": "no"}}}, namespace=ns)
    # Enters it: reported as ADDED.
    await client.patch(CONFIG_MAP, "out", {"metadata": {"labels": {"w": "yes"}}}, namespace=ns)

    events = await take(
        client.watch(CONFIG_MAP, namespace=ns, resource_version=start, label_selector={"w": "yes"}),
        3,
    )
    assert summary(events) == [("ADDED", "in"), ("DELETED", "in"), ("ADDED", "out")]

    named = await take(
        client.watch(
            CONFIG_MAP, namespace=ns, resource_version=start, field_selector="metadata.name=out"
        ),
        2,
    )
    assert summary(named) == [("ADDED", "out"), ("MODIFIED", "out")]


async def test_timeout_seconds_ends_the_stream(client: KubeClient, ns: str) -> None:
    start = (await client.list(CONFIG_MAP, namespace=ns)).resource_version
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with asyncio.timeout(15):
        events = [
            e
            async for e in client.watch(
                CONFIG_MAP, namespace=ns, resource_version=start, timeout_seconds=1
            )
            if e.type != "BOOKMARK"
        ]
    assert events == []
    assert 0.5 <= loop.time() - began < 10


@pytest.mark.emulator_only("a real server may hold bookmarks back for up to a minute")
async def test_bookmarks_carry_a_newer_resource_version(client: KubeClient, ns: str) -> None:
    start = (await client.list(CONFIG_MAP, namespace=ns)).resource_version
    written = await client.create(CONFIG_MAP, {"metadata": {"name": "m", "namespace": ns}})
    bookmarks = []
    async with asyncio.timeout(15):
        async for event in client.watch(
            CONFIG_MAP,
            namespace="other-namespace",
            resource_version=start,
            timeout_seconds=2,
            allow_bookmarks=True,
        ):
            assert event.type == "BOOKMARK", "nothing else happens in that namespace"
            bookmarks.append(event)
    assert bookmarks
    last = bookmarks[-1]
    assert int(last.resource_version) >= int(written["metadata"]["resourceVersion"])
    assert last.object["kind"] == "ConfigMap"
    assert set(last.object["metadata"]) <= {"resourceVersion", "annotations"}


async def test_no_bookmarks_unless_asked(client: KubeClient, ns: str) -> None:
    start = (await client.list(CONFIG_MAP, namespace=ns)).resource_version
    async with asyncio.timeout(15):
        types = [
            e.type
            async for e in client.watch(
                CONFIG_MAP, namespace=ns, resource_version=start, timeout_seconds=1
            )
        ]
    assert "BOOKMARK" not in types


@pytest.mark.emulator_only("needs a short watch history")
async def test_expired_resource_version_is_gone(backend: Backend, tmp_path: Path) -> None:
    from kaito.kube.emulator import Emulator

    # A server of its own that remembers only the last five changes.
    async with (
        Emulator(port=0, watch_history=5) as small,
        await KubeClient.from_kubeconfig(small.write_kubeconfig(tmp_path / "kc")) as client,
    ):
        first = await client.create(
            CONFIG_MAP, {"metadata": {"name": "old", "namespace": "default"}}
        )
        for i in range(10):
            await client.patch(CONFIG_MAP, "old", {"data": {"i": str(i)}}, namespace="default")
        with pytest.raises(Gone) as caught:
            await take(
                client.watch(
                    CONFIG_MAP,
                    namespace="default",
                    resource_version=first["metadata"]["resourceVersion"],
                ),
                1,
            )
        assert caught.value.code == 410
        # Recovering as a controller does: list again and watch from the list's version.
        fresh = await client.list(CONFIG_MAP, namespace="default")
        watching = asyncio.create_task(
            take(
                client.watch(
                    CONFIG_MAP, namespace="default", resource_version=fresh.resource_version
                ),
                1,
            )
        )
        await asyncio.sleep(0.2)
        await client.patch(CONFIG_MAP, "old", {"data": {"i": "after"}}, namespace="default")
        assert summary(await watching) == [("MODIFIED", "old")]
