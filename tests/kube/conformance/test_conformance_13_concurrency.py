"""13. Concurrency and faults: writes are atomic (no lost update under concurrent writers),
events come in resourceVersion order, and injected faults surface as the right errors."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from kaito.kube import (
    CONFIG_MAP,
    ApiError,
    Conflict,
    Forbidden,
    KubeClient,
    NotFound,
    RequestTimeout,
    ServerError,
    ServerTimeout,
    TooManyRequests,
    TransportError,
)

pytestmark = pytest.mark.timeout(60)

WRITERS = 4
INCREMENTS = 5


async def increment(client: KubeClient, ns: str, conflicts: list[int]) -> None:
    """Read-modify-write with retry on Conflict, as every controller does."""
    for _ in range(INCREMENTS):
        for _attempt in range(200):
            current = await client.get(CONFIG_MAP, "counter", namespace=ns)
            value = int(current["data"]["n"])
            try:
                await client.update(CONFIG_MAP, {**current, "data": {"n": str(value + 1)}})
                break
            except Conflict:
                conflicts.append(value)
        else:
            raise AssertionError("no progress against the other writers")


async def test_concurrent_writers_lose_no_update_and_events_follow_rv_order(
    client: KubeClient, ns: str
) -> None:
    created = await client.create(
        CONFIG_MAP, {"metadata": {"name": "counter", "namespace": ns}, "data": {"n": "0"}}
    )
    start = created["metadata"]["resourceVersion"]
    total = WRITERS * INCREMENTS
    events = client.watch(
        CONFIG_MAP, namespace=ns, resource_version=start, field_selector="metadata.name=counter"
    )

    async def collect() -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []
        async with contextlib.aclosing(events):
            async for event in events:
                seen.append((int(event.resource_version), int(event.object["data"]["n"])))
                if len(seen) == total:
                    break
        return seen

    watching = asyncio.create_task(collect())
    conflicts: list[int] = []
    await asyncio.gather(*(increment(client, ns, conflicts) for _ in range(WRITERS)))
    final = await client.get(CONFIG_MAP, "counter", namespace=ns)
    assert final["data"]["n"] == str(total)

    async with asyncio.timeout(20):
        seen = await watching
    versions = [rv for rv, _ in seen]
    values = [n for _, n in seen]
    # One MODIFIED event per successful write, in the order the writes were stored.
    assert values == list(range(1, total + 1))
    assert versions == sorted(versions)
    assert len(set(versions)) == total
    assert versions[-1] == int(final["metadata"]["resourceVersion"])


@pytest.mark.emulator_only("fault injection")
@pytest.mark.parametrize(
    ("code", "error"),
    [
        (429, TooManyRequests),
        (500, ServerError),
        (503, ServerError),
        (504, ServerTimeout),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
    ],
)
async def test_injected_faults_surface_as_errors(
    emulator: object, client: KubeClient, ns: str, code: int, error: type[ApiError]
) -> None:
    await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    emulator.faults.add(verb="get", plural="configmaps", code=code, times=1)  # type: ignore[attr-defined]
    with pytest.raises(error) as caught:
        await client.get(CONFIG_MAP, "c", namespace=ns)
    assert caught.value.code == code
    assert caught.value.status.get("kind") == "Status"
    # The fault was for one request only.
    assert (await client.get(CONFIG_MAP, "c", namespace=ns))["metadata"]["name"] == "c"


@pytest.mark.emulator_only("fault injection")
async def test_injected_fault_on_a_write_leaves_the_store_unchanged(
    emulator: object, client: KubeClient, ns: str
) -> None:
    emulator.faults.add(verb="create", plural="configmaps", code=500, times=2)  # type: ignore[attr-defined]
    for _ in range(2):
        with pytest.raises(ServerError):
            await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "c", namespace=ns)
    await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    assert client.requests.count("create", "configmaps") == 3


@pytest.mark.emulator_only("fault injection")
async def test_dropped_connection_is_a_transport_error(
    emulator: object, client: KubeClient, ns: str
) -> None:
    # A write is never retried by the HTTP layer: its outcome is unknown, so it must surface.
    emulator.faults.add(verb="create", plural="configmaps", abort=True)  # type: ignore[attr-defined]
    with pytest.raises(TransportError) as caught:
        await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    assert not isinstance(caught.value, ApiError)
    # aiohttp retries an idempotent request once on a dropped pooled connection; dropping the
    # retry too surfaces it.
    emulator.faults.add(verb="list", plural="configmaps", abort=True, times=2)  # type: ignore[attr-defined]
    with pytest.raises(TransportError):
        await client.list(CONFIG_MAP, namespace=ns)
    assert (await client.list(CONFIG_MAP, namespace=ns)).items == []


@pytest.mark.emulator_only("fault injection")
async def test_slow_answer_hits_the_request_timeout(
    emulator: object, client: KubeClient, ns: str
) -> None:
    emulator.faults.add(verb="get", plural="configmaps", latency=2.0)  # type: ignore[attr-defined]
    with pytest.raises(RequestTimeout):
        await client.with_timeout(0.3).get(CONFIG_MAP, "anything", namespace=ns)


@pytest.mark.emulator_only("fault injection")
@pytest.mark.parametrize("abort", [False, True])
async def test_watch_cut_short(emulator: object, client: KubeClient, ns: str, abort: bool) -> None:
    for name in ("a", "b", "c"):
        await client.create(CONFIG_MAP, {"metadata": {"name": name, "namespace": ns}})
    emulator.faults.add(  # type: ignore[attr-defined]
        verb="watch", plural="configmaps", close_watch_after_events=2, abort=abort
    )
    seen: list[str] = []

    async def consume() -> None:
        async for event in client.watch(CONFIG_MAP, namespace=ns, timeout_seconds=30):
            seen.append(event.object["metadata"]["name"])

    async with asyncio.timeout(10):
        if abort:
            with pytest.raises(TransportError):
                await consume()
        else:
            await consume()
    assert len(seen) == 2
