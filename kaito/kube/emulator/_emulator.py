"""The emulator as a running server: lifecycle, kubeconfig, and the standalone entry point.

`Emulator` binds a real TCP socket on loopback (port 0 picks a free one), so every client —
kubernetes_asyncio, kubectl, a subprocess under test — talks to it exactly as to a cluster.
The store, fault set and request log are exposed for tests to seed, inspect and perturb the
server from the same event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from kaito.kube.emulator._faults import Faults, RequestLog
from kaito.kube.emulator._server import ApiServer
from kaito.kube.emulator._store import Store

CONTEXT_NAME = "kaito-emulator"
TOKEN = "kaito-emulator-token"


def nodeclaim_crd() -> dict[str, Any]:
    """Karpenter's NodeClaim CRD (karpenter.sh/v1) as shipped with the emulator."""
    text = resources.files("kaito.kube.emulator").joinpath("data/nodeclaim-crd.yaml").read_text()
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


class Emulator:
    """A Kubernetes API server emulator on 127.0.0.1; use `async with Emulator() as emu`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        crds: Iterable[Mapping[str, Any]] = (),
        *,
        watch_history: int = 10000,
        bookmark_interval: float = 60.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.store = Store(watch_history=watch_history, clock=clock, crds=crds)
        self.faults = Faults()
        self.requests = RequestLog()
        self.server = ApiServer(
            self.store,
            self.faults,
            self.requests,
            bookmark_interval=bookmark_interval,
            address=lambda: f"{self.host}:{self.port}",
        )
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind the socket and start serving."""
        if self._runner is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        runner = web.AppRunner(
            self.server.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        """End open watches and stop serving."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        await self.server.shutdown()
        await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig whose current context points at this emulator."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": CONTEXT_NAME,
                    "cluster": {"server": self.url, "insecure-skip-tls-verify": True},
                }
            ],
            "users": [{"name": CONTEXT_NAME, "user": {"token": TOKEN}}],
            "contexts": [
                {
                    "name": CONTEXT_NAME,
                    "context": {
                        "cluster": CONTEXT_NAME,
                        "user": CONTEXT_NAME,
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": CONTEXT_NAME,
            "preferences": {},
        }
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target


async def serve(
    host: str = "127.0.0.1",
    port: int = 6443,
    crds: Iterable[Mapping[str, Any]] = (),
    kubeconfig_path: str | Path | None = None,
    *,
    watch_history: int = 10000,
    bookmark_interval: float = 60.0,
    announce: Callable[[str], None] | None = print,
    stop: asyncio.Event | None = None,
) -> None:
    """Run an emulator until `stop` is set (or SIGINT/SIGTERM when `stop` is not given)."""
    done = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if stop is None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, done.set)
                installed.append(sig)
    try:
        async with Emulator(
            host,
            port,
            crds,
            watch_history=watch_history,
            bookmark_interval=bookmark_interval,
        ) as emu:
            if kubeconfig_path is not None:
                written = emu.write_kubeconfig(kubeconfig_path)
                if announce is not None:
                    announce(f"kubeconfig written to {written}")
            if announce is not None:
                announce(f"Kubernetes API emulator serving at {emu.url}")
            await done.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_standalone(
    host: str = "127.0.0.1",
    port: int = 6443,
    crds: Iterable[Mapping[str, Any]] = (),
    kubeconfig_path: str | Path | None = None,
    *,
    watch_history: int = 10000,
    bookmark_interval: float = 60.0,
    announce: Callable[[str], None] | None = print,
) -> None:
    """Serve an emulator in the foreground until interrupted (the `kaito emulator` command)."""
    asyncio.run(
        serve(
            host,
            port,
            list(crds),
            kubeconfig_path,
            watch_history=watch_history,
            bookmark_interval=bookmark_interval,
            announce=announce,
        )
    )
