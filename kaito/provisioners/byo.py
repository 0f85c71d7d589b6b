"""The `byo` provisioner: run on GPU nodes the user already has ("bring your own").

Nothing is created or deleted here; the nodes belong to the user. The provisioner finds them
through the workspace's `labelSelector` (matchLabels and expressions) and/or its
`preferredNodes`, and checks what a workload sharded across them depends on: that they are the
same kind of machine (instance type and the GPU labels NVIDIA's GPU feature discovery sets:
product, count, memory), that each offers the GPUs the plan puts on a node, and that there are
as many as the workspace asks for. Anything that would not heal by waiting is reported as a
failure that names the nodes and the difference, so the user knows which node to fix.

Because a bring-your-own workspace may name no instance type, the planner cannot size it from
the SKU catalog alone; `describe_nodes` reports what the matching nodes offer (`NodeFacts`), and
`NodeFacts.sku()` turns that into the `GpuSku` the planner takes.

Preferred nodes come first, in the order the user listed them, then the other matching nodes by
name, so the nodes chosen stay the same from one pass to the next.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from kaito.kube import NODE, Client, NotFound, RawObject
from kaito.provisioners._nodes import (
    GPU_COMPUTE_MAJOR_LABEL,
    GPU_COMPUTE_MINOR_LABEL,
    GPU_COUNT_LABEL,
    GPU_LABELS,
    GPU_MEMORY_LABEL,
    GPU_PRODUCT_LABEL,
    INSTANCE_TYPE_LABEL,
    Expression,
    allocatable_gpus,
    assess_nodes,
    check_options,
    labels_of,
    list_nodes,
    name_of,
    selector_labels,
    selector_string,
    whole_number,
)
from kaito.provisioners._protocol import (
    GPU_RESOURCE,
    NodeFacts,
    NodeRequest,
    ProvisionerContext,
    ProvisionStatus,
)

__all__ = ["BYOProvisioner"]

REASON_READY: Final = "NodesReady"
REASON_WAITING: Final = "WaitingForNodes"
REASON_NOT_FOUND: Final = "NodesNotFound"
REASON_NOT_UNIFORM: Final = "NodesNotUniform"
REASON_WRONG_TYPE: Final = "InstanceTypeMismatch"
REASON_INSUFFICIENT: Final = "InsufficientGPUs"
REASON_INVALID: Final = "InvalidNodeRequest"

RECHECK_AFTER: Final = 30.0
"""Seconds between checks: the user's nodes carry no workspace labels, so no watch event on
them wakes the workspace; it is polled instead."""

_MIB: Final = 2**20
_UNSET: Final = "(unset)"


def _selector_text(labels: Mapping[str, str], exprs: Sequence[Expression]) -> str:
    return selector_string(labels, exprs) or "(empty)"


def _matches(
    node: Mapping[str, Any], labels: Mapping[str, str], exprs: Sequence[Expression]
) -> bool:
    have = labels_of(node)
    return all(have.get(k) == v for k, v in labels.items()) and all(e.matches(have) for e in exprs)


def _uniform(nodes: Sequence[Mapping[str, Any]], label: str) -> str | None:
    """The label's value if every node carries it with the same value, else None."""
    values = {labels_of(n).get(label) for n in nodes}
    if len(values) != 1:
        return None
    (value,) = values
    return value


def _differences(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per GPU label on which the nodes disagree (a missing label counts)."""
    out: list[str] = []
    for label in GPU_LABELS:
        groups: dict[str, list[str]] = {}
        for node in nodes:
            groups.setdefault(labels_of(node).get(label, _UNSET), []).append(name_of(node))
        if len(groups) > 1 and set(groups) != {_UNSET}:
            parts = [f"{value} on {', '.join(names)}" for value, names in sorted(groups.items())]
            out.append(f"nodes differ in {label}: {'; '.join(parts)}")
    return out


class BYOProvisioner:
    """Uses existing nodes selected by the workspace's labelSelector and preferredNodes.

    It takes no options; it never creates or deletes a node.
    """

    name = "byo"

    def __init__(self, ctx: ProvisionerContext) -> None:
        check_options(self.name, ctx.options, ())
        self.client: Client = ctx.client

    async def provision(self, request: NodeRequest) -> ProvisionStatus:
        """Check the matching nodes and report whether enough of them can take the workload."""
        try:
            labels, exprs = selector_labels(request)
        except ValueError as exc:
            return self._failed(REASON_INVALID, [str(exc)])
        nodes, missing = await self._candidates(request, labels, exprs)
        if missing:
            return self._failed(REASON_NOT_FOUND, missing)
        if len(nodes) < request.count:
            found = ", ".join(name_of(n) for n in nodes) or "none"
            return self._failed(
                REASON_NOT_FOUND,
                [
                    f"{len(nodes)} node(s) match labelSelector {_selector_text(labels, exprs)}"
                    f" and preferredNodes ({found}); the workspace needs {request.count}"
                ],
            )
        differences = _differences(nodes)
        if differences:
            return self._failed(REASON_NOT_UNIFORM, differences)
        if request.instance_type:
            wrong = [
                f"node {name_of(n)} has instance type "
                f"{labels_of(n).get(INSTANCE_TYPE_LABEL, _UNSET)}, the workspace asks for "
                f"{request.instance_type}"
                for n in nodes
                if labels_of(n).get(INSTANCE_TYPE_LABEL) != request.instance_type
            ]
            if wrong:
                return self._failed(REASON_WRONG_TYPE, wrong)
        short = [
            f"node {name_of(n)} offers {allocatable_gpus(n)} allocatable {GPU_RESOURCE}, "
            f"the plan needs {request.gpus_per_node} per node"
            for n in nodes
            if allocatable_gpus(n) < request.gpus_per_node
        ]
        if short:
            return self._failed(REASON_INSUFFICIENT, short)
        assessment = assess_nodes(
            nodes,
            count=request.count,
            instance_type=request.instance_type,
            gpus_per_node=request.gpus_per_node,
        )
        if assessment.enough:
            return ProvisionStatus(
                ready=True, nodes=assessment.ready, reason=REASON_READY, message=assessment.message
            )
        detail = "; ".join(f"{n} {why}" for n, why in assessment.waiting)
        return ProvisionStatus(
            ready=False,
            nodes=assessment.ready,
            reason=REASON_WAITING,
            message=f"{assessment.message} ({detail})" if detail else assessment.message,
            requeue_after=RECHECK_AFTER,
        )

    async def release(self, request: NodeRequest) -> bool:
        """Nothing to give back: the nodes are the user's."""
        return True

    async def describe_nodes(self, request: NodeRequest) -> NodeFacts:
        """What the matching nodes offer, for sizing a workspace that names no instance type."""
        try:
            labels, exprs = selector_labels(request)
        except ValueError as exc:
            return NodeFacts(problems=(str(exc),))
        nodes, missing = await self._candidates(request, labels, exprs)
        problems = [*missing, *_differences(nodes)]
        if not nodes:
            problems.append(
                f"no node matches labelSelector {_selector_text(labels, exprs)} or preferredNodes"
            )
        memory_mib = whole_number(_uniform(nodes, GPU_MEMORY_LABEL))
        major = _uniform(nodes, GPU_COMPUTE_MAJOR_LABEL)
        minor = _uniform(nodes, GPU_COMPUTE_MINOR_LABEL)
        allocatable = [allocatable_gpus(n) for n in nodes]
        gpu_count = min(allocatable) if allocatable and min(allocatable) > 0 else None
        if gpu_count is None:
            gpu_count = whole_number(_uniform(nodes, GPU_COUNT_LABEL)) or None
        return NodeFacts(
            nodes=tuple(name_of(n) for n in nodes),
            instance_type=_uniform(nodes, INSTANCE_TYPE_LABEL),
            gpu_product=_uniform(nodes, GPU_PRODUCT_LABEL),
            gpu_count=gpu_count,
            gpu_memory_bytes=memory_mib * _MIB if memory_mib else None,
            compute_capability=f"{major}.{minor}"
            if major is not None and minor is not None and f"{major}{minor}".isdigit()
            else None,
            problems=tuple(problems),
        )

    # -- helpers -----------------------------------------------------------------------------

    async def _candidates(
        self, request: NodeRequest, labels: Mapping[str, str], exprs: Sequence[Expression]
    ) -> tuple[list[RawObject], list[str]]:
        """The nodes to use in preference order, and what is missing or does not match."""
        has_selector = bool(labels or exprs)
        if not has_selector and not request.preferred_nodes:
            return [], ["the workspace names no nodes: give a labelSelector or preferredNodes"]
        matching = (
            sorted(await list_nodes(self.client, selector_string(labels, exprs)), key=name_of)
            if has_selector
            else []
        )
        by_name = {name_of(n): n for n in matching}
        problems: list[str] = []
        chosen: list[RawObject] = []
        for wanted in dict.fromkeys(request.preferred_nodes):
            node = by_name.get(wanted)
            if node is None:
                try:
                    node = await self.client.get(NODE, wanted)
                except NotFound:
                    problems.append(f"preferred node {wanted} does not exist")
                    continue
                if has_selector and not _matches(node, labels, exprs):
                    problems.append(
                        f"preferred node {wanted} does not match labelSelector "
                        f"{_selector_text(labels, exprs)}"
                    )
                    continue
            chosen.append(node)
        taken = {name_of(n) for n in chosen}
        chosen.extend(n for n in matching if name_of(n) not in taken)
        return chosen, problems

    @staticmethod
    def _failed(reason: str, problems: Sequence[str]) -> ProvisionStatus:
        return ProvisionStatus(
            ready=False,
            failed=True,
            reason=reason,
            message="; ".join(problems),
            requeue_after=RECHECK_AFTER,
        )
