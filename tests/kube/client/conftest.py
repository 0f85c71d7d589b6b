"""A scripted HTTP server on 127.0.0.1 for the client's own tests.

The client is tested over real HTTP, never by patching kubernetes_asyncio: each test tells the
server what to answer for a method and path, and afterwards reads what the client sent. This
covers what the emulator cannot be made to do on purpose (odd bodies, silence, TLS, auth).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from aiohttp import web

from kaito.kube import KubeClient

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.define
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class ScriptedServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[Seen] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def on(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method, path)] = handler

    def reply(
        self,
        method: str,
        path: str,
        body: Any,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        async def handler(_: web.Request) -> web.StreamResponse:
            text = body if isinstance(body, str) else json.dumps(body)
            return web.Response(
                status=status, text=text, content_type="application/json", headers=headers
            )

        self.on(method, path, handler)

    def last(self) -> Seen:
        return self.seen[-1]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode()
        self.seen.append(
            Seen(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
            )
        )
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": "NotFound", "code": 404, "message": "not scripted"}  # fmt: skip
            return web.json_response(status, status=404)
        return await handler(request)

    async def start(self, ssl_context: Any = None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


KubeconfigWriter = Callable[[dict[str, tuple[str, str]], str], Path]


def _write_kubeconfig(
    path: Path,
    contexts: dict[str, tuple[str, str]],
    current: str,
) -> Path:
    """A kubeconfig with one cluster and token user per context: name -> (server, token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": current,
        "clusters": [{"name": n, "cluster": {"server": s}} for n, (s, _) in contexts.items()],
        "users": [{"name": n, "user": {"token": t}} for n, (_, t) in contexts.items()],
        "contexts": [
            {"name": n, "context": {"cluster": n, "user": n, "namespace": "default"}}
            for n in contexts
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


ServerStarter = Callable[..., Awaitable[ScriptedServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[ServerStarter]:
    """Starts scripted servers (`ssl_context=` for HTTPS); all stop when the test ends."""
    started: list[ScriptedServer] = []

    async def start(ssl_context: Any = None) -> ScriptedServer:
        srv = ScriptedServer()
        await srv.start(ssl_context=ssl_context)
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            await srv.stop()


@pytest.fixture
async def server(start_server: ServerStarter) -> ScriptedServer:
    return await start_server()


@pytest.fixture
def write_kubeconfig(tmp_path: Path) -> KubeconfigWriter:
    """Writes a kubeconfig (contexts: name -> (server, token)) and returns its path."""

    def write(contexts: dict[str, tuple[str, str]], current: str) -> Path:
        return _write_kubeconfig(tmp_path / f"kubeconfig-{current}", contexts, current)

    return write


@pytest.fixture
async def client(
    server: ScriptedServer, write_kubeconfig: KubeconfigWriter
) -> AsyncIterator[KubeClient]:
    config = write_kubeconfig({"scripted": (server.url, "t0ken")}, "scripted")
    async with await KubeClient.from_kubeconfig(config, request_timeout=2.0) as kube:
        yield kube
