"""Talking to ARM when it pushes back: 429 with Retry-After is honoured (the stand-in's request
log shows the wait), transient 5xx and lost responses are retried without creating anything
twice, a Retry-After too long to sleep through becomes `requeue_after`, denied and rejected
requests fail, exhausted retries and dead endpoints wait. Also: the token never appears in logs,
and the stand-in's long-running operations satisfy the SDK's own LRO poller."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from aks_standin import ArmStandIn
from aks_support import (
    CLUSTER,
    NC12,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    TOKEN,
    converge,
    provisioner,
    request,
)
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerservice.aio import ContainerServiceClient
from azure.mgmt.containerservice.models import AgentPool
from kaito_aks import StaticTokenCredential, agent_pool_body, agent_pool_name

from kaito.testing import EmulatedCluster

pytestmark = pytest.mark.timeout(30)

POOL = agent_pool_name("default", "phi")
LIST = r"/agentPools$"
ONE_POOL = r"/agentPools/[^/]+$"


async def test_throttling_waits_for_retry_after(cluster: EmulatedCluster, arm: ArmStandIn) -> None:
    arm.inject("GET", LIST, 429, retry_after="1")
    started = time.monotonic()
    status = await provisioner(cluster, arm).provision(request())
    assert status.reason == "AgentPoolCreating"
    lists = arm.calls("GET", "/agentPools")
    assert [r.status for r in lists] == [429, 200]
    waited = lists[1].at - lists[0].at
    assert 0.9 <= waited < 5.0, waited
    assert time.monotonic() - started < 10


async def test_transient_errors_are_retried_and_the_put_is_idempotent(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.inject("PUT", ONE_POOL, 503, times=2)
    prov = provisioner(cluster, arm)
    status = await prov.provision(request())
    assert status.reason == "AgentPoolCreating"
    assert [r.status for r in arm.pool_calls("PUT")] == [503, 503, 201]
    assert [op.kind for op in arm.operations.values()] == ["create"]


async def test_a_lost_response_to_a_put_creates_nothing_twice(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    # the first PUT reaches AKS and starts the pool, but its answer is lost (500); the SDK
    # sends the same PUT again and AKS refuses it while the operation runs
    arm.inject("PUT", ONE_POOL, 500, after=True)
    prov = provisioner(cluster, arm)
    status = await prov.provision(request())
    assert not status.failed
    assert status.reason == "AgentPoolCreating"
    assert "an operation is in progress (OperationNotAllowed)" in status.message
    assert [r.status for r in arm.pool_calls("PUT")] == [500, 409]
    statuses = await converge(prov, request(), cluster)
    assert statuses[-1].ready
    assert [op.kind for op in arm.operations.values()] == ["create"]
    assert len(arm.pool_calls("PUT")) == 2


async def test_a_long_retry_after_becomes_requeue_after(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.inject("GET", LIST, 429, retry_after="120")
    prov = provisioner(cluster, arm, **{"max-retry-after": "30s"})
    started = time.monotonic()
    status = await prov.provision(request())
    assert time.monotonic() - started < 5, "a 2-minute Retry-After is not slept in the pass"
    assert (status.ready, status.failed, status.reason) == (False, False, "AzureThrottled")
    assert status.requeue_after == 120.0
    assert "HTTP 429" in status.message
    assert len(arm.calls("GET", "/agentPools")) == 1

    arm.inject("GET", LIST, 429, retry_after="120")
    assert await prov.release(request()) is False


async def test_denied_and_rejected_requests_fail(cluster: EmulatedCluster, arm: ArmStandIn) -> None:
    arm.inject(
        "GET",
        LIST,
        403,
        code="AuthorizationFailed",
        message="The client does not have authorization to perform action "
        "'Microsoft.ContainerService/managedClusters/agentPools/read'",
    )
    denied = await provisioner(cluster, arm).provision(request())
    assert (denied.failed, denied.reason) == (True, "AzureAuthorizationFailed")
    assert "AuthorizationFailed" in denied.message
    assert "agentPools/read" in denied.message

    wrong_cluster = provisioner(cluster, arm, **{"cluster-name": "no-such-cluster"})
    rejected = await wrong_cluster.provision(request())
    assert (rejected.failed, rejected.reason) == (True, "AzureRequestRejected")
    assert "HTTP 404" in rejected.message


async def test_exhausted_retries_wait_instead_of_failing(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.inject("GET", LIST, 500, times=10)
    status = await provisioner(cluster, arm, **{"max-retries": "2"}).provision(request())
    assert (status.failed, status.reason) == (False, "AzureRequestFailed")
    assert status.requeue_after == 5.0
    assert [r.status for r in arm.calls("GET", "/agentPools")] == [500, 500, 500]


async def test_an_unreachable_endpoint_waits(cluster: EmulatedCluster, arm: ArmStandIn) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prov = provisioner(
        cluster, arm, **{"arm-endpoint": f"http://127.0.0.1:{port}", "max-retries": "1"}
    )
    status = await prov.provision(request())
    assert (status.failed, status.reason) == (False, "AzureRequestFailed")


async def test_a_wrong_token_is_an_authorization_failure(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    prov = provisioner(cluster, arm, StaticTokenCredential("not-the-token"))
    status = await prov.provision(request())
    assert (status.failed, status.reason) == (True, "AzureAuthorizationFailed")


async def test_the_token_never_reaches_the_logs(
    cluster: EmulatedCluster, arm: ArmStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credential = StaticTokenCredential(TOKEN)
    prov = provisioner(cluster, arm, credential)
    arm.inject("GET", LIST, 429, retry_after="0")
    statuses = await converge(prov, request(), cluster)
    assert statuses[-1].ready
    arm.inject("DELETE", ONE_POOL, 403, code="AuthorizationFailed")
    with pytest.raises(Exception, match="AuthorizationFailed") as info:
        await prov.release(request())
    assert credential.requests > 0
    assert "creating agent pool" in caplog.text  # the provisioner logged
    assert "'Authorization': 'REDACTED'" in caplog.text  # the SDK logged its headers
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(credential)
    assert TOKEN not in str(info.value)
    assert all(TOKEN not in s.message for s in statuses)


async def test_the_standin_runs_long_running_operations_the_sdk_way(arm: ArmStandIn) -> None:
    """The SDK's own poller (Azure-AsyncOperation, then the final GET) against the stand-in:
    a create runs to Succeeded, a failing one raises with AKS's error, a delete completes."""
    body = AgentPool(agent_pool_body(request(), zones=()))
    async with ContainerServiceClient(
        StaticTokenCredential(TOKEN), SUBSCRIPTION, base_url=arm.url
    ) as client:
        poller = await client.agent_pools.begin_create_or_update(
            RESOURCE_GROUP, CLUSTER, POOL, body, polling_interval=0, enforce_https=False
        )
        assert poller.status() == "InProgress"
        pool = await poller.result()
        assert pool.provisioning_state == "Succeeded"
        assert pool.vm_size == NC12

        arm.fail_next("update", "ScaleFailed", "not enough capacity")
        scaled = AgentPool(agent_pool_body(request(count=3), zones=()))
        poller = await client.agent_pools.begin_create_or_update(
            RESOURCE_GROUP, CLUSTER, POOL, scaled, polling_interval=0, enforce_https=False
        )
        with pytest.raises(HttpResponseError, match="not enough capacity"):
            await poller.result()
        failed = await client.agent_pools.get(RESOURCE_GROUP, CLUSTER, POOL, enforce_https=False)
        assert failed.provisioning_state == "Failed"
        assert failed.status.provisioning_error.code == "ScaleFailed"

        deleting = await client.agent_pools.begin_delete(
            RESOURCE_GROUP, CLUSTER, POOL, polling_interval=0, enforce_https=False
        )
        await deleting.result()
        assert POOL not in arm.pools
    polled = [r for r in arm.log if "/operations/" in r.path]
    assert len(polled) >= 3, "each operation was polled through Azure-AsyncOperation"
