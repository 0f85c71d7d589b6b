"""The operator's HTTP endpoints: `/healthz`, `/readyz` and `/metrics`, on aiohttp.

Kubernetes probes and Prometheus scrape over plain HTTP, usually on two ports (health for the
kubelet, metrics for the monitoring stack). When both addresses are the same, one listener
serves all three paths.

- `/healthz` (liveness) answers 200 while the operator's main loop runs, and 500 once it has
  failed, so the kubelet restarts a wedged process.
- `/readyz` (readiness) answers 200 when this replica is where it should be: the leader with
  every watch synced, or a follower standing by for the lease (a follower is ready: it is
  healthy and waiting is its job, and marking it unready would only make a rollout of the
  Deployment hang). 503 while the leader is still loading its caches or while shutting down.
- `/metrics`: the Prometheus text format of the operator's own registry.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from kaito.operator._metrics import OperatorMetrics


def parse_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT` for all interfaces; `[::1]:PORT` for IPv6) as (host, port)."""
    host, sep, port_text = address.rpartition(":")
    if not sep:
        raise ValueError(f"address {address!r} must be HOST:PORT")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"address {address!r} has no valid port") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"address {address!r} has no valid port")
    host = host.strip("[]") or "0.0.0.0"
    return host, port


class ProbeServer:
    """Serves health, readiness and metrics on one or two listening sockets."""

    def __init__(
        self,
        *,
        metrics: OperatorMetrics,
        healthy: Callable[[], bool],
        ready: Callable[[], tuple[bool, str]],
        metrics_address: str,
        health_address: str,
    ) -> None:
        self._metrics = metrics
        self._healthy = healthy
        self._ready = ready
        self._addresses = {
            "metrics": parse_address(metrics_address),
            "health": parse_address(health_address),
        }
        self._runners: list[web.AppRunner] = []
        self.bound: dict[str, tuple[str, int]] = {}
        """The (host, port) each role listens on once started (port 0 resolved)."""

    def _app(self, roles: set[str]) -> web.Application:
        app = web.Application()
        if "health" in roles:
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
        if "metrics" in roles:
            app.router.add_get("/metrics", self._metrics_handler)
        return app

    async def start(self) -> None:
        """Listen on the addresses (one socket when metrics and health share one)."""
        listeners: list[tuple[str, int, set[str]]] = []
        for role, (host, port) in self._addresses.items():
            shared = next(
                (x for x in listeners if port != 0 and (x[0], x[1]) == (host, port)), None
            )
            if shared is not None:
                shared[2].add(role)
            else:
                listeners.append((host, port, {role}))
        try:
            for host, port, roles in listeners:
                sock = _listen(host, port)
                runner = web.AppRunner(
                    self._app(roles), access_log=None, handle_signals=False, shutdown_timeout=1.0
                )
                await runner.setup()
                self._runners.append(runner)
                await web.SockSite(runner, sock).start()
                bound_port = int(sock.getsockname()[1])
                for role in roles:
                    self.bound[role] = (host, bound_port)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    def url(self, role: str) -> str:
        """`http://host:port` of the "metrics" or "health" listener."""
        host, port = self.bound[role]
        shown = "127.0.0.1" if host == "0.0.0.0" else (f"[{host}]" if ":" in host else host)
        return f"http://{shown}:{port}"

    async def _healthz(self, request: web.Request) -> web.Response:
        if self._healthy():
            return web.Response(text="ok\n")
        return web.Response(status=500, text="the operator loop has stopped\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, why = self._ready()
        return web.Response(status=200 if ready else 503, text=why + "\n")

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
