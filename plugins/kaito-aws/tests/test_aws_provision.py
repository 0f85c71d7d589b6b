"""The aws provisioner against moto's EKS/EC2 and kaito's API-server emulator: the node group it
creates, the passes that wait for it, readiness of its Nodes by the shared rule, failures EKS
reports, repairs (shape changed, size changed, leftovers), a restart that reuses the group,
and release."""

from __future__ import annotations

import pytest
from aws_support import (
    CLUSTER,
    REGION,
    AwsWorld,
    fixed_quota,
    join_nodes,
    provisioner,
    request,
)
from kaito_aws import RECHECK_INTERVAL, EKSProvisioner, nodegroup_name

from kaito.kube import KubeClient
from kaito.presets import SkuCatalog
from kaito.provisioners import ProvisionerContext

pytestmark = pytest.mark.timeout(30)

NAME = nodegroup_name("default", "phi")


async def test_creates_the_node_group_and_reports_ready_once_its_nodes_are(
    kube: KubeClient, world: AwsWorld
) -> None:
    prov = provisioner(kube, world, **{"poll-interval": "15s"})
    req = request(
        count=2,
        disk_gib=150,
        labels={"apps": "phi-3"},
        expressions=[{"key": "pool", "operator": "In", "values": ["gpu-a", "gpu-b"]}],
    )

    first = await prov.provision(req)
    assert (first.ready, first.failed, first.reason) == (False, False, "NodeGroupCreating")
    assert first.requeue_after == 15.0
    assert first.message == (
        f"creating EKS node group {NAME} (2 x g5.xlarge) in cluster {CLUSTER} ({REGION})"
    )

    group = world.nodegroup(NAME)
    assert group["instanceTypes"] == ["g5.xlarge"]
    assert group["scalingConfig"] == {"minSize": 2, "maxSize": 2, "desiredSize": 2}
    assert group["diskSize"] == 150
    assert group["amiType"] == "AL2023_x86_64_NVIDIA"
    assert group["capacityType"] == "ON_DEMAND"
    assert group["nodeRole"] == world.role_arn
    assert sorted(group["subnets"]) == sorted(world.subnets.values())
    assert group["labels"] == {
        "apps": "phi-3",
        "pool": "gpu-a",
        "kaito.sh/workspace": "phi",
        "kaito.sh/workspacenamespace": "default",
    }
    assert group["taints"] == [{"key": "sku", "value": "gpu", "effect": "NO_SCHEDULE"}]
    assert group["tags"] == {
        "kaito.sh/workspace": "phi",
        "kaito.sh/workspacenamespace": "default",
        "kaito.sh/created-by": "kaito",
    }

    # ACTIVE at once in moto, but no node has joined yet.
    waiting = await prov.provision(req)
    assert (waiting.ready, waiting.reason) == (False, "WaitingForNodes")
    assert waiting.message == "0 of 2 nodes ready"

    nodes = await join_nodes(kube, world, NAME)
    ready = await prov.provision(req)
    assert ready.ready
    assert ready.reason == "NodesReady"
    assert ready.nodes == tuple(sorted(nodes))
    assert ready.requeue_after is None
    assert ready.node_claims_ready is None
    assert len(world.proxy.ops("CreateNodegroup")) == 1
    assert world.proxy.ops("UpdateNodegroupConfig") == []


async def test_a_converged_pass_costs_one_describe_and_writes_nothing(
    kube: KubeClient, world: AwsWorld
) -> None:
    prov = provisioner(kube, world)
    await prov.provision(request())
    await join_nodes(kube, world, NAME)
    assert (await prov.provision(request())).ready
    world.proxy.clear()
    writes = kube.requests.writes
    assert (await prov.provision(request())).ready
    assert [c.operation for c in world.proxy.calls] == ["DescribeNodegroup"]
    assert kube.requests.writes == writes


async def test_waits_while_eks_creates_the_group(kube: KubeClient, world: AwsWorld) -> None:
    """moto makes node groups ACTIVE at once; the test puts it back to CREATING in moto's
    backend to see the passes in between."""
    prov = provisioner(kube, world)
    await prov.provision(request())
    world.set_status(NAME, "CREATING")
    await join_nodes(kube, world, NAME, ready=False)
    status = await prov.provision(request())
    assert (status.ready, status.failed, status.reason) == (False, False, "NodeGroupCreating")
    assert status.message == f"EKS node group {NAME} is CREATING"
    assert status.requeue_after == 30.0
    assert len(world.proxy.ops("CreateNodegroup")) == 1

    world.set_status(NAME, "ACTIVE")
    status = await prov.provision(request())
    assert status.reason == "WaitingForNodes"
    assert status.message.startswith("0 of 1 nodes ready (")
    assert status.message.endswith(" is not Ready)")


async def test_create_failed_reports_the_health_issues(kube: KubeClient, world: AwsWorld) -> None:
    prov = provisioner(kube, world)
    await prov.provision(request())
    world.set_status(
        NAME,
        "CREATE_FAILED",
        [
            {
                "code": "AsgInstanceLaunchFailures",
                "message": "Could not launch On-Demand Instances. InsufficientInstanceCapacity",
                "resourceIds": ["eks-phi-asg"],
            },
            {"code": "NodeCreationFailure", "message": "Instances failed to join the cluster"},
        ],
    )
    status = await prov.provision(request())
    assert (status.ready, status.failed, status.reason) == (False, True, "NodeGroupCreateFailed")
    assert status.message == (
        f"EKS node group {NAME} is CREATE_FAILED: AsgInstanceLaunchFailures: Could not launch "
        "On-Demand Instances. InsufficientInstanceCapacity (eks-phi-asg); "
        "NodeCreationFailure: Instances failed to join the cluster"
    )
    assert status.requeue_after is None
    assert len(world.proxy.ops("CreateNodegroup")) == 1

    world.set_status(NAME, "DELETE_FAILED", [{"code": "Ec2SecurityGroupDeletionFailure"}])
    status = await prov.provision(request())
    assert (status.failed, status.reason) == (True, "NodeGroupDeleteFailed")
    assert (
        status.message == f"EKS node group {NAME} is DELETE_FAILED: Ec2SecurityGroupDeletionFailure"
    )


async def test_degraded_group_serves_if_enough_nodes_are_ready(
    kube: KubeClient, world: AwsWorld
) -> None:
    prov = provisioner(kube, world)
    await prov.provision(request(count=2))
    world.set_status(NAME, "DEGRADED", [{"code": "InsufficientFreeAddresses", "message": "no IPs"}])
    await join_nodes(kube, world, NAME, count=1)
    status = await prov.provision(request(count=2))
    assert (status.ready, status.failed, status.reason) == (False, False, "NodeGroupDegraded")
    assert "1 of 2 nodes ready" in status.message
    assert "InsufficientFreeAddresses: no IPs" in status.message
    assert status.requeue_after == 30.0
    assert (await prov.provision(request(count=1))).ready


async def test_the_instance_type_must_be_offered_in_the_subnets_zones(
    kube: KubeClient, world: AwsWorld
) -> None:
    # moto's offerings: p4d.24xlarge only in eu-west-1c, g6.xlarge nowhere in eu-west-1.
    prov = provisioner(kube, world, zones="eu-west-1a,eu-west-1b")
    status = await prov.provision(request(instance_type="p4d.24xlarge", gpus_per_node=8))
    assert (status.ready, status.failed, status.reason) == (False, True, "InstanceTypeNotOffered")
    assert status.requeue_after == RECHECK_INTERVAL
    assert status.message == (
        "instance type p4d.24xlarge is not offered in the availability zones of the configured "
        f"subnets (eu-west-1a, eu-west-1b) in region {REGION}; it is offered in eu-west-1c. "
        "Choose another instance type or add subnets in a zone that offers it"
    )
    nowhere = await prov.provision(request(instance_type="g6.xlarge"))
    assert nowhere.reason == "InstanceTypeNotOffered"
    assert f"it is not offered in any zone of {REGION}" in nowhere.message
    assert world.proxy.ops("CreateNodegroup") == []
    assert world.nodegroup_names() == []


async def test_only_subnets_whose_zone_offers_the_type_are_used(
    kube: KubeClient, world: AwsWorld
) -> None:
    prov = provisioner(kube, world, zones="eu-west-1a,eu-west-1c")
    status = await prov.provision(request(instance_type="p4d.24xlarge", gpus_per_node=8))
    assert status.reason == "NodeGroupCreating"
    assert world.nodegroup(NAME)["subnets"] == [world.subnets["eu-west-1c"]]


async def test_quota_too_small_is_reported_before_creating(
    kube: KubeClient, world: AwsWorld
) -> None:
    source, asked = fixed_quota(64.0)
    prov = provisioner(kube, world, quota=source)
    status = await prov.provision(request(instance_type="g5.12xlarge", count=2, gpus_per_node=4))
    assert (status.ready, status.failed, status.reason) == (False, True, "QuotaExceeded")
    assert status.requeue_after == RECHECK_INTERVAL
    assert status.message == (
        '2 x g5.12xlarge need 96 vCPUs, but the EC2 quota "Running On-Demand G and VT '
        f'instances" (L-DB2E81BA) in region {REGION} allows 64 vCPUs (zones eu-west-1a, '
        "eu-west-1b, eu-west-1c). Request an increase of L-DB2E81BA in Service Quotas or "
        "choose a smaller instance type"
    )
    assert [q.code for q in asked] == ["L-DB2E81BA"]
    assert world.proxy.ops("CreateNodegroup") == []

    enough, _ = fixed_quota(96.0)
    created = await provisioner(kube, world, quota=enough).provision(
        request(instance_type="g5.12xlarge", count=2, gpus_per_node=4)
    )
    assert created.reason == "NodeGroupCreating"


async def test_p_instances_count_against_the_p_quota(kube: KubeClient, world: AwsWorld) -> None:
    source, asked = fixed_quota(0.0)
    prov = provisioner(kube, world, quota=source)
    status = await prov.provision(request(instance_type="p4d.24xlarge", gpus_per_node=8))
    assert status.reason == "QuotaExceeded"
    assert '"Running On-Demand P instances" (L-417A185B)' in status.message
    assert "need 96 vCPUs" in status.message
    assert "allows 0 vCPUs" in status.message
    assert [q.code for q in asked] == ["L-417A185B"]


async def test_vcpus_of_a_type_outside_the_catalog_come_from_ec2(
    kube: KubeClient, world: AwsWorld
) -> None:
    source, _ = fixed_quota(8.0)
    prov = EKSProvisioner(
        ProvisionerContext(kube, world.options()),
        session=world.session,
        quota_source=source,
        environ={},
        catalog=SkuCatalog(()),
    )
    status = await prov.provision(request(instance_type="g5.xlarge", count=3))
    assert status.reason == "QuotaExceeded"
    assert "need 12 vCPUs" in status.message
    assert len(world.proxy.ops("DescribeInstanceTypes")) == 1


async def test_default_quota_source_asks_service_quotas(kube: KubeClient, world: AwsWorld) -> None:
    """moto's Service Quotas knows no EC2 quotas (NoSuchResourceException): the check is
    skipped and the group is created."""
    status = await provisioner(kube, world).provision(request())
    assert status.reason == "NodeGroupCreating"
    calls = world.proxy.ops("GetServiceQuota")
    assert [c.json() for c in calls] == [{"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"}]


async def test_a_restarted_provisioner_reuses_the_group(kube: KubeClient, world: AwsWorld) -> None:
    await provisioner(kube, world).provision(request())
    again = provisioner(kube, world)  # a new operator process: nothing in memory
    status = await again.provision(request())
    assert status.reason == "WaitingForNodes"
    await join_nodes(kube, world, NAME)
    assert (await again.provision(request())).ready
    assert len(world.proxy.ops("CreateNodegroup")) == 1
    assert world.nodegroup_names() == [NAME]


async def test_a_create_that_finds_the_group_made_meanwhile_looks_at_it(
    kube: KubeClient, world: AwsWorld
) -> None:
    """Another replica created the group between our describe and our create."""
    prov = provisioner(kube, world)
    world.proxy.fail("DescribeNodegroup", status=404, code="ResourceNotFoundException")
    world.add_nodegroup(
        NAME,
        instance_type="g5.xlarge",
        amiType="AL2023_x86_64_NVIDIA",
        diskSize=120,
        labels={"kaito.sh/workspace": "phi", "kaito.sh/workspacenamespace": "default"},
        taints=[{"key": "sku", "value": "gpu", "effect": "NO_SCHEDULE"}],
    )
    status = await prov.provision(request())
    assert status.reason == "WaitingForNodes"
    assert len(world.proxy.ops("CreateNodegroup")) == 1
    assert world.nodegroup_names() == [NAME]


async def test_leftovers_tagged_for_the_workspace_are_removed(
    kube: KubeClient, world: AwsWorld
) -> None:
    tags = {"kaito.sh/workspace": "phi", "kaito.sh/workspacenamespace": "default"}
    world.add_nodegroup(
        "kaito-phi-from-an-old-version", tags={**tags, "kaito.sh/created-by": "kaito"}
    )
    world.add_nodegroup("kaito-other-workspace", tags={**tags, "kaito.sh/workspace": "other"})
    world.add_nodegroup("team-gpus", tags={**tags, "kaito.sh/created-by": "kaito"})
    status = await provisioner(kube, world).provision(request())
    assert status.reason == "NodeGroupCreating"
    assert sorted(world.nodegroup_names()) == sorted([NAME, "kaito-other-workspace", "team-gpus"])


async def test_a_group_of_another_shape_is_replaced(kube: KubeClient, world: AwsWorld) -> None:
    prov = provisioner(kube, world)
    await prov.provision(request(instance_type="g5.xlarge"))
    world.set_status(NAME, "CREATING")
    busy = await prov.provision(request(instance_type="g5.2xlarge"))
    assert busy.reason == "NodeGroupReplacing"
    assert world.proxy.ops("DeleteNodegroup") == []  # EKS cannot delete a group while creating

    world.set_status(NAME, "ACTIVE")
    status = await prov.provision(request(instance_type="g5.2xlarge"))
    assert (status.ready, status.failed, status.reason) == (False, False, "NodeGroupReplacing")
    assert status.message == (
        f"EKS node group {NAME} has instance type g5.xlarge, not g5.2xlarge; "
        "it is deleted and then created anew"
    )
    assert world.nodegroup_names() == []  # moto deletes at once
    status = await prov.provision(request(instance_type="g5.2xlarge"))
    assert status.reason == "NodeGroupCreating"
    assert world.nodegroup(NAME)["instanceTypes"] == ["g5.2xlarge"]


async def test_a_new_node_count_updates_the_scaling_config(
    kube: KubeClient, world: AwsWorld
) -> None:
    prov = provisioner(kube, world)
    await prov.provision(request(count=1))
    await join_nodes(kube, world, NAME, count=1)
    assert (await prov.provision(request(count=1))).ready

    status = await prov.provision(request(count=2))
    assert (status.ready, status.reason) == (False, "NodeGroupUpdating")
    assert "1 of 2 nodes ready" in status.message
    [update] = world.proxy.ops("UpdateNodegroupConfig")
    assert update.json()["scalingConfig"] == {"minSize": 2, "maxSize": 2, "desiredSize": 2}
    assert "labels" not in update.json()
    assert "taints" not in update.json()
    assert world.nodegroup(NAME)["scalingConfig"]["desiredSize"] == 2
    assert len(world.proxy.ops("CreateNodegroup")) == 1


async def test_nodes_of_the_wrong_type_or_without_gpus_do_not_count(
    kube: KubeClient, world: AwsWorld
) -> None:
    prov = provisioner(kube, world)
    await prov.provision(request(gpus_per_node=2))
    await join_nodes(kube, world, NAME)
    status = await prov.provision(request(gpus_per_node=2))
    assert not status.ready
    assert "offers 1 allocatable nvidia.com/gpu, 2 needed" in status.message


async def test_requests_that_cannot_be_a_node_group_fail_at_once(
    kube: KubeClient, world: AwsWorld
) -> None:
    prov = provisioner(kube, world)
    for req, text in (
        (request(instance_type=""), "needs resource.instanceType"),
        (request(count=0), "at least one node"),
        (
            request(
                labels={"pool": "a"},
                expressions=[{"key": "pool", "operator": "NotIn", "values": ["a"]}],
            ),
            "contradicts",
        ),
    ):
        status = await prov.provision(req)
        assert (status.failed, status.reason) == (True, "InvalidNodeRequest")
        assert text in status.message
    assert world.proxy.calls == []


async def test_release_deletes_the_group_and_answers_true_once_it_is_gone(
    kube: KubeClient, world: AwsWorld
) -> None:
    prov = provisioner(kube, world)
    await prov.provision(request())
    world.set_status(NAME, "DELETING")
    assert await prov.release(request()) is False
    assert world.proxy.ops("DeleteNodegroup") == []
    world.vanish(NAME)
    assert await prov.release(request()) is True

    await prov.provision(request())
    assert await prov.release(request()) is True  # moto deletes at once
    assert len(world.proxy.ops("DeleteNodegroup")) == 1
    assert world.nodegroup_names() == []
    assert await prov.release(request()) is True


async def test_release_waits_while_eks_refuses_to_delete(kube: KubeClient, world: AwsWorld) -> None:
    prov = provisioner(kube, world)
    await prov.provision(request())
    world.proxy.fail("DeleteNodegroup", status=409, code="ResourceInUseException")
    assert await prov.release(request()) is False
    assert await prov.release(request()) is True


async def test_release_also_removes_tagged_leftovers(kube: KubeClient, world: AwsWorld) -> None:
    tags = {
        "kaito.sh/workspace": "phi",
        "kaito.sh/workspacenamespace": "default",
        "kaito.sh/created-by": "kaito",
    }
    world.add_nodegroup("kaito-phi-leftover", tags=tags)
    world.add_nodegroup("kaito-someone-else", tags={**tags, "kaito.sh/workspacenamespace": "x"})
    assert await provisioner(kube, world).release(request()) is True
    assert world.nodegroup_names() == ["kaito-someone-else"]
