"""AWS errors between the provisioner and moto, injected by the proxy: botocore's retries on
throttling and 5xx answers (standard and adaptive modes), the idempotency token of a create
whose answer was lost, errors that survive the retries (transient: waiting; permanent: failed),
an unreachable endpoint, missing credentials, and credentials never reaching a log."""

from __future__ import annotations

import logging
import socket

import boto3
import pytest
from aws_support import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    AwsWorld,
    join_nodes,
    provisioner,
    request,
)
from kaito_aws import RECHECK_INTERVAL, EKSConfig, EKSProvisioner, nodegroup_name, retry_config

from kaito.kube import KubeClient
from kaito.provisioners import ProvisionerContext

pytestmark = pytest.mark.timeout(30)

NAME = nodegroup_name("default", "phi")


def test_the_botocore_config_carries_the_retry_settings() -> None:
    base = {
        "region": "eu-west-1",
        "cluster-name": "c",
        "subnet-ids": "subnet-0123456789abcdef0",
        "node-role-arn": "arn:aws:iam::123456789012:role/nodes",
    }
    standard = retry_config(EKSConfig.from_options(base))
    assert standard.retries == {"mode": "standard", "total_max_attempts": 5}
    assert standard.region_name == "eu-west-1"
    assert standard.connect_timeout == 10
    assert standard.read_timeout == 30
    adaptive = retry_config(
        EKSConfig.from_options({**base, "retry-mode": "adaptive", "max-attempts": "9"})
    )
    assert adaptive.retries == {"mode": "adaptive", "total_max_attempts": 9}


async def test_transient_errors_are_retried_with_backoff(kube: KubeClient, world: AwsWorld) -> None:
    world.proxy.fail("DescribeNodegroup", status=503, code="ServiceUnavailableException", times=2)
    world.proxy.fail("CreateNodegroup", status=429, code="ThrottlingException")
    world.proxy.fail("DescribeSubnets", status=500, code="InternalError")
    status = await provisioner(kube, world).provision(request())
    assert status.reason == "NodeGroupCreating"
    assert len(world.proxy.ops("DescribeNodegroup")) == 3
    assert len(world.proxy.ops("DescribeSubnets")) == 2
    creates = world.proxy.ops("CreateNodegroup")
    assert len(creates) == 2
    assert world.nodegroup_names() == [NAME]


async def test_adaptive_mode_rides_out_throttling(kube: KubeClient, world: AwsWorld) -> None:
    world.proxy.fail("CreateNodegroup", status=400, code="ThrottlingException")
    prov = provisioner(kube, world, **{"retry-mode": "adaptive"})
    assert prov.api.botocore_config.retries == {"mode": "adaptive", "total_max_attempts": 5}
    status = await prov.provision(request())
    assert status.reason == "NodeGroupCreating"
    assert len(world.proxy.ops("CreateNodegroup")) == 2


async def test_a_create_whose_answer_was_lost_is_not_duplicated(
    kube: KubeClient, world: AwsWorld
) -> None:
    """EKS created the group, the answer was lost (503), botocore sent the same request again:
    the same clientRequestToken, and the group exists once."""
    world.proxy.fail(
        "CreateNodegroup", status=503, code="ServiceUnavailableException", forward=True
    )
    prov = provisioner(kube, world)
    status = await prov.provision(request())
    assert status.reason in ("NodeGroupCreating", "WaitingForNodes")
    first, second = world.proxy.ops("CreateNodegroup")
    token = first.json()["clientRequestToken"]
    assert token.startswith("kaito-")
    assert second.json()["clientRequestToken"] == token
    assert world.nodegroup_names() == [NAME]

    # The same workspace asks again later (another pass, another replica): the same token.
    world.remove_all_nodegroups()
    await provisioner(kube, world).provision(request())
    assert world.proxy.ops("CreateNodegroup")[-1].json()["clientRequestToken"] == token
    # A new workspace of the same name (another UID) gets another one.
    world.remove_all_nodegroups()
    await provisioner(kube, world).provision(request(uid="uid-2"))
    assert world.proxy.ops("CreateNodegroup")[-1].json()["clientRequestToken"] != token


async def test_errors_that_outlast_the_retries_mean_waiting(
    kube: KubeClient, world: AwsWorld
) -> None:
    world.proxy.fail("DescribeNodegroup", status=500, code="ServerException", times=10)
    prov = provisioner(kube, world, **{"max-attempts": "2", "poll-interval": "20s"})
    status = await prov.provision(request())
    assert (status.ready, status.failed, status.reason) == (False, False, "AWSUnavailable")
    assert status.requeue_after == 20.0
    assert status.message.startswith(
        f"AWS did not answer for node group {NAME} in cluster gpu-cluster (eu-west-1): "
        "DescribeNodegroup: ServerException"
    )
    assert len(world.proxy.ops("DescribeNodegroup")) == 2
    assert await prov.release(request()) is False


async def test_permanent_errors_fail_without_retrying(kube: KubeClient, world: AwsWorld) -> None:
    world.proxy.fail(
        "CreateNodegroup",
        status=403,
        code="AccessDeniedException",
        message="User is not authorized to perform: eks:CreateNodegroup",
    )
    status = await provisioner(kube, world).provision(request())
    assert (status.ready, status.failed, status.reason) == (False, True, "AWSRequestFailed")
    assert status.requeue_after == RECHECK_INTERVAL
    assert status.message == (
        f"AWS rejected a call for node group {NAME} in cluster gpu-cluster (eu-west-1): "
        "CreateNodegroup: AccessDeniedException: User is not authorized to perform: "
        "eks:CreateNodegroup"
    )
    assert len(world.proxy.ops("CreateNodegroup")) == 1
    assert world.nodegroup_names() == []


async def test_a_quota_that_cannot_be_read_is_not_checked(
    kube: KubeClient, world: AwsWorld
) -> None:
    world.proxy.fail("GetServiceQuota", status=400, code="AccessDeniedException")
    status = await provisioner(kube, world).provision(request())
    assert status.reason == "NodeGroupCreating"


async def test_an_unreachable_endpoint_is_transient(kube: KubeClient, world: AwsWorld) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prov = provisioner(kube, world, **{"endpoint-url": f"http://127.0.0.1:{port}"})
    status = await prov.provision(request())
    assert (status.failed, status.reason) == (False, "AWSUnavailable")
    assert "EndpointConnectionError" in status.message


async def test_missing_credentials_are_a_clear_failure(
    kube: KubeClient, world: AwsWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    prov = EKSProvisioner(
        ProvisionerContext(kube, world.options()),
        session=boto3.session.Session(region_name="eu-west-1"),
        environ={},
    )
    status = await prov.provision(request())
    assert (status.failed, status.reason) == (True, "AWSRequestFailed")
    assert "no AWS credentials found by boto3's default chain" in status.message
    assert world.proxy.calls == []


async def test_credentials_never_reach_the_logs(
    kube: KubeClient, world: AwsWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    prov = provisioner(kube, world)
    world.proxy.fail("DescribeNodegroup", status=403, code="UnrecognizedClientException")
    await prov.provision(request())
    await prov.provision(request())
    await join_nodes(kube, world, NAME)
    assert (await prov.provision(request())).ready
    assert await prov.release(request())
    assert any(r.name == "kaito_aws" for r in caplog.records)
    assert SECRET_ACCESS_KEY not in caplog.text
    assert SECRET_ACCESS_KEY not in repr(prov.config)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("kaito_aws"))
    assert "creating EKS node group" in ours
    assert ACCESS_KEY_ID not in ours
