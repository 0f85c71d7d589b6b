"""The real kubectl against the emulator: apply, get (tables, YAML), watch, scale, delete.

kubectl runs as a subprocess; the emulator serves it from this test's event loop, so kubectl is
always awaited asynchronously and bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import pytest
import yaml

from kaito.kube.emulator import Emulator

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")

MANIFESTS = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx
---
apiVersion: test.kaito.sh/v1
kind: Gadget
metadata:
  name: g1
spec:
  size: 4
"""


async def kubectl(kubeconfig: Path, *args: str, limit: float = 20.0) -> tuple[int, str, str]:
    assert KUBECTL is not None
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(kubeconfig),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def kubeconfig(emu: Emulator, tmp_path: Path) -> Path:
    return emu.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "manifests.yaml"
    path.write_text(MANIFESTS)
    return path


async def test_kubectl_reaches_the_emulator(kubeconfig: Path) -> None:
    code, out, err = await kubectl(kubeconfig, "version", "-o", "json")
    assert code == 0, err
    assert '"serverVersion"' in out


async def test_apply_get_and_apply_again(emu: Emulator, kubeconfig: Path, manifests: Path) -> None:
    code, out, err = await kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifests))
    assert code == 0, err
    assert "configmap/settings created" in out
    assert "deployment.apps/web created" in out
    assert "gadget.test.kaito.sh/g1 created" in out
    assert emu.store.read("gadgets", "default", "g1")["spec"]["limit"] == 10
    code, out, err = await kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifests))
    assert code == 0, err
    assert "configmap/settings unchanged" in out
    assert "gadget.test.kaito.sh/g1 unchanged" in out


async def test_get_prints_server_side_columns(emu: Emulator, kubeconfig: Path) -> None:
    emu.store.create(
        "gadgets",
        {
            "apiVersion": "test.kaito.sh/v1",
            "kind": "Gadget",
            "metadata": {"name": "g1"},
            "spec": {"size": 7},
        },
    )
    code, out, err = await kubectl(kubeconfig, "get", "gadgets")
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split() == ["NAME", "SIZE", "READY", "AGE"]
    assert row.split()[:2] == ["g1", "7"]
    code, out, err = await kubectl(kubeconfig, "get", "gd", "g1", "-o", "yaml")
    assert code == 0, err
    assert yaml.safe_load(out)["spec"] == {"size": 7, "limit": 10}
    code, out, err = await kubectl(kubeconfig, "get", "namespaces")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]


async def test_server_side_apply_and_conflict(
    emu: Emulator, kubeconfig: Path, manifests: Path
) -> None:
    code, out, err = await kubectl(
        kubeconfig, "apply", "--server-side", "--validate=false", "-f", str(manifests)
    )
    assert code == 0, err
    assert "serverside-applied" in out
    managers = [
        e["manager"]
        for e in emu.store.read("deployments", "default", "web")["metadata"]["managedFields"]
    ]
    assert managers == ["kubectl"]
    emu.store.patch(
        "deployments", "default", "web", {"spec": {"replicas": 4}}, field_manager="autoscaler"
    )
    code, out, err = await kubectl(
        kubeconfig, "apply", "--server-side", "--validate=false", "-f", str(manifests)
    )
    assert code != 0
    assert "conflict" in err.lower()
    assert ".spec.replicas" in err


async def test_scale_and_delete(emu: Emulator, kubeconfig: Path, manifests: Path) -> None:
    await kubectl(kubeconfig, "apply", "--validate=false", "-f", str(manifests))
    code, out, err = await kubectl(kubeconfig, "scale", "deployment/web", "--replicas=3")
    assert code == 0, err
    assert emu.store.read("deployments", "default", "web")["spec"]["replicas"] == 3
    code, out, err = await kubectl(kubeconfig, "delete", "-f", str(manifests))
    assert code == 0, err
    assert 'gadget.test.kaito.sh "g1" deleted' in out
    assert emu.store.objects("gadgets") == []
    assert emu.store.objects("deployments") == []


async def test_get_watch_streams_changes(emu: Emulator, kubeconfig: Path) -> None:
    assert KUBECTL is not None
    emu.store.create("configmaps", {"metadata": {"name": "early"}, "data": {"a": "1"}})
    proc = await asyncio.create_subprocess_exec(
        KUBECTL,
        "--kubeconfig",
        str(kubeconfig),
        "get",
        "configmaps",
        "-w",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        header = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert header.split() == ["NAME", "DATA", "AGE"]
        first = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert first.split()[:2] == ["early", "1"]
        emu.store.create("configmaps", {"metadata": {"name": "late"}, "data": {"a": "1"}})
        emu.store.delete("configmaps", "default", "early")
        seen = [(await asyncio.wait_for(proc.stdout.readline(), 10)).decode() for _ in range(2)]
        assert [line.split()[0] for line in seen] == ["late", "early"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def test_kubectl_sees_errors_as_status(kubeconfig: Path) -> None:
    code, _out, err = await kubectl(kubeconfig, "get", "configmap", "ghost")
    assert code != 0
    assert 'configmaps "ghost" not found' in err
