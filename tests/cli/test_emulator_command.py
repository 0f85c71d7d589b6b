"""`kaito emulator` as a user runs it: a process on 127.0.0.1 that kubectl can use."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SEED = Path(__file__).parent.parent / "data" / "seed" / "phi-3-inference.yaml"
KUBECTL = shutil.which("kubectl")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Path]:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaito", "emulator", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        announced = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("kubeconfig: "):
                announced = Path(line.split(": ", 1)[1].strip())
                break
        assert announced == kubeconfig, proc.stderr.read() if proc.stderr else ""
        yield kubeconfig
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def kubectl(kubeconfig: Path, *args: str, timeout: float = 20) -> str:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "KUBECTL_KUBERC": "false"},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_apply_get_watch_delete(emulator: Path) -> None:
    assert "workspace.kaito.sh/workspace-phi-3-mini created" in kubectl(
        emulator, "apply", "--validate=false", "-f", str(SEED)
    )
    table = kubectl(emulator, "get", "workspace").splitlines()
    assert table[0].split() == [
        "NAME",
        "INSTANCE",
        "RESOURCEREADY",
        "INFERENCEREADY",
        "WORKSPACEREADY",
        "AGE",
    ]
    assert table[1].split()[:2] == ["workspace-phi-3-mini", "Standard_NC6s_v3"]
    assert "workspace-phi-3-mini" in kubectl(emulator, "get", "wk", "-o", "name")
    watched = subprocess.run(
        [
            KUBECTL,
            "--kubeconfig",
            str(emulator),
            "get",
            "workspaces",
            "--watch",
            "--request-timeout=2s",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert "workspace-phi-3-mini" in watched.stdout
    assert "deleted" in kubectl(emulator, "delete", "workspace", "workspace-phi-3-mini")
    assert kubectl(emulator, "get", "workspaces", "-o", "name").strip() == ""


def test_emulator_runs_the_simulators(emulator: Path) -> None:
    import asyncio

    from kaito.kube import NODE, NODE_CLAIM, KubeClient

    async def launch() -> list[str]:
        async with await KubeClient.from_kubeconfig(emulator) as client:
            await client.create(
                NODE_CLAIM,
                {
                    "apiVersion": "karpenter.sh/v1",
                    "kind": "NodeClaim",
                    "metadata": {"name": "c1"},
                    "spec": {
                        "nodeClassRef": {
                            "group": "karpenter.azure.com",
                            "kind": "AKSNodeClass",
                            "name": "default",
                        },
                        "requirements": [
                            {
                                "key": "node.kubernetes.io/instance-type",
                                "operator": "In",
                                "values": ["Standard_NC6s_v3"],
                            }
                        ],
                    },
                },
            )
            for _ in range(100):
                nodes = (await client.list(NODE)).items
                if nodes:
                    return [
                        n["metadata"]["labels"]["node.kubernetes.io/instance-type"] for n in nodes
                    ]
                await asyncio.sleep(0.1)
            return []

    assert asyncio.run(launch()) == ["Standard_NC6s_v3"]
