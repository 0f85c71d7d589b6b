"""What the built-in provisioners share: names, labels, selectors, and what "ready" means.

The protocol promises that readiness means the same thing whichever provisioner answers: enough
Nodes that are Ready, carry the requested instance type and offer the GPUs the plan needs on
each node. Keeping that rule in one function (`assess_nodes`) is what makes the promise hold;
the Karpenter, bring-your-own and fake provisioners differ only in how the nodes come to exist.

Nodes are always found with a label selector derived from the request, so a pass costs one list
call per workspace, whatever the size of the cluster. The selector grammar is the API server's
(`k=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`); a workspace's labelSelector is translated into it
here and nowhere else.

Names are deterministic: `ws` + 10 hex digits of sha256("<namespace>/<name>") + `-<index>`, so a
provisioner that crashed halfway finds what it made instead of making it again, and the name
stays short (at most 16 characters plus the index) whatever the workspace is called.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from kaito.kube import NODE, Client, RawObject
from kaito.provisioners._protocol import (
    GPU_RESOURCE,
    WORKSPACE_LABEL,
    WORKSPACE_NAMESPACE_LABEL,
    NodeRequest,
)

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
"""The well-known label Karpenter and the clouds put on a node: its instance type (SKU)."""
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
"""Set by NVIDIA GPU feature discovery; the memory of one GPU in MiB."""
GPU_COMPUTE_MAJOR_LABEL = "nvidia.com/gpu.compute.major"
GPU_COMPUTE_MINOR_LABEL = "nvidia.com/gpu.compute.minor"

GPU_LABELS: tuple[str, ...] = (
    INSTANCE_TYPE_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_COUNT_LABEL,
    GPU_MEMORY_LABEL,
)
"""The labels whose values must agree across the nodes of one workspace."""

_NAME_HASH_CHARS = 10
_LABEL_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})
_INTEGER = re.compile(r"^\s*([0-9]+)\s*$")


def node_base_name(namespace: str, name: str) -> str:
    """The name stem of a workspace's nodes and NodeClaims: `ws` + 10 hex digits."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()
    return f"ws{digest[:_NAME_HASH_CHARS]}"


def node_name(namespace: str, name: str, index: int) -> str:
    """The deterministic name of a workspace's `index`-th NodeClaim (or fake Node)."""
    if index < 0:
        raise ValueError(f"a node index cannot be negative, got {index}")
    return f"{node_base_name(namespace, name)}-{index}"


def workspace_labels(request: NodeRequest) -> dict[str, str]:
    """The two labels that tie an object to the workspace that asked for it."""
    return {
        WORKSPACE_LABEL: request.workspace_name,
        WORKSPACE_NAMESPACE_LABEL: request.workspace_namespace,
    }


@attrs.frozen
class Expression:
    """One `matchExpressions` entry of a label selector, normalised."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> Expression:
        key = raw.get("key")
        operator = raw.get("operator")
        values = raw.get("values") or ()
        if not isinstance(key, str) or not key:
            raise ValueError(f"a label selector expression needs a key: {dict(raw)!r}")
        if operator not in _LABEL_OPERATORS:
            raise ValueError(
                f"label selector expression on {key!r} has operator {operator!r}; "
                f"expected one of {', '.join(sorted(_LABEL_OPERATORS))}"
            )
        if isinstance(values, str) or not isinstance(values, Iterable):
            raise ValueError(f"values of the expression on {key!r} must be a list of strings")
        items = tuple(str(v) for v in values)
        if operator in ("In", "NotIn") and not items:
            raise ValueError(f"expression {key} {operator} needs at least one value")
        return cls(key=key, operator=str(operator), values=items)

    def selector(self) -> str:
        """The expression in the API server's label selector grammar."""
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        word = "in" if self.operator == "In" else "notin"
        return f"{self.key} {word} ({','.join(self.values)})"

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return labels.get(self.key) in self.values
        return labels.get(self.key) not in self.values

    def requirement(self) -> dict[str, Any]:
        """The expression as a Karpenter NodeClaim requirement (a node selector term)."""
        out: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.values:
            out["values"] = list(self.values)
        return out


def expressions(request: NodeRequest) -> list[Expression]:
    """The request's label selector expressions; `ValueError` names a malformed one."""
    return [Expression.from_mapping(raw) for raw in request.match_expressions]


def selector_labels(request: NodeRequest) -> tuple[dict[str, str], list[Expression]]:
    """The workspace's labelSelector split into what can be a node label and what cannot.

    matchLabels and `In` expressions with a single value become labels; every other expression
    stays an expression (a NodeClaim requirement, or a selector term when matching nodes).
    kaito's own workspace labels are not part of the user's selector and are left out.
    """
    labels = {
        k: v
        for k, v in request.labels.items()
        if k not in (WORKSPACE_LABEL, WORKSPACE_NAMESPACE_LABEL)
    }
    rest: list[Expression] = []
    for expr in expressions(request):
        if expr.operator == "In" and len(expr.values) == 1 and expr.key not in labels:
            labels[expr.key] = expr.values[0]
        else:
            rest.append(expr)
    return labels, rest


def selector_string(labels: Mapping[str, str], exprs: Sequence[Expression] = ()) -> str:
    """Equalities and expressions joined into one label selector string."""
    terms = [f"{k}={v}" for k, v in sorted(labels.items())]
    terms.extend(e.selector() for e in exprs)
    return ",".join(terms)


async def list_nodes(client: Client, selector: str) -> list[RawObject]:
    """All Nodes matching a label selector, following continue tokens."""
    items: list[RawObject] = []
    token: str | None = None
    while True:
        page = await client.list(NODE, label_selector=selector, continue_token=token)
        items.extend(page.items)
        token = page.continue_token
        if not token:
            return items


def name_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    """The status condition of that type, or None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == type_:
            return cond
    return None


def condition_is(obj: Mapping[str, Any], type_: str, status: str) -> bool:
    cond = condition(obj, type_)
    return cond is not None and cond.get("status") == status


def whole_number(value: object) -> int | None:
    """A whole-number quantity ("2", 2) as an int; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        match = _INTEGER.match(value)
        return int(match.group(1)) if match else None
    return None


def allocatable_gpus(node: Mapping[str, Any]) -> int:
    """The node's allocatable `nvidia.com/gpu` (0 when it offers none)."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    return whole_number(allocatable.get(GPU_RESOURCE)) or 0


def unusable_because(node: Mapping[str, Any], instance_type: str, gpus_per_node: int) -> str | None:
    """Why a node cannot take the workload now, or None when it can.

    `instance_type` "" accepts any instance type (bring-your-own nodes without one);
    `gpus_per_node` 0 accepts nodes without GPUs (CPU-only local nodes).
    """
    if is_terminating(node):
        return "is being deleted"
    if not condition_is(node, "Ready", "True"):
        return "is not Ready"
    if (node.get("spec") or {}).get("unschedulable"):
        return "is cordoned"
    actual = labels_of(node).get(INSTANCE_TYPE_LABEL, "")
    if instance_type and actual != instance_type:
        return f"has instance type {actual or '(none)'}, not {instance_type}"
    gpus = allocatable_gpus(node)
    if gpus_per_node > 0 and gpus < gpus_per_node:
        return f"offers {gpus} allocatable {GPU_RESOURCE}, {gpus_per_node} needed"
    return None


@attrs.frozen
class NodeAssessment:
    """Which of the candidate nodes can run the workload, in the candidates' order."""

    ready: tuple[str, ...]
    """Usable nodes, at most `count` of them."""
    waiting: tuple[tuple[str, str], ...]
    """(node, why not usable) for the others."""
    count: int

    @property
    def enough(self) -> bool:
        return len(self.ready) >= self.count

    @property
    def message(self) -> str:
        return f"{len(self.ready)} of {self.count} nodes ready"


def assess_nodes(
    nodes: Iterable[Mapping[str, Any]],
    *,
    count: int,
    instance_type: str,
    gpus_per_node: int,
) -> NodeAssessment:
    """The readiness rule every built-in provisioner applies to the nodes it found.

    Candidates are taken in the order given (callers pass them sorted), so the chosen nodes are
    stable from one pass to the next.
    """
    ready: list[str] = []
    waiting: list[tuple[str, str]] = []
    for node in nodes:
        why = unusable_because(node, instance_type, gpus_per_node)
        if why is None and len(ready) < count:
            ready.append(name_of(node))
        elif why is not None:
            waiting.append((name_of(node), why))
    return NodeAssessment(ready=tuple(ready), waiting=tuple(waiting), count=count)


def check_options(provisioner: str, options: Mapping[str, str], known: Iterable[str]) -> None:
    """Raise `ValueError` naming every option the provisioner does not understand."""
    allowed = sorted(known)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "none"
        raise ValueError(
            f"unknown option(s) for the {provisioner} provisioner: {', '.join(unknown)} "
            f"(accepted: {accepted})"
        )
