"""Shared pieces of the AKS provisioner tests: the cluster's coordinates, the VM sizes and quota
the stand-in offers, AKS's Kubernetes side (nodes of a pool joining and leaving the emulated
cluster), requests, and a bounded loop of reconcile passes."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from aks_standin import JSON, ArmStandIn, usage, vm_sku
from kaito_aks import AGENTPOOL_LABEL, AKSProvisioner, StaticTokenCredential

from kaito.kube import NODE, KubeClient, NotFound
from kaito.presets import builtin_skus
from kaito.provisioners import (
    WORKSPACE_LABEL,
    WORKSPACE_NAMESPACE_LABEL,
    NodeRequest,
    ProvisionerContext,
    ProvisionStatus,
)
from kaito.testing import EmulatedCluster

SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
RESOURCE_GROUP = "rg-kaito"
CLUSTER = "aks-kaito"
LOCATION = "eastus"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOi.test-token-value-not-for-logs"

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
NC12 = "Standard_NC12s_v3"
A100 = "Standard_NC24ads_A100_v4"


def default_skus() -> list[JSON]:
    return [
        vm_sku("Standard_NC6s_v3", family="standardNCSv3Family", vcpus=6),
        vm_sku(NC12, family="standardNCSv3Family", vcpus=12),
        vm_sku(A100, family="standardNCADSA100v4Family", vcpus=24),
        vm_sku("Standard_D4s_v5", family="standardDSv5Family", vcpus=4),
    ]


def default_usages() -> list[JSON]:
    return [
        usage("cores", 8, 350),
        usage("standardNCSv3Family", 0, 48),
        usage("standardNCADSA100v4Family", 0, 24),
        usage("standardDSv5Family", 8, 100),
    ]


def request(
    *,
    name: str = "phi",
    namespace: str = "default",
    instance_type: str = NC12,
    count: int = 1,
    gpus_per_node: int = 1,
    disk_gib: int = 120,
    labels: Mapping[str, str] | None = None,
    expressions: Sequence[Mapping[str, object]] = (),
) -> NodeRequest:
    """A request the way the reconciler builds it: the user's labels plus kaito's own."""
    return NodeRequest(
        workspace_namespace=namespace,
        workspace_name=name,
        workspace_uid="uid-1",
        name=name,
        instance_type=instance_type,
        count=count,
        gpus_per_node=gpus_per_node,
        disk_gib=disk_gib,
        labels={
            **(labels or {}),
            WORKSPACE_LABEL: name,
            WORKSPACE_NAMESPACE_LABEL: namespace,
        },
        match_expressions=tuple(expressions),
    )


def _taint(text: str) -> dict[str, str]:
    key_value, effect = text.rsplit(":", 1)
    key, value = key_value.split("=", 1)
    return {"key": key, "value": value, "effect": effect}


class AksNodes:
    """AKS's Kubernetes side: a pool's VMs register as Nodes once the pool succeeds (without a
    Ready condition yet, like a kubelet that just started; the emulator's node simulator then
    reports them Ready), and they leave when the pool is deleted or scaled down."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.skus = builtin_skus()

    @staticmethod
    def node_name(pool: str, index: int) -> str:
        return f"aks-{pool}-12345678-vmss{index:06d}"

    async def pool_succeeded(self, pool: JSON) -> None:
        name = str(pool["name"])
        props: dict[str, Any] = pool["properties"]
        count = int(props["count"])
        vm_size = str(props["vmSize"])
        gpus = self.skus[vm_size].gpu_count if vm_size in self.skus else 0
        existing = await self.names(name)
        for index in range(count):
            node_name = self.node_name(name, index)
            if node_name in existing:
                continue
            resources = {"cpu": "12", "memory": "220Gi", "pods": "110"}
            if gpus:
                resources["nvidia.com/gpu"] = str(gpus)
            await self.client.create(
                NODE,
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": node_name,
                        "labels": {
                            **dict(props.get("nodeLabels") or {}),
                            AGENTPOOL_LABEL: name,
                            "kubernetes.azure.com/mode": str(props.get("mode", "User")).lower(),
                            INSTANCE_TYPE_LABEL: vm_size,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/hostname": node_name,
                        },
                    },
                    "spec": {
                        "providerID": f"azure:///subscriptions/{SUBSCRIPTION}/vmss/{node_name}",
                        "taints": [_taint(t) for t in props.get("nodeTaints") or []],
                    },
                    "status": {"capacity": resources, "allocatable": dict(resources)},
                },
            )
        for node_name in sorted(existing):
            index = int(node_name.rsplit("vmss", 1)[1])
            if index >= count:
                await self._delete(node_name)

    async def pool_deleted(self, name: str) -> None:
        for node_name in await self.names(name):
            await self._delete(node_name)

    async def names(self, pool: str) -> set[str]:
        listed = await self.client.list(NODE, label_selector=f"{AGENTPOOL_LABEL}={pool}")
        return {n["metadata"]["name"] for n in listed.items}

    async def _delete(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            await self.client.delete(NODE, name)


def provisioner(
    cluster: EmulatedCluster,
    arm: ArmStandIn,
    credential: StaticTokenCredential | None = None,
    /,
    **options: str,
) -> AKSProvisioner:
    """An AKS provisioner pointed at the stand-in, with short intervals for tests; `options`
    (dashed names as keyword arguments or a ** mapping) override the defaults."""
    base = {
        "subscription-id": SUBSCRIPTION,
        "resource-group": RESOURCE_GROUP,
        "cluster-name": CLUSTER,
        "arm-endpoint": arm.url,
        "poll-interval": "5s",
        "retry-backoff": "0.01",
    }
    return AKSProvisioner(
        ProvisionerContext(cluster.client, {**base, **options}),
        credential=credential or StaticTokenCredential(TOKEN),
        environ={},
    )


async def converge(
    prov: AKSProvisioner,
    req: NodeRequest,
    cluster: EmulatedCluster,
    *,
    passes: int = 8,
) -> list[ProvisionStatus]:
    """Reconcile passes until ready or failed (at most `passes`), letting the simulators
    settle in between; returns every status seen."""
    seen: list[ProvisionStatus] = []
    for _ in range(passes):
        status = await prov.provision(req)
        seen.append(status)
        if status.ready or status.failed:
            break
        if cluster.simulators is not None:
            await cluster.simulators.idle()
    return seen
