"""A pod's container as a local process (pure): mount paths become host paths wherever they
appear, container ports become per-pod ports on 127.0.0.1 (flags or PORT variables), `0.0.0.0`
becomes loopback, `python` is this interpreter, the environment resolves (values, $(VAR),
fieldRef, ConfigMap and Secret keys), probes point at the host port, and what cannot run here
is reported with a kubelet's reason."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest

from kaito.local import CannotRun, local_process
from kaito.local._containers import (
    container_ports,
    expand,
    needs_image_files,
    rewrite_paths,
    volume_files,
)

PY = "/opt/python/bin/python3.11"
POD: dict[str, Any] = {
    "metadata": {
        "name": "ws-0",
        "namespace": "team",
        "uid": "u1",
        "labels": {"apps.kubernetes.io/pod-index": "0"},
    },
    "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "img:1"}]},
}


def hf_container(**changes: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "inference",
        "image": "img:1",
        "command": ["python", "-m", "kaito.runtimes.hf"],
        "args": [
            "--model",
            "/models/phi",
            "--host",
            "0.0.0.0",
            "--port",
            "5000",
            "--adapters-dir",
            "/mnt/adapter",
            "--config",
            "/mnt/config/inference_config.yaml",
        ],
        "ports": [{"name": "http", "containerPort": 5000}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": 5000}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "failureThreshold": 5},
        "startupProbe": {"tcpSocket": {"port": 5000}, "periodSeconds": 2},
        "volumeMounts": [
            {"name": "config", "mountPath": "/mnt/config"},
            {"name": "adapters", "mountPath": "/mnt/adapter"},
        ],
    }
    container.update(changes)
    return container


VOLUMES = {"config": Path("/state/pod/config"), "adapters": Path("/state/pod/adapters")}


def plan(container: dict[str, Any], **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "volumes": VOLUMES,
        "ports": {5000: 43111},
        "python": PY,
        "base_env": {"PATH": "/usr/bin:/bin"},
    }
    options.update(kwargs)
    return local_process(POD, container, **options)


def test_the_hf_server_container_becomes_a_local_process() -> None:
    process = plan(hf_container())
    assert process.argv == (
        PY, "-m", "kaito.runtimes.hf",
        "--model", "/models/phi",
        "--host", "127.0.0.1",
        "--port", "43111",
        "--adapters-dir", "/state/pod/adapters",
        "--config", "/state/pod/config/inference_config.yaml",
    )  # fmt: skip
    assert process.ports == {5000: 43111}
    assert process.readiness.url == "http://127.0.0.1:43111/health"
    assert process.readiness.period == 10
    assert process.liveness.port == 43111  # the named port "http"
    assert process.liveness.failure_threshold == 5
    assert (process.startup.kind, process.startup.port) == ("tcp", 43111)
    assert process.env["HOSTNAME"] == "ws-0"
    assert "PORT" not in process.env  # the --port flag carries it
    assert process.env["PATH"] == "/usr/bin:/bin"


def test_ports_and_hosts_in_other_spellings() -> None:
    container = {
        "name": "c",
        "image": "i",
        "command": ["python3", "server.py", "--port=5000", "--hostname=0.0.0.0"],
        "ports": [{"containerPort": 5000}, {"containerPort": 29500}],
    }
    process = plan(container, ports={5000: 40001, 29500: 40002})
    assert process.argv[2:] == ("--port=40001", "--hostname=127.0.0.1")
    # Without a flag the port arrives in the environment; a *PORT variable is translated.
    plain = {"name": "c", "image": "i", "command": ["python", "s.py"]}
    plain["ports"] = [{"containerPort": 5000}]
    assert plan(plain).env["PORT"] == plan(plain).env["KAITO_PORT"] == "43111"
    assert plan(plain).env["KAITO_HOST"] == "127.0.0.1"
    own = dict(plain, env=[{"name": "SERVER_PORT", "value": "5000"}])
    assert plan(own).env["SERVER_PORT"] == "43111"
    assert "PORT" not in plan(own).env
    assert container_ports(hf_container()) == [5000]
    assert container_ports({"args": ["--port", "7000"]}) == [7000]


def test_mount_paths_are_rewritten_only_where_they_are_paths() -> None:
    mounts = {"/mnt/adapter": "/h/a", "/mnt/adapter/extra": "/h/e", "/mnt/config": "/h/c"}
    script = "mkdir -p '/mnt/adapter/x' && cp -r /data/. /mnt/adapter/x/ && ls /mnt/adapters"
    assert rewrite_paths(script, mounts) == (
        "mkdir -p '/h/a/x' && cp -r /data/. /h/a/x/ && ls /mnt/adapters"
    )
    assert rewrite_paths("/mnt/adapter/extra/f", mounts) == "/h/e/f"
    assert rewrite_paths("--config=/mnt/config", mounts) == "--config=/h/c"
    assert rewrite_paths("/x/mnt/config", mounts) == "/x/mnt/config"
    # Default mounts stand in for paths the container uses without a volume.
    bare = hf_container(volumeMounts=[{"name": "config", "mountPath": "/mnt/config"}])
    process = plan(bare, default_mounts={"/mnt/adapter": Path("/state/pod/default-adapters")})
    assert process.argv[process.argv.index("--adapters-dir") + 1] == "/state/pod/default-adapters"


def test_environment_resolution() -> None:
    refs = {
        ("configmap", "settings"): {"LEVEL": "debug", "MODE": "fast"},
        ("secret", "token"): {"value": base64.b64encode(b"s3cret").decode()},
    }
    container = {
        "name": "c",
        "image": "i",
        "command": ["python", "-c", "pass", "$(GREETING)", "$$(GREETING)", "$(UNKNOWN)"],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "env": [
            {"name": "NAME", "value": "world"},
            {"name": "GREETING", "value": "hello $(NAME)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "INDEX",
                "valueFrom": {
                    "fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}
                },
            },
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {
                "name": "TOKEN",
                "valueFrom": {"secretKeyRef": {"name": "token", "key": "value"}},
            },
            {
                "name": "LEVEL",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}},
            },
            {
                "name": "OPTIONAL",
                "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "x", "optional": True}},
            },
        ],
    }
    process = plan(container, refs=refs)
    env = process.env
    assert env["CFG_MODE"] == "fast"
    assert env["GREETING"] == "hello world"
    assert (env["POD"], env["INDEX"], env["NODE"], env["IP"]) == (
        "ws-0",
        "0",
        "node-a",
        "127.0.0.1",
    )
    assert (env["TOKEN"], env["LEVEL"]) == ("s3cret", "debug")
    assert "OPTIONAL" not in env
    assert process.argv[3:] == ("hello world", "$(GREETING)", "$(UNKNOWN)")
    assert expand("$$$(A)", {"A": "x"}) == "$x"

    missing = dict(container, env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "no"}}}])
    with pytest.raises(CannotRun) as info:
        plan(missing, refs=refs)
    assert info.value.reason == "CreateContainerConfigError"
    odd = dict(container, env=[{"name": "X", "valueFrom": {"resourceFieldRef": {}}}])
    with pytest.raises(CannotRun, match="resourceFieldRef is not supported"):
        plan(odd, refs=refs)


def test_what_cannot_run_here_is_reported_with_a_kubelet_reason() -> None:
    with pytest.raises(CannotRun) as info:
        plan({"name": "c", "image": "nginx:1"})
    assert info.value.reason == "CreateContainerError"
    assert "entrypoint of image nginx:1" in info.value.message
    with pytest.raises(CannotRun, match="'no-such-program-here' of container c is not on"):
        plan({"name": "c", "image": "i", "command": ["no-such-program-here"]})
    with pytest.raises(CannotRun, match="volume cache is not available"):
        plan(hf_container(volumeMounts=[{"name": "cache", "mountPath": "/cache"}]))
    found = plan({"name": "c", "image": "i", "command": ["sh", "-c", "true"]})
    assert Path(found.argv[0]).name == "sh"
    assert plan({"name": "c", "image": "i", "command": [sys.executable]}).argv[0] == sys.executable


def test_volume_files_and_image_copiers() -> None:
    refs = {
        ("configmap", "cfg"): {"a.yaml": "x: 1", "b": "2"},
        ("secret", "s"): {"k": base64.b64encode(b"v").decode()},
    }
    assert volume_files({"name": "v", "configMap": {"name": "cfg"}}, refs) == {
        "a.yaml": b"x: 1",
        "b": b"2",
    }
    items = {"name": "v", "configMap": {"name": "cfg", "items": [{"key": "b", "path": "d/b.txt"}]}}
    assert volume_files(items, refs) == {"d/b.txt": b"2"}
    assert volume_files({"name": "v", "secret": {"secretName": "s"}}, refs) == {"k": b"v"}
    assert volume_files({"name": "v", "emptyDir": {}}, refs) == {}
    assert volume_files({"name": "v", "hostPath": {"path": "/data"}}, refs) is None
    assert volume_files({"name": "v", "configMap": {"name": "no", "optional": True}}, refs) == {}
    with pytest.raises(CannotRun, match="ConfigMap no of volume v not found"):
        volume_files({"name": "v", "configMap": {"name": "no"}}, refs)

    pod = {"spec": {"containers": [{"name": "main", "image": "kaito-base:1"}]}}
    assert needs_image_files(pod, {"name": "adapter-x", "image": "acr.io/adapter:1"})
    assert not needs_image_files(pod, {"name": "prep", "image": "kaito-base:1"})
