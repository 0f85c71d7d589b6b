"""The `fake` provisioner: GPU nodes that exist at once, for tests, demos and the emulator.

It writes Node objects straight into the API server, already Ready, labelled and tainted the
way a Karpenter-provisioned GPU node would be, with `nvidia.com/gpu` capacity from the SKU
catalog. No machine stands behind them, so it suits kaito's emulator (or a cluster where the
nodes are simulated, as with KWOK); the workload objects the reconciler then creates are real
and can be checked like on any cluster.

Like the real provisioners it derives everything from the cluster on each pass: nodes are
found by the workspace labels, named deterministically (the NodeClaim naming rule), created
only when missing and deleted when surplus, so it exercises the same idempotency paths.

Memory is not in the SKU catalog; the fake gives each node 8 GiB per vCPU unless the `memory`
option says otherwise. That figure only has to be plausible: nothing is scheduled by it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from kaito.kube import NODE, AlreadyExists, Client, NotFound, RawObject
from kaito.presets import GpuSku, SkuCatalog, builtin_skus
from kaito.provisioners._nodes import (
    ARCH_LABEL,
    GPU_COMPUTE_MAJOR_LABEL,
    GPU_COMPUTE_MINOR_LABEL,
    GPU_COUNT_LABEL,
    GPU_MEMORY_LABEL,
    GPU_PRODUCT_LABEL,
    HOSTNAME_LABEL,
    INSTANCE_TYPE_LABEL,
    OS_LABEL,
    assess_nodes,
    check_options,
    is_terminating,
    list_nodes,
    name_of,
    node_name,
    selector_labels,
    selector_string,
    unusable_because,
    workspace_labels,
)
from kaito.provisioners._protocol import (
    GPU_RESOURCE,
    NodeRequest,
    ProvisionerContext,
    ProvisionStatus,
)

__all__ = ["FakeProvisioner", "node_name"]

OPTIONS: Final = ("cpu", "memory", "pods")
DEFAULT_PODS: Final = 110
DEFAULT_CPU: Final = 8
MEMORY_GIB_PER_CPU: Final = 8

REASON_READY: Final = "NodesReady"
REASON_WAITING: Final = "WaitingForNodes"
REASON_UNKNOWN_SKU: Final = "UnknownInstanceType"
REASON_INSUFFICIENT: Final = "InsufficientGPUs"
REASON_INVALID: Final = "InvalidNodeRequest"

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


def _positive_int(option: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError(
            f"option {option}={value!r} of the fake provisioner must be a positive integer"
        )
    return number


def _label_value(text: str) -> str:
    """Text as a label value, the way GPU feature discovery writes the product ("NVIDIA-A100")."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")
    return value[:63].rstrip("-_.")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeProvisioner:
    """Creates Ready GPU Node objects directly; release deletes them.

    Options (all optional): `cpu` (vCPUs per node; default the SKU's, else 8), `memory` (a
    quantity such as "64Gi"; default 8 GiB per vCPU), `pods` (default 110). `skus` replaces
    the built-in SKU catalog (for instance types of one's own).
    """

    name = "fake"

    def __init__(self, ctx: ProvisionerContext, *, skus: SkuCatalog | None = None) -> None:
        options = ctx.options
        check_options(self.name, options, OPTIONS)
        self.cpu = _positive_int("cpu", options["cpu"]) if "cpu" in options else None
        memory = options.get("memory")
        if memory is not None and not _QUANTITY.match(memory):
            raise ValueError(
                f"option memory={memory!r} of the fake provisioner is not a quantity like '64Gi'"
            )
        self.memory = memory
        self.pods = _positive_int("pods", options["pods"]) if "pods" in options else DEFAULT_PODS
        self.client: Client = ctx.client
        self.skus = builtin_skus() if skus is None else skus

    # -- the desired objects (no I/O) -------------------------------------------------------

    def node(self, request: NodeRequest, index: int, sku: GpuSku) -> RawObject:
        """The Node the fake makes for the workspace's `index`-th node, status included."""
        name = node_name(request.workspace_namespace, request.workspace_name, index)
        user_labels, _ = selector_labels(request)
        major, _, minor = sku.compute_capability.partition(".")
        labels = {
            **user_labels,
            **workspace_labels(request),
            HOSTNAME_LABEL: name,
            OS_LABEL: "linux",
            ARCH_LABEL: "amd64",
            INSTANCE_TYPE_LABEL: sku.name,
            GPU_PRODUCT_LABEL: _label_value(sku.gpu_model),
            GPU_COUNT_LABEL: str(sku.gpu_count),
            GPU_MEMORY_LABEL: str(sku.gpu_memory_bytes // 2**20),
            GPU_COMPUTE_MAJOR_LABEL: major,
            GPU_COMPUTE_MINOR_LABEL: minor,
        }
        return {
            "apiVersion": NODE.api_version,
            "kind": NODE.kind,
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "taints": [
                    {"key": t.key, "value": t.value, "effect": t.effect} for t in request.taints
                ],
            },
            "status": self._status(request, name, sku),
        }

    def _status(self, request: NodeRequest, name: str, sku: GpuSku) -> dict[str, Any]:
        cpu = self.cpu or sku.vcpus or DEFAULT_CPU
        resources = {
            "cpu": str(cpu),
            "memory": self.memory or f"{cpu * MEMORY_GIB_PER_CPU}Gi",
            "pods": str(self.pods),
            "ephemeral-storage": f"{request.disk_gib}Gi",
            GPU_RESOURCE: str(sku.gpu_count),
        }
        now = _now()
        return {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "FakeNodeReady",
                    "message": "node made Ready by kaito's fake provisioner",
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": now,
                }
            ],
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {"operatingSystem": "linux", "architecture": "amd64"},
        }

    # -- the protocol ------------------------------------------------------------------------

    async def provision(self, request: NodeRequest) -> ProvisionStatus:
        """Create the missing nodes (Ready at once), delete surplus ones, report readiness."""
        sku = self.skus.get(request.instance_type) if request.instance_type else None
        if sku is None:
            return ProvisionStatus(
                ready=False,
                failed=True,
                reason=REASON_UNKNOWN_SKU,
                message=f"instance type {request.instance_type or '(none)'} is not in the SKU "
                "catalog of the fake provisioner",
            )
        if sku.gpu_count < request.gpus_per_node:
            return ProvisionStatus(
                ready=False,
                failed=True,
                reason=REASON_INSUFFICIENT,
                message=f"{sku.name} has {sku.gpu_count} GPUs, the plan needs "
                f"{request.gpus_per_node} per node",
            )
        try:
            wanted = [self.node(request, i, sku) for i in range(request.count)]
        except ValueError as exc:
            return ProvisionStatus(
                ready=False, failed=True, reason=REASON_INVALID, message=str(exc)
            )

        selector = selector_string(workspace_labels(request))
        existing = {name_of(n): n for n in await list_nodes(self.client, selector)}
        wanted_names = {name_of(n) for n in wanted}
        for name, node in existing.items():
            if name not in wanted_names and not is_terminating(node):
                await self._delete(name)
        current: list[RawObject] = []
        for node in wanted:
            found = existing.get(name_of(node))
            if found is None:
                found = await self._create(node)
            if not is_terminating(found) and unusable_because(
                found, sku.name, request.gpus_per_node
            ):
                found = await self.client.patch_status(
                    NODE, name_of(found), {"status": node["status"]}, field_manager="kaito"
                )
            current.append(found)

        assessment = assess_nodes(
            current,
            count=request.count,
            instance_type=sku.name,
            gpus_per_node=request.gpus_per_node,
        )
        if assessment.enough:
            return ProvisionStatus(
                ready=True, nodes=assessment.ready, reason=REASON_READY, message=assessment.message
            )
        # A node of the same name is still being deleted (from an earlier workspace); it
        # goes away on its own, and the next pass creates the new one.
        return ProvisionStatus(
            ready=False,
            nodes=assessment.ready,
            reason=REASON_WAITING,
            message=assessment.message,
            requeue_after=1.0,
        )

    async def release(self, request: NodeRequest) -> bool:
        """Delete the workspace's nodes; True once none is left."""
        selector = selector_string(workspace_labels(request))
        left = False
        for node in await list_nodes(self.client, selector):
            if is_terminating(node) or not await self._delete(name_of(node)):
                left = True
        return not left

    # -- helpers -----------------------------------------------------------------------------

    async def _create(self, node: Mapping[str, Any]) -> RawObject:
        try:
            return await self.client.create(NODE, node)
        except AlreadyExists:
            return await self.client.get(NODE, name_of(node))

    async def _delete(self, name: str) -> bool:
        try:
            result = await self.client.delete(NODE, name)
        except NotFound:
            return True
        return result.gone
