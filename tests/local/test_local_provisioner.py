"""The local provisioner: this machine found (nvidia-smi, probes injectable), described as
NodeFacts (local-cpu with the RAM as one device, or local-gpu), offered as one Ready Node per
workspace, refused for plans it cannot hold, released; and the reconciler sizing a workspace
against it instead of the instance type the workspace names."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kaito.api import Workspace
from kaito.kube import NODE, STATEFUL_SET, WORKSPACE, KubeClient
from kaito.kube.emulated import EmulatedCluster
from kaito.plugins import Registry
from kaito.provisioners import GPU_RESOURCE, NodeDescriber, NodeRequest, ProvisionerContext
from kaito.provisioners.local import (
    CPU_INSTANCE_TYPE,
    GPU_INSTANCE_TYPE,
    LOCAL_NODE_LABEL,
    Gpu,
    LocalProvisioner,
    Machine,
    detect_machine,
    nvidia_smi_gpus,
    parse_nvidia_smi,
    torch_gpus,
)
from kaito.reconcile import ReconcilerSettings, WorkspaceReconciler

pytestmark = pytest.mark.timeout(20)

GIB = 2**30
CPU_MACHINE = Machine(hostname="laptop", cpus=8, memory_bytes=32 * GIB)
A100 = Gpu("NVIDIA A100-SXM4-80GB", 80 * GIB, "8.0")
GPU_MACHINE = Machine(hostname="box", cpus=32, memory_bytes=256 * GIB, gpus=(A100, A100))


def request(**changes: Any) -> NodeRequest:
    fields: dict[str, Any] = {
        "workspace_namespace": "default",
        "workspace_name": "phi",
        "workspace_uid": "uid-1",
        "name": "wsphi",
        "instance_type": "",
        "count": 1,
        "gpus_per_node": 1,
        "disk_gib": 80,
        "labels": {
            "apps": "phi-3",
            "kaito.sh/workspace": "phi",
            "kaito.sh/workspacenamespace": "default",
        },
    }
    fields.update(changes)
    return NodeRequest(**fields)


def local(client: Any, machine: Machine = CPU_MACHINE, **options: str) -> LocalProvisioner:
    return LocalProvisioner(ProvisionerContext(client, options), machine=machine)


# -- detection --------------------------------------------------------------------------------


def test_parses_nvidia_smi_csv_with_and_without_compute_capability() -> None:
    gpus = parse_nvidia_smi("NVIDIA A100-SXM4-80GB, 81920, 8.0\nTesla T4, 15360, [N/A]\n\n")
    assert gpus == [
        Gpu("NVIDIA A100-SXM4-80GB", 81920 * 2**20, "8.0"),
        Gpu("Tesla T4", 15360 * 2**20, "0.0"),
    ]
    with pytest.raises(ValueError, match="unexpected"):
        parse_nvidia_smi("garbage")


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_nvidia_smi_is_run_and_old_drivers_are_asked_again(tmp_path: Path) -> None:
    modern = _script(tmp_path / "smi-new", 'echo "NVIDIA H100 80GB HBM3, 81559, 9.0"\n')
    assert nvidia_smi_gpus(str(modern)) == [Gpu("NVIDIA H100 80GB HBM3", 81559 * 2**20, "9.0")]
    # A driver without compute_cap fails the first query; the second one has no capability.
    old = _script(
        tmp_path / "smi-old",
        'case "$1" in *compute_cap*) echo "Field compute_cap is not a valid field" >&2; exit 2;;'
        ' esac\necho "Tesla V100-SXM2-16GB, 16160"\n',
    )
    assert nvidia_smi_gpus(str(old)) == [Gpu("Tesla V100-SXM2-16GB", 16160 * 2**20, "0.0")]
    broken = _script(tmp_path / "smi-broken", "exit 9\n")
    assert nvidia_smi_gpus(str(broken)) is None
    assert nvidia_smi_gpus(str(tmp_path / "missing")) is None


FAKE_TORCH = """
class _Props:
    name, total_memory, major, minor = "NVIDIA L4", 24 * 2**30, 8, 9

class cuda:
    is_available = staticmethod(lambda: True)
    device_count = staticmethod(lambda: 2)
    get_device_properties = staticmethod(lambda index: _Props())
"""


def test_torch_is_asked_in_a_child_process_where_a_driver_is(tmp_path: Path) -> None:
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "torch.py").write_text(FAKE_TORCH)
    driver = tmp_path / "driver"

    def run_with_fake_torch(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake")}
        return subprocess.run(list(argv), capture_output=True, text=True, env=env, check=False)

    assert torch_gpus(run=run_with_fake_torch, driver=driver) is None  # no driver: not asked
    driver.mkdir()
    l4 = Gpu("NVIDIA L4", 24 * GIB, "8.9")
    assert torch_gpus(run=run_with_fake_torch, driver=driver) == [l4, l4]

    def failing(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 1, "", "no CUDA runtime")

    assert torch_gpus(run=failing, driver=driver) is None


def test_detect_machine_takes_the_first_conclusive_probe() -> None:
    calls: list[str] = []

    def unsure() -> None:
        calls.append("unsure")

    def two_gpus() -> list[Gpu]:
        calls.append("gpus")
        return [A100, A100]

    def never() -> list[Gpu]:
        raise AssertionError("probes after a conclusive one are not run")

    machine = detect_machine([unsure, two_gpus, never], hostname="h", cpus=4, memory_bytes=GIB)
    assert calls == ["unsure", "gpus"]
    assert machine == Machine("h", 4, GIB, (A100, A100))
    assert machine.instance_type == GPU_INSTANCE_TYPE
    cpu = detect_machine([lambda: None, lambda: []])
    assert cpu.gpus == ()
    assert cpu.instance_type == CPU_INSTANCE_TYPE
    assert cpu.cpus >= 1
    assert cpu.memory_bytes > 0
    assert cpu.hostname


def test_cpu_and_gpu_machines_describe_themselves_for_the_planner() -> None:
    cpu = CPU_MACHINE.facts(nodes=("n",))
    assert (cpu.instance_type, cpu.gpu_product, cpu.gpu_count) == ("local-cpu", "cpu", 1)
    assert cpu.gpu_memory_bytes == 32 * GIB
    sku = cpu.sku()
    assert sku is not None
    assert sku.name == "local-cpu"
    assert sku.gpu_count == 1
    assert not sku.supports_bfloat16  # bfloat16 presets run as float16 on a CPU node
    gpu = GPU_MACHINE.facts().sku()
    assert gpu is not None
    assert (gpu.name, gpu.gpu_count, gpu.gpu_memory_bytes) == ("local-gpu", 2, 80 * GIB)
    assert gpu.compute_capability == "8.0"
    assert CPU_MACHINE.summary() == "8 CPUs, 32.0 GiB memory, no GPU"
    assert "2 GPU(s): NVIDIA A100-SXM4-80GB (80 GiB each)" in GPU_MACHINE.summary()


# -- the provisioner against the emulator -----------------------------------------------------


async def test_offers_this_cpu_machine_as_a_ready_node(cluster: EmulatedCluster) -> None:
    client = cluster.client
    provisioner = local(client)
    assert isinstance(provisioner, NodeDescriber)
    facts = await provisioner.describe_nodes(request(instance_type="Standard_NC6s_v3"))
    assert facts.instance_type == "local-cpu"

    status = await provisioner.provision(request())
    assert status.ready, status
    assert status.message == "1 of 1 nodes ready (this machine: local-cpu)"
    (node,) = (await client.list(NODE)).items
    assert status.nodes == (node["metadata"]["name"],)
    labels = node["metadata"]["labels"]
    assert labels["apps"] == "phi-3"
    assert labels["kaito.sh/workspace"] == "phi"
    assert labels["node.kubernetes.io/instance-type"] == "local-cpu"
    assert labels[LOCAL_NODE_LABEL] == "laptop"
    assert GPU_RESOURCE not in node["status"]["allocatable"]
    assert node["status"]["allocatable"]["memory"] == f"{32 * GIB // 1024}Ki"

    again = await provisioner.provision(request())
    assert again == status
    assert len((await client.list(NODE)).items) == 1
    assert await provisioner.release(request())
    assert (await client.list(NODE)).items == []


async def test_gpu_machine_offers_its_gpus_and_refuses_more(cluster: EmulatedCluster) -> None:
    client = cluster.client
    status = await local(client, GPU_MACHINE).provision(request(gpus_per_node=2))
    assert status.ready
    (node,) = (await client.list(NODE)).items
    assert node["status"]["allocatable"][GPU_RESOURCE] == "2"
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert node["metadata"]["labels"]["nvidia.com/gpu.compute.major"] == "8"

    too_many = await local(client, GPU_MACHINE).provision(request(gpus_per_node=4))
    assert (too_many.ready, too_many.failed, too_many.reason) == (False, True, "InsufficientGPUs")
    # gpus=none runs the same machine as a CPU node.
    cpu_only = local(client, GPU_MACHINE, gpus="none")
    assert cpu_only.machine.instance_type == "local-cpu"


async def test_one_machine_is_one_node(cluster: EmulatedCluster) -> None:
    status = await local(cluster.client).provision(request(count=2))
    assert (status.ready, status.failed, status.reason) == (False, True, "LocalMachineOnly")
    assert "the local mode has one" in status.message
    assert (await cluster.client.list(NODE)).items == []


async def test_a_changed_node_is_repaired(cluster: EmulatedCluster) -> None:
    client = cluster.client
    provisioner = local(client)
    status = await provisioner.provision(request())
    name = status.nodes[0]
    await client.patch_status(
        NODE, name, {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    )
    await client.patch(NODE, name, {"metadata": {"labels": {"apps": "other"}}})
    assert (await provisioner.provision(request())).ready
    node = await client.get(NODE, name)
    assert node["metadata"]["labels"]["apps"] == "phi-3"


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="gpus"):
        local(None, gpus="some")
    with pytest.raises(ValueError, match="unknown option"):
        local(None, memory="1Gi")


async def test_the_reconciler_sizes_a_workspace_for_this_machine(
    cluster: EmulatedCluster, registry: Registry
) -> None:
    client: KubeClient = cluster.client
    document = {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "phi", "namespace": "default"},
        "resource": {"labelSelector": {"matchLabels": {"apps": "phi-3"}}},
        "inference": {"preset": {"name": "tiny-phi-3-random"}},
    }
    await client.create(WORKSPACE, Workspace.from_dict(document).to_dict())
    reconciler = WorkspaceReconciler(
        client,
        provisioner=local(client),
        registry=registry,
        settings=ReconcilerSettings(
            auto_provisioning=False, model_sources={"tiny-phi-3-random": "/models/tiny"}
        ),
    )
    for _ in range(3):
        await reconciler.reconcile("default/phi")
    stored = await client.get(WORKSPACE, "phi", namespace="default")
    ready = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert ready["ResourceReady"] == "True"
    sts = await client.get(STATEFUL_SET, "phi", namespace="default")
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "/models/tiny"
    assert args[args.index("--dtype") + 1] == "float32"
    assert args[args.index("--max-model-len") + 1] == "4096"
