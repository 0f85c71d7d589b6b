"""Where a pod fits, and the kube-scheduler's words when it fits nowhere.

This is a pure function of a pod, the nodes and the pods bound to them, so it is tested
without a server. It runs the filters of kube-scheduler's default profile that matter for
kaito, in the scheduler's order, and stops at a node's first failing filter the way the
scheduler does:

1. NodeUnschedulable: `spec.unschedulable` (unless tolerated) -> "node(s) were unschedulable"
2. TaintToleration: NoSchedule/NoExecute taints the pod does not tolerate ->
   "node(s) had untolerated taint {key: value}". A node that is not Ready counts as tainted
   with `node.kubernetes.io/not-ready:NoSchedule`, as the node lifecycle controller would
   taint it.
3. NodeAffinity: `nodeSelector` and required node affinity (`In`, `NotIn`, `Exists`,
   `DoesNotExist`, `Gt`, `Lt`; `matchFields` on `metadata.name`) ->
   "node(s) didn't match Pod's node affinity/selector"
4. NodeResourcesFit: every requested resource (`nvidia.com/gpu`, cpu, memory, any other)
   against allocatable minus what bound pods request -> "Insufficient nvidia.com/gpu", one per
   short resource; and the pod count -> "Too many pods".

A container's request defaults to its limit, as the API server defaults it (GPUs are usually
given as limits only). Failures are counted per reason and written as kube-scheduler does:
"0/3 nodes are available: 1 node(s) had untolerated taint {sku: gpu}, 2 Insufficient
nvidia.com/gpu." with the reasons sorted. Among the nodes that fit, the least allocated one
wins (kube-scheduler's default score), ties going to the first name.

`schedule` looks at every node. `decide` is the same decision over a subset: when a pod
requires a label (`required_keys`), only nodes carrying it can take the pod, and the rest
only contribute to the message — by the first filter they fail, which is a taint reason
(`taint_reason`, a function of the pod's tolerations alone) or else node affinity. A caller
that keeps those counts per set of tolerations decides in time proportional to the
candidates, not to the cluster.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from kaito.kube import RawObject
from kaito.kube.simulators._match import Requirement
from kaito.kube.simulators._objects import (
    is_true,
    labels_of,
    name_of,
    resource_map,
    spec_of,
    status_of,
)

GPU = "nvidia.com/gpu"
NOT_READY_TAINT_KEY = "node.kubernetes.io/not-ready"
UNSCHEDULABLE_TAINT_KEY = "node.kubernetes.io/unschedulable"
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_TOO_MANY_PODS = "Too many pods"


def untolerated_reason(taint: Mapping[str, Any]) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"


def insufficient_reason(resource: str) -> str:
    return f"Insufficient {resource}"


# -- resources --------------------------------------------------------------------------------


def _container_requests(container: Mapping[str, Any]) -> dict[str, Decimal]:
    resources = container.get("resources") or {}
    limits = resource_map(resources.get("limits"))
    requests = resource_map(resources.get("requests"))
    return {**limits, **requests}


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """What the pod asks of a node: the sum over its containers, at least the largest init
    container (which runs alone), per resource."""
    spec = spec_of(pod)
    total: dict[str, Decimal] = collections.defaultdict(Decimal)
    for container in spec.get("containers") or ():
        for resource, value in _container_requests(container).items():
            total[resource] += value
    for container in spec.get("initContainers") or ():
        for resource, value in _container_requests(container).items():
            total[resource] = max(total[resource], value)
    return {k: v for k, v in total.items() if v > 0}


def node_allocatable(node: Mapping[str, Any]) -> dict[str, Decimal]:
    status = status_of(node)
    return resource_map(status.get("allocatable") or status.get("capacity"))


def occupies(pod: Mapping[str, Any]) -> bool:
    """Whether a bound pod still holds its node's resources (terminal pods do not)."""
    return status_of(pod).get("phase") not in TERMINAL_PHASES


# -- taints and affinity ----------------------------------------------------------------------


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        operator = toleration.get("operator") or "Equal"
        key = toleration.get("key") or ""
        if operator == "Exists":
            if not key or key == taint.get("key"):
                return True
        elif key == taint.get("key") and (toleration.get("value") or "") == (
            taint.get("value") or ""
        ):
            return True
    return False


def node_taints(node: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The node's taints, plus the not-ready taint a node that is not Ready would carry."""
    taints = [t for t in spec_of(node).get("taints") or () if isinstance(t, dict)]
    if not is_true(node, "Ready") and not any(t.get("key") == NOT_READY_TAINT_KEY for t in taints):
        taints.append({"key": NOT_READY_TAINT_KEY, "effect": "NoSchedule"})
    return taints


def _term_matches(term: Mapping[str, Any], labels: Mapping[str, str], name: str) -> bool:
    expressions = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not expressions and not fields:
        return False  # an empty term selects no node
    for raw in expressions:
        if not Requirement.from_wire(raw).matches(labels):
            return False
    for raw in fields:
        requirement = Requirement.from_wire(raw)
        if requirement.key != "metadata.name":
            return False
        if not requirement.matches({"metadata.name": name}):
            return False
    return True


def affinity_matches(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """`nodeSelector` and required node affinity (any of the terms)."""
    spec = spec_of(pod)
    labels = labels_of(node)
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(_term_matches(t, labels, name_of(node)) for t in terms if isinstance(t, dict))


# -- filtering and choosing -------------------------------------------------------------------


@attrs.frozen
class Decision:
    """Where the pod goes (`node`), or why it goes nowhere (`message`)."""

    node: str | None
    message: str = ""
    reasons: Mapping[str, int] = attrs.field(factory=dict)


def tolerations_of(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [t for t in spec_of(pod).get("tolerations") or () if isinstance(t, dict)]


def taint_reason(tolerations: Sequence[Mapping[str, Any]], node: Mapping[str, Any]) -> str | None:
    """The reason of the filters before node affinity (NodeUnschedulable, TaintToleration),
    or None when the node passes them. It depends on the pod only through its tolerations."""
    if spec_of(node).get("unschedulable") and not tolerates(
        tolerations, {"key": UNSCHEDULABLE_TAINT_KEY, "effect": "NoSchedule"}
    ):
        return REASON_UNSCHEDULABLE
    for taint in node_taints(node):
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return untolerated_reason(taint)
    return None


def _used(bound: Sequence[Mapping[str, Any]]) -> tuple[int, dict[str, Decimal]]:
    holding = [p for p in bound if occupies(p)]
    used: dict[str, Decimal] = collections.defaultdict(Decimal)
    for other in holding:
        for resource, value in pod_requests(other).items():
            used[resource] += value
    return len(holding), used


def filter_node(
    pod: Mapping[str, Any],
    node: Mapping[str, Any],
    bound: Sequence[Mapping[str, Any]],
    requests: Mapping[str, Decimal] | None = None,
) -> list[str]:
    """The reasons the pod does not fit on the node; empty when it fits."""
    early = taint_reason(tolerations_of(pod), node)
    if early is not None:
        return [early]
    if not affinity_matches(pod, node):
        return [REASON_AFFINITY]
    wanted = pod_requests(pod) if requests is None else requests
    allocatable = node_allocatable(node)
    count, used = _used(bound)
    reasons: list[str] = []
    pods_allowed = allocatable.get("pods")
    if pods_allowed is not None and count + 1 > pods_allowed:
        reasons.append(REASON_TOO_MANY_PODS)
    for resource in sorted(wanted):
        if wanted[resource] > allocatable.get(resource, Decimal(0)) - used[resource]:
            reasons.append(insufficient_reason(resource))
    return reasons


def _free_fraction(
    node: Mapping[str, Any], bound: Sequence[Mapping[str, Any]], requests: Mapping[str, Decimal]
) -> Decimal:
    allocatable = node_allocatable(node)
    _, used = _used(bound)
    score = Decimal(0)
    for resource in {"cpu", "memory", GPU} | set(requests):
        capacity = allocatable.get(resource)
        if not capacity:
            continue
        score += (capacity - used[resource] - requests.get(resource, Decimal(0))) / capacity
    return score


def unschedulable_message(total: int, reasons: Mapping[str, int]) -> str:
    if total == 0:
        return "no nodes available to schedule pods"
    parts = sorted(f"{count} {reason}" for reason, count in reasons.items() if count)
    return f"0/{total} nodes are available: {', '.join(parts)}."


BoundPods = Mapping[str, Sequence[RawObject]] | Callable[[str], Sequence[RawObject]]
"""The pods bound to a node, by node name: a mapping, or a function for callers that keep
them indexed."""


def decide(
    pod: RawObject,
    candidates: Iterable[RawObject],
    bound: BoundPods,
    *,
    total: int | None = None,
    others: Mapping[str | None, int] | None = None,
) -> Decision:
    """Pick a node among `candidates`.

    `others` summarises the nodes that are not candidates because they lack a label the pod
    requires: how many of them stop at each `taint_reason` (None: at node affinity). With it,
    the message covers every node while only the candidates are examined one by one; `total`
    is then the number of all nodes.
    """
    pods_on: Callable[[str], Sequence[RawObject]] = (
        (lambda name: bound.get(name, ())) if isinstance(bound, Mapping) else bound
    )
    requests = pod_requests(pod)
    reasons: collections.Counter[str] = collections.Counter()
    examined = 0
    best: tuple[Decimal, str] | None = None
    for node in candidates:
        examined += 1
        name = name_of(node)
        on_node = pods_on(name)
        failed = filter_node(pod, node, on_node, requests)
        if failed:
            reasons.update(failed)
            continue
        score = _free_fraction(node, on_node, requests)
        if best is None or score > best[0] or (score == best[0] and name < best[1]):
            best = (score, name)
    if best is not None:
        return Decision(node=best[1])
    for reason, count in (others or {}).items():
        if count > 0:
            reasons[REASON_AFFINITY if reason is None else reason] += count
    message = unschedulable_message(examined if total is None else total, reasons)
    return Decision(node=None, message=message, reasons=dict(reasons))


def schedule(pod: RawObject, nodes: Iterable[RawObject], bound: BoundPods) -> Decision:
    """Pick a node for the pod among all `nodes` (the least allocated that fits), or say why
    none fits, in kube-scheduler's words."""
    return decide(pod, nodes, bound)


# -- narrowing the search ---------------------------------------------------------------------

ANY_NODE = "*"


def node_keys(node: Mapping[str, Any]) -> list[str]:
    """The `key=value` strings a node offers to `required_keys`: its labels and its name."""
    keys = [f"{k}={v}" for k, v in labels_of(node).items()]
    keys.append(f"metadata.name={name_of(node)}")
    return keys


def required_keys(pod: Mapping[str, Any]) -> list[str] | None:
    """`key=value` strings one of which every node that can take the pod must offer (from
    `nodeSelector`, or from a single required affinity term); None when the pod's node
    selection does not narrow the nodes down that way."""
    spec = spec_of(pod)
    selector = spec.get("nodeSelector") or {}
    if selector:
        key, value = sorted(selector.items())[0]
        return [f"{key}={value}"]
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    terms = (affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get(
        "nodeSelectorTerms"
    ) or []
    if len(terms) == 1 and isinstance(terms[0], dict):
        for field in ("matchExpressions", "matchFields"):
            for expr in terms[0].get(field) or ():
                if expr.get("operator") == "In" and expr.get("values"):
                    return [f"{expr.get('key')}={v}" for v in expr["values"]]
    return None
