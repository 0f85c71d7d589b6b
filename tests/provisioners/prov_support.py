"""Builders shared by the provisioner tests: requests, GPU nodes, NodeClaim conditions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kaito.kube import NODE, NODE_CLAIM, KubeClient, PatchType, RawObject
from kaito.provisioners import WORKSPACE_LABEL, WORKSPACE_NAMESPACE_LABEL, NodeRequest

INSTANCE_TYPE = "node.kubernetes.io/instance-type"


def request(
    *,
    name: str = "phi",
    namespace: str = "default",
    instance_type: str = "Standard_NC12s_v3",
    count: int = 1,
    gpus_per_node: int = 1,
    disk_gib: int = 120,
    labels: Mapping[str, str] | None = None,
    expressions: Sequence[Mapping[str, object]] = (),
    preferred: Sequence[str] = (),
) -> NodeRequest:
    """A request the way the reconciler builds it: user labels plus kaito's workspace labels."""
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
        preferred_nodes=tuple(preferred),
        match_expressions=tuple(expressions),
    )


def ws_labels(name: str = "phi", namespace: str = "default") -> dict[str, str]:
    return {WORKSPACE_LABEL: name, WORKSPACE_NAMESPACE_LABEL: namespace}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gpu_node(
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    instance_type: str | None = "Standard_NC12s_v3",
    gpus: int | None = 2,
    ready: bool = True,
    unschedulable: bool = False,
) -> RawObject:
    """A Node as a kubelet with the NVIDIA device plugin would report it."""
    all_labels = dict(labels or {})
    if instance_type is not None:
        all_labels[INSTANCE_TYPE] = instance_type
    resources: dict[str, str] = {"cpu": "12", "memory": "224Gi", "pods": "110"}
    if gpus is not None:
        resources["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": all_labels},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "lastHeartbeatTime": now(),
                    "lastTransitionTime": now(),
                }
            ],
        },
    }


async def add_node(client: KubeClient, node: RawObject) -> RawObject:
    return await client.create(NODE, node)


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": type_, "status": status, "lastTransitionTime": now()}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


async def set_claim_status(
    client: KubeClient,
    name: str,
    conditions: Sequence[Mapping[str, Any]],
    node_name: str | None = None,
) -> RawObject:
    """Write a NodeClaim's status the way Karpenter does."""
    status: dict[str, Any] = {"conditions": list(conditions)}
    if node_name is not None:
        status["nodeName"] = node_name
    return await client.patch_status(
        NODE_CLAIM, name, {"status": status}, patch_type=PatchType.MERGE
    )


READY_CLAIM = (
    cond("Launched", "True"),
    cond("Registered", "True"),
    cond("Initialized", "True"),
    cond("Ready", "True"),
)
