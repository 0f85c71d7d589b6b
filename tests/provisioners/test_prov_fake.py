"""The fake provisioner against the emulator: Nodes created Ready at once with the SKU's GPUs,
the workspace labels and the GPU taint; idempotent passes; surplus deletion; repair of a node
without status; release; options; and that the nodes it makes satisfy the byo provisioner too."""

from __future__ import annotations

from typing import Any

import pytest
from prov_support import request, ws_labels

from kaito.kube import NODE, KubeClient, PatchType
from kaito.presets import load_skus
from kaito.provisioners import ProvisionerContext
from kaito.provisioners.byo import BYOProvisioner
from kaito.provisioners.fake import FakeProvisioner, node_name

pytestmark = pytest.mark.timeout(20)


def fake(client: Any, **options: str) -> FakeProvisioner:
    return FakeProvisioner(ProvisionerContext(client=client, options=options))


async def nodes(client: KubeClient) -> dict[str, dict[str, Any]]:
    return {n["metadata"]["name"]: n for n in (await client.list(NODE)).items}


async def test_provisions_ready_gpu_nodes_at_once(client: KubeClient) -> None:
    req = request(
        instance_type="Standard_NC24ads_A100_v4", count=2, disk_gib=200, labels={"apps": "x"}
    )
    status = await fake(client).provision(req)
    names = (node_name("default", "phi", 0), node_name("default", "phi", 1))
    assert status.ready
    assert status.nodes == names
    assert status.message == "2 of 2 nodes ready"
    assert status.node_claims_ready is None

    stored = await nodes(client)
    assert tuple(sorted(stored)) == names
    node = stored[names[0]]
    labels = node["metadata"]["labels"]
    assert labels["node.kubernetes.io/instance-type"] == "Standard_NC24ads_A100_v4"
    assert {k: labels[k] for k in ws_labels()} == ws_labels()
    assert labels["apps"] == "x"
    assert labels["kubernetes.io/hostname"] == names[0]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100"
    assert labels["nvidia.com/gpu.memory"] == str(80 * 1024)
    assert node["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    status_ = node["status"]
    assert status_["allocatable"] == {
        "cpu": "24",
        "memory": "192Gi",
        "pods": "110",
        "ephemeral-storage": "200Gi",
        "nvidia.com/gpu": "1",
    }
    assert status_["capacity"] == status_["allocatable"]
    assert [c["type"] for c in status_["conditions"] if c["status"] == "True"] == ["Ready"]


async def test_a_second_pass_writes_nothing(client: KubeClient) -> None:
    prov = fake(client)
    req = request(count=2)
    await prov.provision(req)
    writes = client.requests.writes
    again = await prov.provision(req)
    assert again.ready
    assert client.requests.writes == writes


async def test_a_lowered_count_deletes_surplus_nodes(client: KubeClient) -> None:
    prov = fake(client)
    await prov.provision(request(count=3))
    status = await prov.provision(request(count=1))
    assert status.ready
    assert sorted(await nodes(client)) == [node_name("default", "phi", 0)]


async def test_a_node_that_lost_its_status_is_repaired(client: KubeClient) -> None:
    prov = fake(client)
    await prov.provision(request())
    name = node_name("default", "phi", 0)
    await client.patch_status(
        NODE,
        name,
        {"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}},
        patch_type=PatchType.MERGE,
    )
    status = await prov.provision(request())
    assert status.ready
    assert (await nodes(client))[name]["status"]["conditions"][0]["status"] == "True"


async def test_release_deletes_the_nodes(client: KubeClient) -> None:
    prov = fake(client)
    await prov.provision(request(count=2))
    await prov.provision(request(name="other"))
    assert await prov.release(request(count=2)) is True
    assert sorted(await nodes(client)) == [node_name("default", "other", 0)]
    assert await prov.release(request(count=2)) is True


async def test_release_waits_for_a_finalizer(client: KubeClient) -> None:
    prov = fake(client)
    await prov.provision(request())
    name = node_name("default", "phi", 0)
    await client.patch(NODE, name, {"metadata": {"finalizers": ["example.com/hold"]}})
    assert await prov.release(request()) is False
    status = await prov.provision(request())
    assert not status.ready
    assert status.reason == "WaitingForNodes"
    await client.patch(NODE, name, {"metadata": {"finalizers": None}})
    assert await prov.release(request()) is True


async def test_an_unknown_instance_type_is_a_failure(client: KubeClient) -> None:
    status = await fake(client).provision(request(instance_type="Standard_Imaginary"))
    assert status.failed
    assert status.reason == "UnknownInstanceType"
    assert "Standard_Imaginary" in status.message
    assert client.requests.writes == 0


async def test_a_plan_wanting_more_gpus_than_the_sku_has_is_a_failure(client: KubeClient) -> None:
    status = await fake(client).provision(
        request(instance_type="Standard_NC6s_v3", gpus_per_node=2)
    )
    assert status.failed
    assert status.reason == "InsufficientGPUs"


async def test_options_and_a_custom_catalog(client: KubeClient) -> None:
    catalog = load_skus(
        "skus:\n  - {name: lab-box, cloud: lab, gpu_model: NVIDIA L4, gpu_count: 4, "
        "gpu_memory: 24Gi, compute_capability: '8.9'}\n"
    )
    prov = FakeProvisioner(
        ProvisionerContext(client=client, options={"memory": "64Gi", "pods": "30"}), skus=catalog
    )
    status = await prov.provision(request(instance_type="lab-box", gpus_per_node=4))
    assert status.ready
    (node,) = (await nodes(client)).values()
    assert node["status"]["allocatable"]["memory"] == "64Gi"
    assert node["status"]["allocatable"]["pods"] == "30"
    assert node["status"]["allocatable"]["cpu"] == "8"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert fake(client, cpu="3").cpu == 3

    with pytest.raises(ValueError, match=r"unknown option.*gpus"):
        fake(client, gpus="2")
    with pytest.raises(ValueError, match="pods"):
        fake(client, pods="many")
    with pytest.raises(ValueError, match="memory"):
        fake(client, memory="lots")


async def test_fake_nodes_satisfy_the_byo_provisioner(client: KubeClient) -> None:
    await fake(client).provision(
        request(instance_type="Standard_NC48ads_A100_v4", count=2, labels={"pool": "a100"})
    )
    byo = BYOProvisioner(ProvisionerContext(client=client))
    byo_req = request(
        name="byo", instance_type="", count=2, gpus_per_node=2, labels={"pool": "a100"}
    )
    status = await byo.provision(byo_req)
    assert status.ready, status.message
    facts = await byo.describe_nodes(byo_req)
    assert facts.instance_type == "Standard_NC48ads_A100_v4"
    assert (facts.gpu_count, facts.compute_capability) == (2, "8.0")
    sku = facts.sku()
    assert sku is not None
    assert sku.name == "Standard_NC48ads_A100_v4"
