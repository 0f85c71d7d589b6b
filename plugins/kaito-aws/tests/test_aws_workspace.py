"""kaito's reconciler with the aws provisioner, end to end: a Workspace on an AWS instance type
gets its EKS node group, waits for it with the provisioner's reason in its conditions, becomes
ready once the group's nodes join the (emulated) cluster and its pod runs, and on deletion the
node group is released before the workspace goes away."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import pytest
from aws_support import AwsWorld, join_nodes, provisioner
from kaito_aws import nodegroup_name

from kaito.kube import WORKSPACE, KubeClient, NotFound
from kaito.plugins import Registry
from kaito.reconcile import TerminalError, WorkspaceReconciler
from kaito.runtimes.hf._runtime import HuggingFaceRuntime
from kaito.testing import kaito_cluster

pytestmark = pytest.mark.timeout(60)

NS = "default"
WORKSPACE_DOC = {
    "apiVersion": "kaito.sh/v1beta1",
    "kind": "Workspace",
    "metadata": {"name": "phi-on-eks", "namespace": NS},
    "resource": {"instanceType": "g5.xlarge", "labelSelector": {"matchLabels": {"apps": "phi"}}},
    "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
}


def _condition(ws: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any]:
    for cond in ((ws or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


async def _workspace(client: KubeClient) -> dict[str, Any] | None:
    try:
        return await client.get(WORKSPACE, "phi-on-eks", namespace=NS)
    except NotFound:
        return None


async def test_a_workspace_on_eks_from_creation_to_deletion(world: AwsWorld) -> None:
    async with kaito_cluster() as cluster:
        client = cluster.client
        sims = cluster.simulators
        assert sims is not None
        registry = Registry()
        registry.add_runtime("hf", HuggingFaceRuntime)
        reconciler = WorkspaceReconciler(
            client, provisioner=provisioner(client, world), registry=registry
        )
        key = f"{NS}/phi-on-eks"
        await client.create(WORKSPACE, WORKSPACE_DOC, namespace=NS)

        result = await reconciler.reconcile(key)
        assert result.requeue_after == 30.0
        ws = await _workspace(client)
        resource = _condition(ws, "ResourceReady")
        assert (resource["status"], resource["reason"]) == ("False", "NodeGroupCreating")
        name = nodegroup_name(NS, "phi-on-eks")
        group = world.nodegroup(name)
        assert group["labels"]["apps"] == "phi"
        assert group["instanceTypes"] == ["g5.xlarge"]

        await join_nodes(client, world, name)
        for _ in range(10):
            with contextlib.suppress(TerminalError):
                await reconciler.reconcile(key)
            await sims.idle()
            ws = await _workspace(client)
            if _condition(ws, "WorkspaceReady").get("status") == "True":
                break
        assert _condition(ws, "ResourceReady")["status"] == "True"
        assert _condition(ws, "WorkspaceReady")["status"] == "True", (ws or {}).get("status")
        assert len(world.proxy.ops("CreateNodegroup")) == 1

        await client.delete(WORKSPACE, "phi-on-eks", namespace=NS)
        for _ in range(10):
            await reconciler.reconcile(key)
            await sims.idle()
            if await _workspace(client) is None:
                break
        assert await _workspace(client) is None
        assert world.nodegroup_names() == []
        assert len(world.proxy.ops("DeleteNodegroup")) == 1
