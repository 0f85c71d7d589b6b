"""Helpers of the local-mode tests: the stub server's pods and workspaces, local nodes, and
bounded waits that say what they last saw."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kaito.provisioners.local import LOCAL_NODE_LABEL

STUB = str(Path(__file__).with_name("stub_server.py"))
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    *,
    limit: float = 10.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Poll `probe` until it returns something truthy; TimeoutError names `what`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    last: Any = None
    while True:
        result = probe()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result
        last = result
        if result:
            return result
        if loop.time() >= deadline:
            raise TimeoutError(f"{what} did not hold within {limit}s (last: {last!r})")
        await asyncio.sleep(interval)


def stub_container(
    *,
    name: str = "server",
    args: Sequence[str] = (),
    probe_period: int = 1,
    readiness: bool = True,
    liveness: Mapping[str, Any] | None = None,
    env: Sequence[Mapping[str, Any]] = (),
    mounts: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": "example.com/stub:1",
        "command": ["python", STUB],
        "args": ["--port", "5000", *args],
        "ports": [{"name": "http", "containerPort": 5000, "protocol": "TCP"}],
    }
    if readiness:
        container["readinessProbe"] = {
            "httpGet": {"path": "/health", "port": "http"},
            "periodSeconds": probe_period,
        }
    if liveness is not None:
        container["livenessProbe"] = dict(liveness)
    if env:
        container["env"] = [dict(e) for e in env]
    if mounts:
        container["volumeMounts"] = [dict(m) for m in mounts]
    return container


def stub_pod(
    name: str,
    *,
    containers: Sequence[Mapping[str, Any]] | None = None,
    labels: Mapping[str, str] | None = None,
    node_selector: Mapping[str, str] | None = None,
    volumes: Sequence[Mapping[str, Any]] = (),
    init_containers: Sequence[Mapping[str, Any]] = (),
    restart_policy: str = "Always",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [dict(c) for c in containers or [stub_container()]],
        "restartPolicy": restart_policy,
        "terminationGracePeriodSeconds": 2,
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if volumes:
        spec["volumes"] = [dict(v) for v in volumes]
    if init_containers:
        spec["initContainers"] = [dict(c) for c in init_containers]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": dict(labels or {})},
        "spec": spec,
    }


def local_node(name: str = "local-0", labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {LOCAL_NODE_LABEL: "test", "kubernetes.io/hostname": name, **(labels or {})},
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def stub_workspace(name: str = "stub", *, args: Sequence[str] = ()) -> dict[str, Any]:
    """A template workspace whose pod is the stub server (seconds, not a model)."""
    return {
        "apiVersion": "kaito.sh/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": name}},
        },
        "inference": {
            "template": {"spec": {"containers": [stub_container(args=args)]}},
        },
    }


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return cond  # type: ignore[no-any-return]
    return None


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


PYTHON = sys.executable


def env_for(home: Path, cache: Path) -> dict[str, str]:
    """The environment of a test's kaito processes: its own KAITO_HOME and the model cache."""
    env = dict(os.environ)
    env["KAITO_HOME"] = str(home)
    env["KAITO_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def kaito(env: dict[str, str], *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m kaito ARGV` as a user would, in the project directory."""
    return subprocess.run(
        [sys.executable, "-m", "kaito", *argv],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def post(url: str, body: dict[str, Any]) -> Any:
    """POST `body` as JSON; the decoded JSON answer."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)
