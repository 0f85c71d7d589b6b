"""Builders for the objects the simulator tests create, and small helpers.

The shapes follow what kaito creates: NodeClaims like the workspace controller's (a nodepool
label, an instance-type requirement, the `sku=gpu` taint), StatefulSets with GPU limits and
the matching toleration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from kaito.kube.simulators import Simulators

StartSims = Callable[..., Awaitable[Simulators]]
"""`await start_sims(config=None, *, clock=None)`: started simulators, stopped after the test."""


# -- object builders --------------------------------------------------------------------------


def nodeclaim(
    name: str,
    instance_type: str = "Standard_NC24ads_A100_v4",
    *,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    startup_taints: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A NodeClaim shaped like the ones kaito creates for a workspace."""
    spec: dict[str, Any] = {
        "nodeClassRef": {"group": "karpenter.azure.com", "kind": "AKSNodeClass", "name": "default"},
        "requirements": [
            {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
            {
                "key": "node.kubernetes.io/instance-type",
                "operator": "In",
                "values": [instance_type],
            },
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        ],
        "resources": {"requests": {"ephemeral-storage": "100Gi"}},
        "taints": taints
        if taints is not None
        else [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
    }
    if startup_taints:
        spec["startupTaints"] = startup_taints
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"karpenter.sh/nodepool": "kaito", **(labels or {})},
    }
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": metadata,
        "spec": spec,
    }


def node(
    name: str,
    *,
    gpus: int = 0,
    cpu: str = "8",
    memory: str = "32Gi",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    ready: bool = True,
) -> dict[str, Any]:
    """A Node as a test seeds it: capacity, labels, taints, and (by default) Ready."""
    capacity = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints} if taints else {},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }
    if ready:
        obj["status"]["conditions"] = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }
        ]
    return obj


def pod_template(
    *,
    labels: dict[str, str],
    image: str = "mcr.microsoft.com/aks/kaito/kaito-base:0.1",
    gpus: int = 0,
    tolerations: list[dict[str, Any]] | None = None,
    node_selector: dict[str, str] | None = None,
    affinity: dict[str, Any] | None = None,
    restart_policy: str | None = None,
    cpu: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    resources: dict[str, Any] = {}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    if cpu:
        resources["requests"] = {"cpu": cpu}
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {"containers": [container]}
    if tolerations:
        spec["tolerations"] = tolerations
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = affinity
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    return {"metadata": {"labels": labels}, "spec": spec}


GPU_TOLERATION = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}


def statefulset(
    name: str, replicas: int = 1, *, namespace: str = "default", **template: Any
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "serviceName": f"{name}-headless",
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": pod_template(labels=labels, **template),
        },
    }


def deployment(name: str, replicas: int = 1, **template: Any) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": pod_template(labels=labels, **template),
        },
    }


def job(
    name: str, *, completions: int = 1, backoff_limit: int = 6, **template: Any
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "completions": completions,
            "parallelism": 1,
            "backoffLimit": backoff_limit,
            "template": pod_template(labels=labels, restart_policy="Never", **template),
        },
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind:
            return dict(cond)
    return None


def cstatus(obj: dict[str, Any], kind: str) -> str | None:
    """The status ("True", "False", "Unknown") of a condition, None when it is absent."""
    cond = condition(obj, kind)
    return None if cond is None else str(cond["status"])


async def eventually(check: Callable[[], Awaitable[None]], within: float = 5.0) -> None:
    """Retry `check` until it passes (for effects the simulators cannot signal, such as a
    watch reconnecting); the last AssertionError is raised when time runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await check()
            return
        except AssertionError:
            if loop.time() >= deadline:
                raise
        await asyncio.sleep(0.02)
