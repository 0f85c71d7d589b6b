"""The provisioner contract: how kaito gets GPU nodes for a workspace.

A provisioner turns "N nodes of instance type X for workspace W" into nodes that join the cluster,
and reports how far that has come. kaito ships the `karpenter`, `byo` and `fake` provisioners;
cloud ones (`aks`, `aws`) come as plugin distributions. All of them are found the same way: a
factory registered under the `kaito.provisioners` entry-point group, called with a
`ProvisionerContext`.

The reconciler calls `provision` on every pass, so it must be idempotent and cheap when nothing
changed: look at what exists (by names or labels derived from the request, never by remembering
state in memory), create only what is missing, and describe what is there. `release` is called
when the workspace is deleted and is called again until it answers True. Neither may block for
long: start long operations and report progress; the reconciler comes back (it is woken by
watches on the nodes, and requeues after `ProvisionStatus.requeue_after`).

Readiness means the same for every provisioner: `count` Nodes that are Ready, carry the requested
instance type and have allocatable `nvidia.com/gpu` (or, for CPU-only local nodes, are marked
usable by kaito). `ProvisionStatus.nodes` names them in a stable order.

A provisioner that works with nodes it did not choose (bring-your-own) may also be a
`NodeDescriber`: before planning, the reconciler asks it `describe_nodes(request)` and sizes the
workload against the `NodeFacts` it answers (instance type, GPUs per node, memory per GPU), since
such a workspace may name no instance type at all. Check with `isinstance(p, NodeDescriber)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from kaito.presets import GpuSku, SkuCatalog, builtin_skus

if TYPE_CHECKING:
    from kaito.kube import Client

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource name of NVIDIA GPUs, requested by workloads and offered by nodes."""

GPU_TAINT_KEY = "sku"
GPU_TAINT_VALUE = "gpu"
"""Nodes kaito provisions carry the taint `sku=gpu:NoSchedule`; its workloads tolerate it."""

WORKSPACE_LABEL = "kaito.sh/workspace"
WORKSPACE_NAMESPACE_LABEL = "kaito.sh/workspacenamespace"
"""Labels that tie nodes and node requests to the workspace that asked for them."""


@attrs.frozen
class Taint:
    key: str
    value: str
    effect: str = "NoSchedule"


@attrs.frozen
class NodeRequest:
    """What a workspace needs from a provisioner.

    `name` is deterministic for the workspace (derived from namespace and name), so a provisioner
    that crashed after creating something finds it again instead of creating a duplicate.
    """

    workspace_namespace: str
    workspace_name: str
    workspace_uid: str
    name: str
    instance_type: str
    count: int
    gpus_per_node: int
    disk_gib: int
    labels: Mapping[str, str] = attrs.field(factory=dict)
    """Labels every node must carry: the workspace's labelSelector plus kaito's own."""
    taints: tuple[Taint, ...] = (Taint(GPU_TAINT_KEY, GPU_TAINT_VALUE),)
    preferred_nodes: tuple[str, ...] = ()
    """Existing nodes the user listed in `resource.preferredNodes` (bring-your-own)."""
    match_expressions: tuple[Mapping[str, object], ...] = ()
    """`In` expressions of the workspace's labelSelector, which nodes must also satisfy."""


@attrs.frozen
class ProvisionStatus:
    """What a provisioner found on this pass.

    `reason` is a CamelCase word and `message` a sentence a user can act on ("waiting for 1 of 2
    nodes", "no capacity for Standard_NC6s_v3 in eastus"); both end up in the workspace's
    conditions. `failed` marks a state that will not heal by waiting (quota exhausted, SKU not
    offered), so the reconciler reports it as such instead of waiting silently.
    """

    ready: bool
    nodes: tuple[str, ...] = ()
    reason: str = ""
    message: str = ""
    failed: bool = False
    requeue_after: float | None = None
    node_claims_ready: bool | None = None
    """For provisioners that go through Karpenter NodeClaims: whether all of them are Ready
    (reported as the NodeClaimReady condition); None for the others."""


@runtime_checkable
class Provisioner(Protocol):
    """Gets nodes for workspaces. Implementations must be idempotent; see the module docstring."""

    name: str

    async def provision(self, request: NodeRequest) -> ProvisionStatus:
        """Make sure the requested nodes exist or are on their way, and report their state."""
        ...

    async def release(self, request: NodeRequest) -> bool:
        """Give the workspace's nodes back. Answer True once nothing of them is left."""
        ...


@attrs.frozen
class ProvisionerContext:
    """What a provisioner factory receives.

    `options` are the operator's settings for this provisioner (from flags or the environment,
    for example the Karpenter node class), as plain strings; a factory validates the ones it
    understands and raises `ValueError` naming an unknown or malformed one.
    """

    client: Client
    options: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class NodeFacts:
    """What a set of existing nodes offers, for sizing a workload against them.

    Each fact is None when the nodes do not report it or do not agree on it; `problems` then
    says which nodes differ. `gpu_count` is GPUs per node (the smallest allocatable count, or
    GPU feature discovery's `nvidia.com/gpu.count`), `gpu_memory_bytes` the memory of one GPU.
    """

    nodes: tuple[str, ...] = ()
    instance_type: str | None = None
    gpu_product: str | None = None
    gpu_count: int | None = None
    gpu_memory_bytes: int | None = None
    compute_capability: str | None = None
    """CUDA compute capability ("8.0"), from GPU feature discovery's compute labels."""
    problems: tuple[str, ...] = ()

    def sku(self, catalog: SkuCatalog | None = None) -> GpuSku | None:
        """The instance type as a `GpuSku` for the planner, or None when too little is known
        or the nodes have `problems` (sizing one workload for unlike nodes means nothing).

        A known instance type comes from `catalog` (default: the built-in one); otherwise one
        is described from the GPU facts, named after the instance type or the GPU product.
        """
        if self.problems:
            return None
        skus = builtin_skus() if catalog is None else catalog
        if self.instance_type and self.instance_type in skus:
            return skus[self.instance_type]
        if not (
            self.gpu_product
            and self.gpu_count
            and self.gpu_memory_bytes
            and self.compute_capability
        ):
            return None
        label = self.instance_type or f"byo-{self.gpu_product}"
        name = "".join(c if c.isalnum() or c in "._-" else "-" for c in label).strip("-._")
        return GpuSku(
            name=name or "byo",
            cloud="byo",
            gpu_model=self.gpu_product,
            gpu_count=self.gpu_count,
            gpu_memory_bytes=self.gpu_memory_bytes,
            compute_capability=self.compute_capability,
        )


@runtime_checkable
class NodeDescriber(Protocol):
    """A provisioner that can say what the nodes it would use offer (see the module docstring)."""

    async def describe_nodes(self, request: NodeRequest) -> NodeFacts:
        """Facts about the nodes matching the request; `request.instance_type` may be empty."""
        ...


ProvisionerFactory = Callable[[ProvisionerContext], Provisioner]
"""The object an entry point in the `kaito.provisioners` group loads: a class or a function."""
