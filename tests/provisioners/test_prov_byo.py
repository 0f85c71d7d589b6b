"""The byo provisioner against the emulator: nodes found by labelSelector (matchLabels and
expressions) and preferredNodes, uniformity of their GPU labels, sufficiency (GPUs per node,
node count), precise failure messages, readiness, `describe_nodes` facts and their SKU, and
that it never writes to the cluster."""

from __future__ import annotations

from typing import Any

import pytest
from prov_support import add_node, gpu_node, request

from kaito.kube import KubeClient
from kaito.presets import builtin_skus
from kaito.provisioners import NodeDescriber, NodeFacts, Provisioner, ProvisionerContext
from kaito.provisioners.byo import BYOProvisioner

pytestmark = pytest.mark.timeout(20)

POOL = {"pool": "gpu"}
A100 = {
    "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    "nvidia.com/gpu.count": "2",
    "nvidia.com/gpu.memory": "81920",
    "nvidia.com/gpu.compute.major": "8",
    "nvidia.com/gpu.compute.minor": "0",
}


def byo(client: Any) -> BYOProvisioner:
    return BYOProvisioner(ProvisionerContext(client=client))


def byo_request(**kwargs: Any) -> Any:
    kwargs.setdefault("instance_type", "")
    kwargs.setdefault("labels", POOL)
    return request(**kwargs)


async def seed(client: KubeClient, *names: str, **kwargs: Any) -> None:
    labels = kwargs.pop("labels", {**POOL, **A100})
    kwargs.setdefault("instance_type", "Standard_NC48ads_A100_v4")
    for name in names:
        await add_node(client, gpu_node(name, labels=labels, **kwargs))


def test_takes_no_options_and_fits_the_protocols() -> None:
    with pytest.raises(ValueError, match=r"unknown option.*cloud.*accepted: none"):
        BYOProvisioner(ProvisionerContext(client=None, options={"cloud": "aws"}))  # type: ignore[arg-type]
    prov = byo(None)
    assert prov.name == "byo"
    assert isinstance(prov, Provisioner)
    assert isinstance(prov, NodeDescriber)


async def test_matching_nodes_are_ready_and_nothing_is_written(client: KubeClient) -> None:
    await seed(client, "gpu-b", "gpu-a")
    await add_node(client, gpu_node("other", labels=A100))
    status = await byo(client).provision(byo_request(count=2, gpus_per_node=2))
    assert status.ready
    assert status.nodes == ("gpu-a", "gpu-b")
    assert status.reason == "NodesReady"
    assert status.node_claims_ready is None
    assert client.requests.writes == 2 + 1  # only the seeding
    assert await byo(client).release(byo_request()) is True
    assert client.requests.writes == 3


async def test_extra_matching_nodes_are_not_all_taken_and_preferred_come_first(
    client: KubeClient,
) -> None:
    await seed(client, "gpu-a", "gpu-b", "gpu-c")
    status = await byo(client).provision(byo_request(count=2, preferred=["gpu-c"]))
    assert status.ready
    assert status.nodes == ("gpu-c", "gpu-a")


async def test_preferred_nodes_alone_select_the_nodes(client: KubeClient) -> None:
    await seed(client, "gpu-a", "gpu-b", labels=A100)
    status = await byo(client).provision(
        byo_request(labels={}, count=2, preferred=["gpu-b", "gpu-a"])
    )
    assert status.ready
    assert status.nodes == ("gpu-b", "gpu-a")


async def test_expressions_select_nodes(client: KubeClient) -> None:
    await seed(client, "east", labels={"zone": "east", **A100})
    await seed(client, "west", labels={"zone": "west", **A100})
    await seed(client, "north", labels={"zone": "north", **A100})
    status = await byo(client).provision(
        byo_request(
            labels={},
            count=2,
            expressions=[{"key": "zone", "operator": "In", "values": ["east", "west"]}],
        )
    )
    assert status.ready
    assert status.nodes == ("east", "west")
    single = await byo(client).provision(
        byo_request(labels={}, expressions=[{"key": "zone", "operator": "In", "values": ["north"]}])
    )
    assert single.nodes == ("north",)
    excluded = await byo(client).provision(
        byo_request(
            labels={},
            count=2,
            expressions=[
                {"key": "zone", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["east"]},
            ],
        )
    )
    assert excluded.nodes == ("north", "west")


async def test_no_selector_and_no_preferred_nodes_is_a_failure(client: KubeClient) -> None:
    status = await byo(client).provision(byo_request(labels={}))
    assert status.failed
    assert status.reason == "NodesNotFound"
    assert "labelSelector or preferredNodes" in status.message


async def test_too_few_nodes_names_what_was_found(client: KubeClient) -> None:
    await seed(client, "gpu-a")
    status = await byo(client).provision(byo_request(count=3))
    assert status.failed
    assert status.reason == "NodesNotFound"
    assert status.message == (
        "1 node(s) match labelSelector pool=gpu and preferredNodes (gpu-a); the workspace needs 3"
    )


async def test_missing_or_non_matching_preferred_nodes_are_named(client: KubeClient) -> None:
    await seed(client, "gpu-a")
    await seed(client, "stray", labels=A100)
    status = await byo(client).provision(byo_request(preferred=["ghost", "stray", "gpu-a"]))
    assert status.failed
    assert status.reason == "NodesNotFound"
    assert "preferred node ghost does not exist" in status.message
    assert "preferred node stray does not match labelSelector pool=gpu" in status.message


async def test_nodes_that_differ_in_gpu_labels_are_named(client: KubeClient) -> None:
    await seed(client, "gpu-a", "gpu-b")
    t4 = {**A100, "nvidia.com/gpu.product": "Tesla-T4", "nvidia.com/gpu.memory": "15360"}
    await seed(client, "gpu-c", labels={**POOL, **t4})
    status = await byo(client).provision(byo_request(count=2))
    assert status.failed
    assert status.reason == "NodesNotUniform"
    assert (
        "nodes differ in nvidia.com/gpu.product: NVIDIA-A100-SXM4-80GB on gpu-a, gpu-b; "
        "Tesla-T4 on gpu-c"
    ) in status.message
    assert "nvidia.com/gpu.memory" in status.message


async def test_a_missing_gpu_label_counts_as_a_difference(client: KubeClient) -> None:
    await seed(client, "gpu-a", instance_type="Standard_NC48ads_A100_v4")
    await seed(client, "gpu-b", instance_type=None)
    status = await byo(client).provision(byo_request(count=2))
    assert status.failed
    assert "node.kubernetes.io/instance-type" in status.message
    assert "(unset) on gpu-b" in status.message


async def test_the_requested_instance_type_must_match(client: KubeClient) -> None:
    await seed(client, "gpu-a")
    ok = await byo(client).provision(byo_request(instance_type="Standard_NC48ads_A100_v4"))
    assert ok.ready
    status = await byo(client).provision(byo_request(instance_type="Standard_NC12s_v3"))
    assert status.failed
    assert status.reason == "InstanceTypeMismatch"
    assert status.message == (
        "node gpu-a has instance type Standard_NC48ads_A100_v4, the workspace asks for "
        "Standard_NC12s_v3"
    )


async def test_too_few_gpus_per_node_is_insufficient(client: KubeClient) -> None:
    await seed(client, "gpu-a", gpus=2)
    await seed(client, "gpu-b", gpus=None)
    status = await byo(client).provision(byo_request(count=2, gpus_per_node=4))
    assert status.failed
    assert status.reason == "InsufficientGPUs"
    assert status.message == (
        "node gpu-a offers 2 allocatable nvidia.com/gpu, the plan needs 4 per node; "
        "node gpu-b offers 0 allocatable nvidia.com/gpu, the plan needs 4 per node"
    )


async def test_nodes_that_are_not_ready_are_waited_for(client: KubeClient) -> None:
    await seed(client, "gpu-a")
    await seed(client, "gpu-b", ready=False)
    status = await byo(client).provision(byo_request(count=2))
    assert not status.ready
    assert not status.failed
    assert status.reason == "WaitingForNodes"
    assert status.message == "1 of 2 nodes ready (gpu-b is not Ready)"
    assert status.nodes == ("gpu-a",)
    assert status.requeue_after is not None


async def test_describe_nodes_reports_the_gpu_facts(client: KubeClient) -> None:
    await seed(client, "gpu-a", "gpu-b", instance_type=None)
    facts = await byo(client).describe_nodes(byo_request())
    assert facts == NodeFacts(
        nodes=("gpu-a", "gpu-b"),
        instance_type=None,
        gpu_product="NVIDIA-A100-SXM4-80GB",
        gpu_count=2,
        gpu_memory_bytes=80 * 2**30,
        compute_capability="8.0",
    )
    sku = facts.sku()
    assert sku is not None
    assert sku.name == "byo-NVIDIA-A100-SXM4-80GB"
    assert (sku.gpu_count, sku.gpu_memory_bytes, sku.compute_capability) == (2, 80 * 2**30, "8.0")
    assert sku.supports_bfloat16


async def test_describe_nodes_uses_the_catalog_for_a_known_instance_type(
    client: KubeClient,
) -> None:
    await seed(client, "gpu-a", instance_type="Standard_NC48ads_A100_v4")
    facts = await byo(client).describe_nodes(byo_request())
    assert facts.instance_type == "Standard_NC48ads_A100_v4"
    assert facts.sku() == builtin_skus()["Standard_NC48ads_A100_v4"]


async def test_describe_nodes_prefers_allocatable_and_reports_problems(
    client: KubeClient,
) -> None:
    await seed(client, "gpu-a", gpus=1)
    await seed(client, "gpu-b", labels={**POOL, **A100, "nvidia.com/gpu.product": "H100"})
    facts = await byo(client).describe_nodes(byo_request(preferred=["ghost"]))
    assert facts.gpu_count == 1
    assert facts.gpu_product is None
    assert facts.instance_type == "Standard_NC48ads_A100_v4"
    assert facts.sku() is None, "no size for nodes with problems"
    assert facts.problems[0] == "preferred node ghost does not exist"
    assert "nvidia.com/gpu.product" in facts.problems[1]

    empty = await byo(client).describe_nodes(byo_request(labels={"pool": "none"}))
    assert empty.nodes == ()
    assert empty.problems == ("no node matches labelSelector pool=none or preferredNodes",)
