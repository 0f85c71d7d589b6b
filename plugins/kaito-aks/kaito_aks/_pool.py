"""The agent pool of a workspace, as data: its name, its tags, its body, and how to read one.

Nothing here does I/O, so what kaito asks AKS for can be checked without a cloud.

Name. AKS limits Linux agent pool names to 12 lowercase alphanumerics starting with a letter,
unique within the cluster. kaito's deterministic node stem fits exactly: "ws" + the first 10 hex
digits of sha256("<namespace>/<name>"). The same workspace always maps to the same pool, so a
pass after a crash finds the pool an earlier pass created instead of making a second one; a
collision needs 40 equal bits of two hashes in one cluster, and it is detected rather than
trusted (a pool of that name without this workspace's tags is never touched).

Tags. Pools carry `kaito.sh_workspace` and `kaito.sh_workspacenamespace`. These are kaito's
`kaito.sh/workspace` labels with the slash replaced by an underscore, because Azure rejects tag
names containing `/` (along with `<>%&\\?`); Karpenter's Azure provider spells its tags the same
way. The tags, not the name, say whom a pool belongs to: release deletes only tagged pools, and a
tagged pool under another name (left by an older naming or a half-finished replacement) is
found and removed before anything new is created.

Body. Mode User (a GPU pool never hosts system pods), Linux on a virtual machine scale set,
`vmSize` = the instance type, `count` = the plan's node count, the OS disk from the plan (at
least AKS's minimum of 30 GiB), the GPU taint, and node labels: the workspace's labelSelector
plus kaito's workspace labels, so the workspace's pods select exactly these nodes. AKS itself
labels every node with `kubernetes.azure.com/agentpool: <pool>`, which is how the nodes are
found again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from kaito.provisioners import WORKSPACE_LABEL, WORKSPACE_NAMESPACE_LABEL, NodeRequest
from kaito.provisioners.nodes import node_base_name, selector_labels, workspace_labels

AGENTPOOL_LABEL: Final = "kubernetes.azure.com/agentpool"
"""The label AKS puts on every node of an agent pool, valued with the pool's name."""

TAG_WORKSPACE: Final = WORKSPACE_LABEL.replace("/", "_")
TAG_WORKSPACE_NAMESPACE: Final = WORKSPACE_NAMESPACE_LABEL.replace("/", "_")

MAX_POOL_NAME: Final = 12
"""AKS's limit for Linux agent pool names."""
MIN_OS_DISK_GIB: Final = 30
MAX_OS_DISK_GIB: Final = 2048
MAX_POOL_COUNT: Final = 1000

RESERVED_LABEL_PREFIXES: Final = ("kubernetes.azure.com/",)
"""AKS refuses node labels under its own prefix."""

TERMINAL_STATES: Final = frozenset({"Succeeded", "Failed", "Canceled"})


def agent_pool_name(namespace: str, name: str) -> str:
    """The workspace's agent pool name: "ws" + 10 hex digits, 12 characters."""
    return node_base_name(namespace, name)


def pool_tags(request: NodeRequest) -> dict[str, str]:
    """The Azure tags that tie a pool to its workspace."""
    return {
        TAG_WORKSPACE: request.workspace_name,
        TAG_WORKSPACE_NAMESPACE: request.workspace_namespace,
    }


def node_labels(request: NodeRequest) -> dict[str, str]:
    """The labels AKS puts on the pool's nodes; `ValueError` when they cannot satisfy the
    workspace's labelSelector.

    matchLabels and single-value `In` expressions become labels as they are. Other expressions
    must still hold on the nodes: a multi-value `In` takes its first value and an `Exists` gets
    the value "true"; `NotIn` and `DoesNotExist` hold as long as no label contradicts them,
    which is checked.
    """
    labels, rest = selector_labels(request)
    for expr in rest:
        if expr.key in labels:
            continue
        if expr.operator == "In":
            labels[expr.key] = expr.values[0]
        elif expr.operator == "Exists":
            labels[expr.key] = "true"
    labels.update(workspace_labels(request))
    for expr in rest:
        if not expr.matches(labels):
            raise ValueError(
                f"the workspace's label selector ({expr.selector()}) contradicts its "
                "matchLabels; no node can satisfy it"
            )
    for key in labels:
        if key.startswith(RESERVED_LABEL_PREFIXES):
            raise ValueError(f"AKS does not allow setting node label {key!r}")
    return labels


def node_taints(request: NodeRequest) -> list[str]:
    """Taints in AKS's `key=value:Effect` notation."""
    return [f"{t.key}={t.value}:{t.effect}" for t in request.taints]


def os_disk_gib(request: NodeRequest) -> int | None:
    """The plan's disk within AKS's bounds; None leaves AKS's default."""
    if request.disk_gib <= 0:
        return None
    return min(max(request.disk_gib, MIN_OS_DISK_GIB), MAX_OS_DISK_GIB)


def agent_pool_body(request: NodeRequest, *, zones: Sequence[str] = ()) -> dict[str, Any]:
    """The agent pool to PUT (create or scale), as ARM JSON. Raises `ValueError` for a request
    AKS would refuse."""
    nodes = request.count
    if not request.instance_type:
        raise ValueError("the aks provisioner needs resource.instanceType (an Azure VM size)")
    if not 1 <= nodes <= MAX_POOL_COUNT:
        raise ValueError(f"an AKS agent pool holds 1 to {MAX_POOL_COUNT} nodes, not {nodes}")
    properties: dict[str, Any] = {
        "count": nodes,
        "vmSize": request.instance_type,
        "mode": "User",
        "osType": "Linux",
        "type": "VirtualMachineScaleSets",
        "nodeLabels": node_labels(request),
        "nodeTaints": node_taints(request),
        "tags": pool_tags(request),
    }
    disk = os_disk_gib(request)
    if disk is not None:
        properties["osDiskSizeGB"] = disk
    if zones:
        properties["availabilityZones"] = list(zones)
    return {"properties": properties}


@attrs.frozen
class PoolView:
    """What kaito reads from an agent pool (ARM JSON of `agentPools` GET or list)."""

    name: str
    vm_size: str
    count: int
    state: str
    tags: Mapping[str, str]
    error_code: str = ""
    error_message: str = ""

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> PoolView:
        props: Mapping[str, Any] = raw.get("properties") or {}
        error: Mapping[str, Any] = (props.get("status") or {}).get("provisioningError") or {}
        count = props.get("count")
        return cls(
            name=str(raw.get("name") or ""),
            vm_size=str(props.get("vmSize") or ""),
            count=count if isinstance(count, int) else 0,
            state=str(props.get("provisioningState") or ""),
            tags=dict(props.get("tags") or {}),
            error_code=str(error.get("code") or ""),
            error_message=str(error.get("message") or ""),
        )

    def belongs_to(self, request: NodeRequest) -> bool:
        """True when the pool's kaito tags name this workspace."""
        return (
            self.tags.get(TAG_WORKSPACE) == request.workspace_name
            and self.tags.get(TAG_WORKSPACE_NAMESPACE) == request.workspace_namespace
        )

    @property
    def deleting(self) -> bool:
        return self.state == "Deleting"

    @property
    def busy(self) -> bool:
        """An operation (create, scale, upgrade, delete) is still running on the pool."""
        return self.state not in TERMINAL_STATES

    def failure(self) -> str:
        """The pool's provisioning error as one sentence."""
        if self.error_code and self.error_message:
            return f"{self.error_code}: {self.error_message}"
        return self.error_message or self.error_code or "AKS reported no error details"


@attrs.frozen
class PoolSet:
    """The cluster's agent pools sorted by what they mean for one workspace."""

    mine: PoolView | None
    """The pool with the workspace's name and tags."""
    squatter: PoolView | None
    """A pool with the workspace's name that belongs to someone else."""
    strays: tuple[PoolView, ...]
    """Pools tagged for the workspace under another name."""

    @classmethod
    def sort(cls, pools: Sequence[PoolView], request: NodeRequest) -> PoolSet:
        wanted = agent_pool_name(request.workspace_namespace, request.workspace_name)
        mine: PoolView | None = None
        squatter: PoolView | None = None
        strays: list[PoolView] = []
        for pool in sorted(pools, key=lambda p: p.name):
            if pool.name == wanted:
                if pool.belongs_to(request):
                    mine = pool
                else:
                    squatter = pool
            elif pool.belongs_to(request):
                strays.append(pool)
        return cls(mine=mine, squatter=squatter, strays=tuple(strays))
