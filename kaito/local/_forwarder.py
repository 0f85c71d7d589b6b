"""Services on 127.0.0.1: a TCP forwarder per Service port, to the pods' processes.

On a cluster a Service's ClusterIP reaches its ready pods; the local mode has no cluster
network, so each Service port gets a listener on 127.0.0.1 that forwards every connection to
the process of a ready pod the Service selects (round robin), at the port the local kubelet gave
that pod for the Service's target port. Bytes are copied both ways until either side closes;
nothing is parsed, so HTTP, streaming responses and anything else pass as they are.

A listener can be bound before its Service exists (`adopt`): `kaito up` takes the port it
will print (`--port`, or a free one) at once, so a port in use fails the command at the start
rather than after the model has loaded. A connection that arrives while no pod is ready waits
up to `connect_wait` seconds for one, then is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from kaito.kube import SERVICE, Client, RawObject
from kaito.local._kubelet import Endpoint
from kaito.operator import Informer

_log = logging.getLogger("kaito.local.forwarder")

Backend = tuple[str, int]
Picker = Callable[[], Backend | None]

_CHUNK = 64 * 1024


def bind_listener(port: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A listening TCP socket on `host:port` (0: a free port). Raises OSError when taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class TcpForwarder:
    """Accepts connections on a socket and forwards each to the backend `pick` names."""

    def __init__(self, sock: socket.socket, pick: Picker, *, connect_wait: float = 10.0) -> None:
        self.sock = sock
        self.port = int(sock.getsockname()[1])
        self._pick = pick
        self._connect_wait = connect_wait
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self.sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        else:
            self.sock.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _backend(self) -> Backend | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_wait
        while True:
            found = self._pick()
            if found is not None or loop.time() >= deadline:
                return found
            await asyncio.sleep(0.1)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            backend = await self._backend()
            if backend is None:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*backend)
            except OSError as exc:
                _log.info("forwarding to %s:%s failed: %s", backend[0], backend[1], exc)
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
                with contextlib.suppress(OSError):
                    await up_writer.wait_closed()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)


@attrs.frozen
class _Port:
    namespace: str
    service: str
    port: int
    target: int | str
    selector: Mapping[str, str]
    first: bool

    @property
    def key(self) -> str:
        base = f"{self.namespace}/{self.service}"
        return base if self.first else f"{base}:{self.port}"


def _service_ports(service: RawObject) -> list[_Port]:
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    selector = spec.get("selector") or {}
    if spec.get("clusterIP") == "None" or not selector or meta.get("deletionTimestamp"):
        return []
    ports: list[_Port] = []
    for index, item in enumerate(spec.get("ports") or []):
        if str(item.get("protocol") or "TCP") != "TCP" or "port" not in item:
            continue
        ports.append(
            _Port(
                namespace=str(meta.get("namespace") or "default"),
                service=str(meta.get("name")),
                port=int(item["port"]),
                target=item.get("targetPort", item["port"]),
                selector=dict(selector),
                first=index == 0,
            )
        )
    return ports


class ServiceForwarder:
    """Listens on 127.0.0.1 for every Service port, forwarding to the kubelet's ready pods.

    `endpoints` lists the pods' processes (the local kubelet's `endpoints`); `on_change` is
    called when the set of listeners changes. An adopted listener stays open for the whole
    run, also while its Service does not exist (its connections then wait, then close).
    """

    def __init__(
        self,
        client: Client,
        endpoints: Callable[[], Sequence[Endpoint]],
        *,
        connect_wait: float = 10.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._endpoints = endpoints
        self._connect_wait = connect_wait
        self._on_change = on_change
        self._adopted: dict[str, socket.socket] = {}
        self._services: dict[str, _Port] = {}
        self._forwarders: dict[str, TcpForwarder] = {}
        self._rr = itertools.count()
        self._sync_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.services = Informer(client, SERVICE, self._on_service)
        self._watch: asyncio.Task[None] | None = None

    def adopt(self, namespace: str, service: str, sock: socket.socket) -> int:
        """Use `sock`, a listener bound beforehand (see `bind_listener`), for the first port of
        the Service `namespace/service`; call before `start`. The port it listens on."""
        self._adopted[f"{namespace}/{service}"] = sock
        return int(sock.getsockname()[1])

    def ports(self) -> dict[str, int]:
        """`namespace/service` (first port) or `namespace/service:port` -> local port."""
        return {key: forwarder.port for key, forwarder in self._forwarders.items()}

    async def start(self) -> None:
        for key, sock in self._adopted.items():
            await self._listen(key, sock)
        self._watch = asyncio.create_task(self.services.run(), name="local services")
        await self.services.synced.wait()
        await self._sync()

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        forwarders, self._forwarders = dict(self._forwarders), {}
        for forwarder in forwarders.values():
            await forwarder.stop()
        for key, sock in self._adopted.items():
            if key not in forwarders:
                sock.close()  # adopted, never listened on (start failed or was not called)
        self._adopted = {}

    async def _listen(self, key: str, sock: socket.socket) -> None:
        forwarder = TcpForwarder(sock, self._picker(key), connect_wait=self._connect_wait)
        await forwarder.start()
        self._forwarders[key] = forwarder

    def _on_service(self, kind: Any, event: str, obj: RawObject) -> None:
        task = asyncio.ensure_future(self._sync())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync(self) -> None:
        async with self._sync_lock:
            self._services = {p.key: p for s in self.services.objects() for p in _service_ports(s)}
            changed = False
            for key in list(self._forwarders):
                if key not in self._services and key not in self._adopted:
                    await self._forwarders.pop(key).stop()
                    changed = True
            for key in self._services:
                if key in self._forwarders:
                    continue
                try:
                    await self._listen(key, bind_listener(0))
                except OSError as exc:
                    _log.warning("cannot listen for service %s: %s", key, exc)
                    continue
                changed = True
        if changed and self._on_change is not None:
            self._on_change()

    def _picker(self, key: str) -> Picker:
        def pick() -> Backend | None:
            port = self._services.get(key)
            if port is None:
                return None
            backends: list[Backend] = []
            for endpoint in self._endpoints():
                if endpoint.namespace != port.namespace or not endpoint.ready:
                    continue
                if any(endpoint.labels.get(k) != v for k, v in port.selector.items()):
                    continue
                target = port.target
                if isinstance(target, str) and not target.isdigit():
                    container_port = endpoint.named_ports.get(target)
                else:
                    container_port = int(target)
                host_port = endpoint.ports.get(container_port) if container_port else None
                if host_port is not None:
                    backends.append(("127.0.0.1", host_port))
            if not backends:
                return None
            return backends[next(self._rr) % len(backends)]

        return pick
