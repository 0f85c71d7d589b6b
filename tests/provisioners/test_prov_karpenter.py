"""The karpenter provisioner against the emulator: the NodeClaims it writes (requirements,
labels, taint, node class per cloud, storage), idempotency (a second pass and a pass after a
crash write only what is missing), surplus deletion, readiness from Nodes, failure reporting
(launch failures and the ready timeout with an injected clock), release, and its options."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prov_support import (
    READY_CLAIM,
    add_node,
    cond,
    gpu_node,
    request,
    set_claim_status,
    ws_labels,
)

from kaito.kube import NODE, NODE_CLAIM, KubeClient, NotFound, PatchType
from kaito.plugins import Registry
from kaito.provisioners import Provisioner, ProvisionerContext
from kaito.provisioners.karpenter import (
    KarpenterProvisioner,
    node_base_name,
    node_name,
    parse_duration,
)

pytestmark = pytest.mark.timeout(20)

SKU = "Standard_NC12s_v3"


def karpenter(client: Any, **options: str) -> KarpenterProvisioner:
    return KarpenterProvisioner(ProvisionerContext(client=client, options=options))


async def claims(client: KubeClient) -> dict[str, dict[str, Any]]:
    listed = await client.list(NODE_CLAIM)
    return {c["metadata"]["name"]: c for c in listed.items}


# -- names ---------------------------------------------------------------------------------


def test_names_are_deterministic_short_and_distinct_per_workspace() -> None:
    a0 = node_name("default", "phi", 0)
    assert a0 == node_name("default", "phi", 0)
    assert a0.startswith("ws")
    assert a0.endswith("-0")
    assert len(node_base_name("default", "phi")) == 12
    assert node_name("default", "phi", 1) == f"{node_base_name('default', 'phi')}-1"
    assert node_name("other", "phi", 0) != a0
    assert node_name("default", "x" * 63, 999) == f"{node_base_name('default', 'x' * 63)}-999"
    assert len(node_name("n" * 63, "x" * 253, 99999)) <= 63
    with pytest.raises(ValueError, match="negative"):
        node_name("default", "phi", -1)


# -- the NodeClaim -------------------------------------------------------------------------


async def test_node_claims_carry_requirements_labels_taint_node_class_and_storage(
    client: KubeClient,
) -> None:
    req = request(
        count=2,
        disk_gib=150,
        labels={"apps": "phi-3"},
        expressions=[
            {"key": "team", "operator": "In", "values": ["ml"]},
            {"key": "zone", "operator": "In", "values": ["eastus-1", "eastus-2"]},
        ],
    )
    status = await karpenter(client).provision(req)
    assert not status.ready
    assert status.reason == "WaitingForNodes"
    assert status.message == "0 of 2 nodes ready"
    assert status.node_claims_ready is False

    stored = await claims(client)
    assert sorted(stored) == [node_name("default", "phi", 0), node_name("default", "phi", 1)]
    claim = stored[node_name("default", "phi", 0)]
    assert claim["metadata"]["labels"] == {
        "apps": "phi-3",
        "team": "ml",
        "kaito.sh/workspace": "phi",
        "kaito.sh/workspacenamespace": "default",
        "karpenter.sh/nodepool": "kaito",
    }
    assert claim["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert "namespace" not in claim["metadata"]
    spec = claim["spec"]
    assert spec["requirements"] == [
        {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [SKU]},
        {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
        {"key": "zone", "operator": "In", "values": ["eastus-1", "eastus-2"]},
    ]
    assert spec["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    assert spec["nodeClassRef"] == {
        "group": "karpenter.azure.com",
        "kind": "AKSNodeClass",
        "name": "default",
    }
    assert spec["resources"] == {"requests": {"storage": "150Gi"}}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"group": "karpenter.azure.com", "kind": "AKSNodeClass", "name": "default"}),
        (
            {"cloud": "azure"},
            {"group": "karpenter.azure.com", "kind": "AKSNodeClass", "name": "default"},
        ),
        (
            {"cloud": "aws"},
            {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
        ),
        (
            {"cloud": "aws", "node-class-name": "gpu"},
            {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"},
        ),
        (
            {
                "node-class-group": "example.com",
                "node-class-kind": "MyNodeClass",
                "node-class-name": "big",
            },
            {"group": "example.com", "kind": "MyNodeClass", "name": "big"},
        ),
    ],
)
async def test_node_class_ref_follows_the_cloud_and_the_overrides(
    client: KubeClient, options: dict[str, str], expected: dict[str, str]
) -> None:
    await karpenter(client, **options).provision(request(instance_type="p3.8xlarge"))
    (claim,) = (await claims(client)).values()
    assert claim["spec"]["nodeClassRef"] == expected


def test_unknown_and_malformed_options_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="colud, nodeclass") as info:
        karpenter(None, colud="aws", nodeclass="x")
    assert "accepted: cloud, node-class-group" in str(info.value)
    with pytest.raises(ValueError, match="cloud='gcp'"):
        karpenter(None, cloud="gcp")
    with pytest.raises(ValueError, match="ready-timeout"):
        karpenter(None, **{"ready-timeout": "soon"})
    with pytest.raises(ValueError, match="node-class-name"):
        karpenter(None, **{"node-class-name": " "})
    with pytest.raises(ValueError, match="without a version"):
        karpenter(None, **{"node-class-group": "karpenter.sh/v1"})


def test_ready_timeout_accepts_go_durations_and_seconds() -> None:
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == 90
    assert parse_duration("1.5m") == 90
    assert parse_duration("45") == 45
    for bad in ("", "0s", "-5", "10 minutes", "m10"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    assert karpenter(None, **{"ready-timeout": "2m"}).ready_timeout == 120
    assert karpenter(None).ready_timeout == 600


def test_registers_as_a_plugin_and_fits_the_protocol() -> None:
    registry = Registry(builtin_catalog=False)
    registry.add_provisioner("karpenter", KarpenterProvisioner)
    made = registry.provisioner("karpenter")(ProvisionerContext(client=None))  # type: ignore[arg-type]
    assert isinstance(made, Provisioner)
    assert made.name == "karpenter"


async def test_a_request_without_instance_type_fails_without_writing(
    client: KubeClient,
) -> None:
    status = await karpenter(client).provision(request(instance_type=""))
    assert status.failed
    assert "instanceType" in status.message
    assert client.requests.writes == 0


async def test_a_malformed_selector_expression_is_a_failure(client: KubeClient) -> None:
    status = await karpenter(client).provision(
        request(expressions=[{"key": "zone", "operator": "Near", "values": ["a"]}])
    )
    assert status.failed
    assert status.reason == "InvalidNodeRequest"
    assert "Near" in status.message


# -- idempotency ---------------------------------------------------------------------------


async def test_a_second_pass_writes_nothing(client: KubeClient) -> None:
    prov = karpenter(client)
    req = request(count=2)
    await prov.provision(req)
    assert client.requests.writes == 2
    before = client.requests.writes
    second = await prov.provision(req)
    assert client.requests.writes == before
    assert second.message == "0 of 2 nodes ready"
    assert len(await claims(client)) == 2


class CrashAfterCreates:
    """A client that dies (raises) on the create after `creates` successful ones: the operator
    crashing halfway through a pass."""

    def __init__(self, inner: KubeClient, creates: int) -> None:
        self.inner = inner
        self.left = creates

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def create(self, kind: Any, obj: Any, *, namespace: str | None = None) -> Any:
        if self.left == 0:
            raise ConnectionResetError("operator killed")
        self.left -= 1
        return await self.inner.create(kind, obj, namespace=namespace)


async def test_a_crash_between_two_creates_is_healed_by_creating_only_the_missing_one(
    client: KubeClient,
) -> None:
    req = request(count=2)
    with pytest.raises(ConnectionResetError):
        await karpenter(CrashAfterCreates(client, creates=1)).provision(req)
    assert sorted(await claims(client)) == [node_name("default", "phi", 0)]
    first = (await claims(client))[node_name("default", "phi", 0)]["metadata"]["uid"]

    writes = client.requests.writes
    await karpenter(client).provision(req)
    assert client.requests.writes - writes == 1
    assert client.requests.count("create", "nodeclaims.karpenter.sh") == 2
    after = await claims(client)
    assert sorted(after) == [node_name("default", "phi", 0), node_name("default", "phi", 1)]
    assert after[node_name("default", "phi", 0)]["metadata"]["uid"] == first


async def test_a_claim_created_meanwhile_is_already_exists_and_adopted(
    client: KubeClient,
) -> None:
    prov = karpenter(client)
    req = request()
    # Same name, but without the workspace labels: the list does not see it, the create
    # answers AlreadyExists, and the provisioner goes on with the existing claim.
    claim = prov.node_claim(req, 0)
    claim["metadata"]["labels"] = {}
    await client.create(NODE_CLAIM, claim)
    status = await prov.provision(req)
    assert not status.failed
    assert status.reason == "WaitingForNodes"
    assert len(await claims(client)) == 1


async def test_a_lowered_count_deletes_the_surplus_claims(client: KubeClient) -> None:
    prov = karpenter(client)
    await prov.provision(request(count=3))
    assert len(await claims(client)) == 3
    await prov.provision(request(count=1))
    assert sorted(await claims(client)) == [node_name("default", "phi", 0)]


async def test_a_claim_of_another_instance_type_is_replaced(client: KubeClient) -> None:
    prov = karpenter(client)
    await prov.provision(request(instance_type="Standard_NC6s_v3"))
    await prov.provision(request(instance_type=SKU))
    assert await claims(client) == {}
    await prov.provision(request(instance_type=SKU))
    (claim,) = (await claims(client)).values()
    assert claim["spec"]["requirements"][1]["values"] == [SKU]


async def test_claims_of_other_workspaces_are_left_alone(client: KubeClient) -> None:
    prov = karpenter(client)
    await prov.provision(request(name="a"))
    await prov.provision(request(name="b", count=2))
    await prov.provision(request(name="a", count=1))
    assert len(await claims(client)) == 3
    assert await prov.release(request(name="a"))
    assert sorted(await claims(client)) == [node_name("default", "b", i) for i in (0, 1)]


# -- readiness -----------------------------------------------------------------------------


async def fulfil(client: KubeClient, index: int, *, gpus: int = 2, ready: bool = True) -> str:
    """Do what Karpenter and the kubelet do for claim `index`: a Node joins, the claim is Ready."""
    claim = node_name("default", "phi", index)
    node = f"aks-{claim}"
    await add_node(
        client,
        gpu_node(node, labels={**ws_labels(), "apps": "phi-3"}, gpus=gpus, ready=ready),
    )
    await set_claim_status(client, claim, READY_CLAIM, node_name=node)
    return node


async def test_ready_once_every_node_is_ready_with_gpus(client: KubeClient) -> None:
    prov = karpenter(client)
    req = request(count=2, gpus_per_node=2, labels={"apps": "phi-3"})
    await prov.provision(req)
    node0 = await fulfil(client, 0)
    waiting = await prov.provision(req)
    assert not waiting.ready
    assert not waiting.failed
    assert waiting.reason == "WaitingForNodes"
    assert waiting.message == "1 of 2 nodes ready"
    assert waiting.nodes == (node0,)
    assert waiting.node_claims_ready is False
    assert waiting.requeue_after is not None
    assert 1.0 <= waiting.requeue_after <= 60.0

    node1 = await fulfil(client, 1)
    writes = client.requests.writes
    done = await prov.provision(req)
    assert client.requests.writes == writes
    assert done.ready
    assert done.nodes == (node0, node1)
    assert done.node_claims_ready is True
    assert done.message == "2 of 2 nodes ready"
    assert not done.failed


@pytest.mark.parametrize(
    "node_kwargs",
    [
        {"gpus": None},
        {"gpus": 1},
        {"ready": False},
        {"unschedulable": True},
        {"instance_type": "Standard_NC6s_v3"},
    ],
    ids=["no-gpus", "too-few-gpus", "not-ready", "cordoned", "other-type"],
)
async def test_a_node_that_cannot_take_the_workload_is_not_counted(
    client: KubeClient, node_kwargs: dict[str, Any]
) -> None:
    prov = karpenter(client)
    req = request(gpus_per_node=2)
    await prov.provision(req)
    claim = node_name("default", "phi", 0)
    await add_node(client, gpu_node("n0", labels=ws_labels(), **node_kwargs))
    await set_claim_status(client, claim, READY_CLAIM, node_name="n0")
    status = await prov.provision(req)
    assert not status.ready
    assert status.nodes == ()
    assert status.message == "0 of 1 nodes ready"
    assert status.node_claims_ready is True


async def test_the_node_of_a_deleted_surplus_claim_does_not_count(client: KubeClient) -> None:
    prov = karpenter(client)
    await prov.provision(request(count=2))
    claim1 = node_name("default", "phi", 1)
    # The surplus claim is held by Karpenter's termination finalizer while its node drains.
    await client.patch(
        NODE_CLAIM, claim1, {"metadata": {"finalizers": ["karpenter.sh/termination"]}}
    )
    await add_node(client, gpu_node("n1", labels=ws_labels()))
    await set_claim_status(client, claim1, READY_CLAIM, node_name="n1")
    status = await prov.provision(request(count=1))
    assert not status.ready
    assert status.nodes == ()
    assert (await claims(client))[claim1]["metadata"].get("deletionTimestamp")


# -- failures ------------------------------------------------------------------------------


async def test_a_launch_failure_is_reported_with_karpenters_message(client: KubeClient) -> None:
    prov = karpenter(client)
    req = request(count=2)
    await prov.provision(req)
    message = "no capacity for Standard_NC12s_v3 in eastus"
    await set_claim_status(
        client,
        node_name("default", "phi", 1),
        [cond("Launched", "False", "InsufficientCapacity", message)],
    )
    status = await prov.provision(req)
    assert status.failed
    assert not status.ready
    assert status.reason == "NodeClaimLaunchFailed"
    assert message in status.message
    assert node_name("default", "phi", 1) in status.message
    assert "InsufficientCapacity" in status.message
    assert status.node_claims_ready is False


async def test_a_claim_not_ready_after_the_timeout_is_a_failure(client: KubeClient) -> None:
    req = request()
    await karpenter(client).provision(req)
    await set_claim_status(
        client,
        node_name("default", "phi", 0),
        [cond("Launched", "True"), cond("Registered", "False", "NodeNotFound", "no node yet")],
    )

    def later() -> datetime:
        return datetime.now(UTC) + timedelta(minutes=11)

    status = await KarpenterProvisioner(ProvisionerContext(client=client), clock=later).provision(
        req
    )
    assert status.failed
    assert status.reason == "NodeClaimNotReady"
    assert "not Ready 10m0s after its creation" in status.message
    assert "Registered=False: no node yet" in status.message

    def soon() -> datetime:
        return datetime.now(UTC) + timedelta(minutes=9, seconds=30)

    status = await KarpenterProvisioner(
        ProvisionerContext(client=client, options={"ready-timeout": "10m"}), clock=soon
    ).provision(req)
    assert not status.failed
    assert status.reason == "WaitingForNodes"
    assert status.requeue_after is not None
    assert 25 <= status.requeue_after <= 31

    status = await KarpenterProvisioner(
        ProvisionerContext(client=client, options={"ready-timeout": "5m"}), clock=soon
    ).provision(req)
    assert status.failed
    assert "5m0s" in status.message


async def test_enough_ready_nodes_win_over_a_failed_claim(client: KubeClient) -> None:
    prov = karpenter(client)
    req = request(gpus_per_node=2)
    await prov.provision(req)
    node0 = await fulfil(client, 0)
    await set_claim_status(
        client,
        node_name("default", "phi", 0),
        [*READY_CLAIM[1:], cond("Launched", "False", "Drifted", "gone")],
    )
    status = await prov.provision(req)
    assert status.ready
    assert status.nodes == (node0,)


# -- release -------------------------------------------------------------------------------


async def test_release_deletes_the_claims_and_answers_true_when_none_is_left(
    client: KubeClient,
) -> None:
    prov = karpenter(client)
    req = request(count=2)
    await prov.provision(req)
    for i in (0, 1):
        await client.patch(
            NODE_CLAIM,
            node_name("default", "phi", i),
            {"metadata": {"finalizers": ["karpenter.sh/termination"]}},
        )
    assert await prov.release(req) is False
    assert all(c["metadata"].get("deletionTimestamp") for c in (await claims(client)).values())
    deletes = client.requests.count("delete")
    assert await prov.release(req) is False
    assert client.requests.count("delete") == deletes, "terminating claims are not deleted again"

    # Karpenter's termination controller removes the node, then the finalizer.
    for i in (0, 1):
        await client.patch(
            NODE_CLAIM,
            node_name("default", "phi", i),
            [{"op": "remove", "path": "/metadata/finalizers"}],
            patch_type=PatchType.JSON,
        )
    assert await prov.release(req) is True
    assert await claims(client) == {}


async def test_release_without_finalizers_is_done_at_once(client: KubeClient) -> None:
    prov = karpenter(client)
    await prov.provision(request())
    assert await prov.release(request()) is True
    assert await prov.release(request()) is True
    with pytest.raises(NotFound):
        await client.get(NODE_CLAIM, node_name("default", "phi", 0))
    assert (await client.list(NODE)).items == []
