"""Services on 127.0.0.1: the TCP forwarder copies bytes both ways to the backend it picks,
closes a connection no backend appears for, and releases its port when stopped; the Service
forwarder opens a listener per Service port (an adopted one before the Service exists),
forwards to ready endpoints by number or port name, round robin, and closes listeners of
deleted Services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from local_support import port_is_free, wait_for

from kaito.kube import SERVICE
from kaito.kube.emulated import EmulatedCluster
from kaito.local import Endpoint, ServiceForwarder, TcpForwarder, bind_listener

pytestmark = pytest.mark.timeout(20)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    port = writer.get_extra_info("sockname")[1]
    while data := await reader.read(1024):
        writer.write(f"{port}:".encode() + data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def echo_servers() -> AsyncIterator[list[int]]:
    servers = [await asyncio.start_server(_echo, "127.0.0.1", 0) for _ in range(2)]
    yield [s.sockets[0].getsockname()[1] for s in servers]
    for server in servers:
        server.close()
        await server.wait_closed()


async def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(1024), 5)
    finally:
        writer.close()


async def test_tcp_forwarder_copies_both_ways_and_releases_its_port(
    echo_servers: list[int],
) -> None:
    backend = echo_servers[0]
    forwarder = TcpForwarder(bind_listener(), lambda: ("127.0.0.1", backend))
    await forwarder.start()
    assert not port_is_free(forwarder.port)
    assert await roundtrip(forwarder.port, b"hello") == f"{backend}:hello".encode()
    big = b"x" * 300_000  # several chunks each way
    reader, writer = await asyncio.open_connection("127.0.0.1", forwarder.port)
    writer.write(big)
    await writer.drain()
    received = b""
    while len(received) < len(big):
        received += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    assert received.replace(f"{backend}:".encode(), b"") == big
    await forwarder.stop()
    assert port_is_free(forwarder.port)


async def test_without_a_backend_the_connection_waits_then_closes() -> None:
    forwarder = TcpForwarder(bind_listener(), lambda: None, connect_wait=0.3)
    await forwarder.start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await roundtrip(forwarder.port) == b""
        assert loop.time() - started >= 0.25
    finally:
        await forwarder.stop()


def test_a_taken_port_is_refused() -> None:
    held = bind_listener()
    try:
        with pytest.raises(OSError, match="in use"):
            bind_listener(int(held.getsockname()[1]))
    finally:
        held.close()


def service(name: str, *, target: Any = 5000, ports: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"app": name},
            "ports": [
                {"name": f"p{i}", "port": 80 + i, "targetPort": target, "protocol": "TCP"}
                for i in range(ports)
            ],
        },
    }


async def test_service_forwarder_follows_services_and_ready_endpoints(
    cluster: EmulatedCluster, echo_servers: list[int]
) -> None:
    client = cluster.client
    endpoints = [
        Endpoint("default", "web-0", {"app": "web"}, {5000: echo_servers[0]}, {"http": 5000}, True),
        Endpoint("default", "web-1", {"app": "web"}, {5000: echo_servers[1]}, {"http": 5000}, True),
        Endpoint("default", "web-2", {"app": "web"}, {5000: 1}, {"http": 5000}, False),
        Endpoint("other", "web-0", {"app": "web"}, {5000: 1}, {"http": 5000}, True),
    ]
    changes: list[int] = []
    forwarder = ServiceForwarder(
        client, lambda: endpoints, connect_wait=0.2, on_change=lambda: changes.append(1)
    )
    adopted = forwarder.adopt("default", "web", bind_listener())
    await forwarder.start()
    try:
        assert forwarder.ports() == {"default/web": adopted}
        assert await roundtrip(adopted) == b""  # no Service yet: nothing to forward to

        await client.create(SERVICE, service("web", target="http", ports=2))
        await wait_for(lambda: "default/web:81" in forwarder.ports(), what="second listener")
        assert forwarder.ports()["default/web"] == adopted
        answers = {await roundtrip(adopted) for _ in range(4)}
        assert answers == {f"{p}:ping".encode() for p in echo_servers}  # both ready pods
        assert changes

        await client.create(SERVICE, service("db"))
        db = await wait_for(lambda: forwarder.ports().get("default/db"), what="db listener")
        assert await roundtrip(db) == b""  # no pod selected
        await client.delete(SERVICE, "db", namespace="default")
        await wait_for(lambda: "default/db" not in forwarder.ports(), what="db listener closed")
        assert port_is_free(db)
        # The adopted port stays for the whole run, even without its Service.
        await client.delete(SERVICE, "web", namespace="default")
        await wait_for(lambda: "default/web:81" not in forwarder.ports(), what="closed")
        assert forwarder.ports() == {"default/web": adopted}
    finally:
        await forwarder.stop()
    assert port_is_free(adopted)


async def test_headless_services_get_no_listener(cluster: EmulatedCluster) -> None:
    headless = service("ws-headless")
    headless["spec"]["clusterIP"] = "None"
    await cluster.client.create(SERVICE, headless)
    forwarder = ServiceForwarder(cluster.client, list)
    await forwarder.start()
    try:
        assert forwarder.ports() == {}
    finally:
        await forwarder.stop()
