"""`kaito operator run` as a real process against the emulator, stopped with SIGTERM.

The test starts an emulator, writes a kubeconfig for it and runs the command line exactly as a
Deployment would (settings partly from flags, partly from `KAITO_*` variables). Plugins come
through entry points as in production: the built-in `fake` provisioner and `hf` runtime once
the installed distribution declares them, and until then from a small distribution this test
puts on the path (which is how any third-party plugin registers).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from operator_support import wait_until, workspace

from kaito.kube.emulator import Emulator
from kaito.reconcile import FINALIZER

pytestmark = pytest.mark.timeout(40)

REPO = Path(__file__).resolve().parents[2]

PLUGINS = {
    ("kaito.provisioners", "fake"): "kaito.provisioners.fake:FakeProvisioner",
    ("kaito.runtimes", "hf"): "kaito.runtimes.hf._runtime:HuggingFaceRuntime",
}


def plugin_path(tmp_path: Path) -> Path:
    """A directory holding a distribution that declares the plugins not installed yet."""
    missing: dict[str, list[str]] = {}
    for (group, name), target in PLUGINS.items():
        if not metadata.entry_points(group=group, name=name):
            missing.setdefault(group, []).append(f"{name} = {target}")
    root = tmp_path / "plugins"
    info = root / "kaito_operator_test_plugins-0.0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: kaito-operator-test-plugins\nVersion: 0.0.0\n"
    )
    sections = [f"[{group}]\n" + "\n".join(lines) + "\n" for group, lines in missing.items()]
    (info / "entry_points.txt").write_text("\n".join(sections))
    return root


class Process:
    """The operator process, its log lines (JSON) collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode().rstrip()
            self.raw.append(text)
            try:
                self.lines.append(json.loads(text))
            except ValueError:
                continue

    def logged(self, msg: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.lines
            if e.get("msg") == msg and all(e.get(k) == v for k, v in fields.items())
        ]

    async def finish(self) -> int:
        """Wait (at most 15 s) for the process to exit and its output to be read."""
        code = await asyncio.wait_for(self.proc.wait(), 15)
        await asyncio.wait_for(self._reader, 15)
        return code


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_operator_run_reconciles_and_shuts_down_cleanly_on_sigterm(
    emu: Emulator, kubeconfig: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin_path(tmp_path)), str(REPO)]),
        "KAITO_LOG_FORMAT": "json",
        "KAITO_LEASE_NAMESPACE": "kaito-system",
        "KAITO_IDENTITY": "replica-1",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kaito",
        "operator",
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--provisioner",
        "fake",
        "--provisioner-option",
        "cpu=4",
        "--metrics-addr",
        "127.0.0.1:0",
        "--health-addr",
        "127.0.0.1:0",
        "--lease-duration",
        "4",
        "--renew-deadline",
        "3",
        "--retry-period",
        "0.2",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    process = Process(proc)
    try:
        await wait_until(
            lambda: bool(process.logged("operator started")) or proc.returncode is not None,
            within=20,
            what="the operator to start",
        )
        assert proc.returncode is None, "\n".join(process.raw)
        (started,) = process.logged("operator started")
        assert started["identity"] == "replica-1"
        health, metrics_url = started["health"], started["metrics"] + "/metrics"

        await wait_until(lambda: bool(process.logged("acquired the lease")), within=10)
        lease = emu.store.get("leases", "kaito-system", "kaito-workspace-controller")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "replica-1"

        emu.store.seed([workspace("phi")])
        await wait_until(
            lambda: bool(process.logged("reconciled", key="default/phi")),
            within=10,
            what="a reconcile of the workspace",
        )

        def finalizers() -> list[str]:
            ws = emu.store.get("workspaces", "default", "phi") or {}
            return list((ws.get("metadata") or {}).get("finalizers") or [])

        await wait_until(lambda: FINALIZER in finalizers(), what="the reconciler's finalizer")
        nodes = emu.store.list("nodes", label_selector="kaito.sh/workspace=phi").items
        assert len(nodes) == 1, "the fake provisioner made the node"
        assert nodes[0]["status"]["capacity"]["cpu"] == "4", "--provisioner-option reached it"

        assert await fetch(health + "/healthz") == (200, "ok\n")
        status, _ = await fetch(health + "/readyz")
        assert status == 200
        status, text = await fetch(metrics_url)
        assert status == 200
        assert 'kaito_reconcile_total{result="success"}' in text
        assert "kaito_leader 1.0" in text

        proc.send_signal(signal.SIGTERM)
        code = await process.finish()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, "\n".join(process.raw)
    assert process.logged("shutting down", signal="SIGTERM")
    assert process.logged("released the lease", identity="replica-1")
    lease = emu.store.get("leases", "kaito-system", "kaito-workspace-controller")
    assert lease is not None
    assert "holderIdentity" not in lease["spec"]
    assert lease["spec"]["leaseDurationSeconds"] == 1


async def test_operator_run_fails_fast_on_a_missing_plugin(kubeconfig: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kaito",
        "operator",
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--provisioner",
        "karpentr",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    message = err.decode()
    assert "no provisioner named 'karpentr' is installed" in message
    assert "did you mean 'karpenter'?" in message
