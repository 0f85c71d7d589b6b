"""The `karpenter` provisioner: GPU nodes through Karpenter NodeClaims (karpenter.sh/v1).

A NodeClaim is Karpenter's request for exactly one node, and every Karpenter-core provider acts
on it: the upstream gpu-provisioner on AKS, AWS Karpenter, Azure's Karpenter provider. So kaito
does not talk to a cloud here; it writes one NodeClaim per node the plan needs and watches
Karpenter fulfil them. The only provider-specific part is the node class a claim points at
(`AKSNodeClass` or `EC2NodeClass`), which the operator's options select.

Each claim pins the instance type, Linux and on-demand capacity as requirements, carries the
workspace's labels (Karpenter copies them onto the node, which is how the node is found again)
and the GPU taint, asks for the plan's disk as `storage`, and is marked do-not-disrupt so that
consolidation never takes a serving node away. Claims live in a NodePool-less name space
(`karpenter.sh/nodepool: kaito`): no NodePool owns them, so Karpenter neither scales them nor
replaces them on its own.

Every pass starts from the cluster, not from memory: the claims are listed by the workspace
labels and their names are derived from the workspace, so a crash between two creates is
healed by creating only the missing index, a lowered count deletes the surplus, and a converged
workspace costs one list of claims and one list of nodes, no writes.

A claim that Karpenter could not launch (its `Launched` condition is False, e.g. reason
InsufficientCapacity) or that is not Ready within `ready-timeout` of its creation is reported as
a failure with Karpenter's own message, because waiting longer will not help.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from kaito.kube import NODE_CLAIM, AlreadyExists, Client, NotFound, RawObject
from kaito.provisioners._nodes import (
    INSTANCE_TYPE_LABEL,
    OS_LABEL,
    Expression,
    assess_nodes,
    check_options,
    condition,
    condition_is,
    is_terminating,
    list_nodes,
    name_of,
    node_base_name,
    node_name,
    selector_labels,
    selector_string,
    workspace_labels,
)
from kaito.provisioners._protocol import NodeRequest, ProvisionerContext, ProvisionStatus

__all__ = [
    "CLOUD_NODE_CLASSES",
    "DEFAULT_READY_TIMEOUT",
    "KarpenterProvisioner",
    "NodeClassRef",
    "node_base_name",
    "node_name",
    "parse_duration",
]

NODEPOOL_LABEL: Final = "karpenter.sh/nodepool"
KAITO_NODEPOOL: Final = "kaito"
"""The NodePool name kaito's claims carry; no NodePool of that name exists, none should."""
CAPACITY_TYPE_LABEL: Final = "karpenter.sh/capacity-type"
DO_NOT_DISRUPT_ANNOTATION: Final = "karpenter.sh/do-not-disrupt"

DEFAULT_READY_TIMEOUT: Final = 600.0
"""Seconds a NodeClaim may take to become Ready before it is reported as failed."""

OPTIONS: Final = (
    "cloud",
    "node-class-group",
    "node-class-kind",
    "node-class-name",
    "ready-timeout",
)

REASON_READY: Final = "NodesReady"
REASON_WAITING: Final = "WaitingForNodes"
REASON_LAUNCH_FAILED: Final = "NodeClaimLaunchFailed"
REASON_NOT_READY: Final = "NodeClaimNotReady"
REASON_INVALID: Final = "InvalidNodeRequest"

_MAX_REQUEUE: Final = 60.0
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ms|s|m|h)")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@attrs.frozen
class NodeClassRef:
    """The provider's node class a NodeClaim points at (`spec.nodeClassRef`)."""

    group: str
    kind: str
    name: str = "default"

    def to_wire(self) -> dict[str, str]:
        return {"group": self.group, "kind": self.kind, "name": self.name}


CLOUD_NODE_CLASSES: Final[Mapping[str, NodeClassRef]] = {
    "azure": NodeClassRef("karpenter.azure.com", "AKSNodeClass"),
    "aws": NodeClassRef("karpenter.k8s.aws", "EC2NodeClass"),
}
"""The default node class per `cloud` option."""


def parse_duration(text: str) -> float:
    """Seconds in a duration written the Go way ("10m", "1h30m", "90s") or as plain seconds."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION_PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(
                f"not a duration: {text!r} (expected e.g. '10m', '90s', '1h30m')"
            ) from None
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {text!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """A duration for messages, the way Go prints one: "10m0s", "1h0m0s", "45s"."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _claim_instance_types(claim: Mapping[str, Any]) -> tuple[str, ...]:
    for req in (claim.get("spec") or {}).get("requirements") or []:
        if req.get("key") == INSTANCE_TYPE_LABEL and req.get("operator") == "In":
            return tuple(req.get("values") or ())
    return ()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KarpenterProvisioner:
    """Provisions a workspace's GPU nodes as Karpenter NodeClaims, one per node.

    Options (all optional): `cloud` (`azure` or `aws`, default azure) picks the default node
    class; `node-class-group`, `node-class-kind`, `node-class-name` override its parts;
    `ready-timeout` ("10m") bounds how long a claim may take to become Ready. `clock` (for
    tests) returns the current time, against which claims' creationTimestamps are measured.
    """

    name = "karpenter"

    def __init__(
        self, ctx: ProvisionerContext, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        options = ctx.options
        check_options(self.name, options, OPTIONS)
        cloud = options.get("cloud", "azure")
        if cloud not in CLOUD_NODE_CLASSES:
            raise ValueError(
                f"option cloud={cloud!r} of the karpenter provisioner is not one of "
                f"{', '.join(CLOUD_NODE_CLASSES)}"
            )
        default = CLOUD_NODE_CLASSES[cloud]
        ref = NodeClassRef(
            group=options.get("node-class-group", default.group),
            kind=options.get("node-class-kind", default.kind),
            name=options.get("node-class-name", default.name),
        )
        for option, value in (
            ("node-class-group", ref.group),
            ("node-class-kind", ref.kind),
            ("node-class-name", ref.name),
        ):
            if not value.strip():
                raise ValueError(f"option {option} of the karpenter provisioner is empty")
        if "/" in ref.group:
            raise ValueError(
                f"option node-class-group={ref.group!r} of the karpenter provisioner must be an "
                "API group without a version (e.g. karpenter.azure.com)"
            )
        try:
            timeout = parse_duration(options.get("ready-timeout", "10m"))
        except ValueError as exc:
            raise ValueError(f"option ready-timeout of the karpenter provisioner: {exc}") from None
        self.client: Client = ctx.client
        self.cloud = cloud
        self.node_class = ref
        self.ready_timeout = timeout
        self._clock = clock or _utcnow

    # -- the desired objects (no I/O) -------------------------------------------------------

    def node_claim(self, request: NodeRequest, index: int) -> RawObject:
        """The NodeClaim for the workspace's `index`-th node, as it is created.

        Raises `ValueError` when the request's label selector expressions are malformed.
        """
        labels, exprs = selector_labels(request)
        return {
            "apiVersion": NODE_CLAIM.api_version,
            "kind": NODE_CLAIM.kind,
            "metadata": {
                "name": node_name(request.workspace_namespace, request.workspace_name, index),
                "labels": {
                    **labels,
                    **workspace_labels(request),
                    NODEPOOL_LABEL: KAITO_NODEPOOL,
                },
                "annotations": {DO_NOT_DISRUPT_ANNOTATION: "true"},
            },
            "spec": {
                "nodeClassRef": self.node_class.to_wire(),
                "requirements": self._requirements(request, exprs),
                "taints": [
                    {"key": t.key, "value": t.value, "effect": t.effect} for t in request.taints
                ],
                "resources": {"requests": {"storage": f"{request.disk_gib}Gi"}},
            },
        }

    @staticmethod
    def _requirements(request: NodeRequest, exprs: Sequence[Expression]) -> list[dict[str, Any]]:
        fixed = [
            {"key": NODEPOOL_LABEL, "operator": "In", "values": [KAITO_NODEPOOL]},
            {"key": INSTANCE_TYPE_LABEL, "operator": "In", "values": [request.instance_type]},
            {"key": OS_LABEL, "operator": "In", "values": ["linux"]},
            {"key": CAPACITY_TYPE_LABEL, "operator": "In", "values": ["on-demand"]},
        ]
        taken = {str(r["key"]) for r in fixed}
        return fixed + [e.requirement() for e in exprs if e.key not in taken]

    # -- the protocol ------------------------------------------------------------------------

    async def provision(self, request: NodeRequest) -> ProvisionStatus:
        """Create the missing NodeClaims, delete surplus ones, and report how far they are."""
        if not request.instance_type:
            return ProvisionStatus(
                ready=False,
                failed=True,
                reason=REASON_INVALID,
                message="the karpenter provisioner needs resource.instanceType",
            )
        try:
            wanted = [self.node_claim(request, i) for i in range(request.count)]
        except ValueError as exc:
            return ProvisionStatus(
                ready=False, failed=True, reason=REASON_INVALID, message=str(exc)
            )

        selector = selector_string(workspace_labels(request))
        listed = (await self.client.list(NODE_CLAIM, label_selector=selector)).items
        wanted_names = [name_of(claim) for claim in wanted]
        claims: dict[str, RawObject] = {}
        unwanted_nodes: set[str] = set()
        for claim in listed:
            claim_name = name_of(claim)
            stale = claim_name not in wanted_names or request.instance_type not in (
                _claim_instance_types(claim)
            )
            if stale or is_terminating(claim):
                unwanted_nodes.add(str((claim.get("status") or {}).get("nodeName") or ""))
                if stale and not is_terminating(claim):
                    await self._delete(claim_name)
                continue
            claims[claim_name] = claim
        for claim in wanted:
            claim_name = name_of(claim)
            if claim_name in claims or any(name_of(c) == claim_name for c in listed):
                continue
            claims[claim_name] = await self._create(claim)

        present = [claims[n] for n in wanted_names if n in claims]
        claims_ready = len(present) == len(wanted_names) and all(
            condition_is(c, "Ready", "True") for c in present
        )
        nodes = sorted(
            (
                n
                for n in await list_nodes(self.client, selector)
                if name_of(n) not in unwanted_nodes
            ),
            key=name_of,
        )
        assessment = assess_nodes(
            nodes,
            count=request.count,
            instance_type=request.instance_type,
            gpus_per_node=request.gpus_per_node,
        )
        if assessment.enough:
            return ProvisionStatus(
                ready=True,
                nodes=assessment.ready,
                reason=REASON_READY,
                message=assessment.message,
                node_claims_ready=claims_ready,
            )
        failure = self._failure(present)
        if failure is not None:
            reason, message = failure
            return ProvisionStatus(
                ready=False,
                nodes=assessment.ready,
                reason=reason,
                message=message,
                failed=True,
                node_claims_ready=False,
            )
        return ProvisionStatus(
            ready=False,
            nodes=assessment.ready,
            reason=REASON_WAITING,
            message=assessment.message,
            requeue_after=self._next_deadline(present),
            node_claims_ready=claims_ready,
        )

    async def release(self, request: NodeRequest) -> bool:
        """Delete the workspace's NodeClaims; True once none is left.

        Karpenter's termination finalizer keeps a claim until its node is drained and gone, so
        the first call usually answers False and a later one True.
        """
        selector = selector_string(workspace_labels(request))
        claims = (await self.client.list(NODE_CLAIM, label_selector=selector)).items
        left = False
        for claim in claims:
            if is_terminating(claim) or not await self._delete(name_of(claim)):
                left = True
        return not left

    # -- helpers -----------------------------------------------------------------------------

    async def _create(self, claim: RawObject) -> RawObject:
        try:
            return await self.client.create(NODE_CLAIM, claim)
        except AlreadyExists:
            # Made by an earlier pass whose labels no longer match, or listed a moment too
            # early; either way it exists, and what it is now decides its state.
            return await self.client.get(NODE_CLAIM, name_of(claim))

    async def _delete(self, name: str) -> bool:
        """Delete a claim; True if it is gone at once (no finalizer held it)."""
        try:
            result = await self.client.delete(NODE_CLAIM, name)
        except NotFound:
            return True
        return result.gone

    def _age(self, claim: Mapping[str, Any]) -> float | None:
        created = _timestamp((claim.get("metadata") or {}).get("creationTimestamp"))
        if created is None:
            return None
        return (self._clock() - created).total_seconds()

    def _failure(self, claims: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
        """The first reason the claims will not become nodes by waiting, if there is one."""
        for claim in claims:
            launched = condition(claim, "Launched")
            if launched is not None and launched.get("status") == "False":
                detail = launched.get("message") or launched.get("reason") or "no reason given"
                why = launched.get("reason")
                suffix = f" ({why})" if why and why != detail else ""
                return (
                    REASON_LAUNCH_FAILED,
                    f"NodeClaim {name_of(claim)} failed to launch: {detail}{suffix}",
                )
        for claim in claims:
            if condition_is(claim, "Ready", "True"):
                continue
            age = self._age(claim)
            if age is not None and age >= self.ready_timeout:
                return REASON_NOT_READY, (
                    f"NodeClaim {name_of(claim)} is not Ready "
                    f"{format_duration(self.ready_timeout)} after its creation"
                    f"{_pending_detail(claim)}"
                )
        return None

    def _next_deadline(self, claims: Sequence[Mapping[str, Any]]) -> float:
        """Seconds until the earliest not-Ready claim times out (so the timeout is noticed
        without a watch event), bounded to [1, 60]."""
        remaining = [
            self.ready_timeout - age
            for claim in claims
            if not condition_is(claim, "Ready", "True") and (age := self._age(claim)) is not None
        ]
        soonest = min(remaining, default=_MAX_REQUEUE)
        return max(1.0, min(_MAX_REQUEUE, soonest))


def _pending_detail(claim: Mapping[str, Any]) -> str:
    """The first lifecycle step that has not succeeded, with Karpenter's message."""
    for step in ("Launched", "Registered", "Initialized", "Ready"):
        cond = condition(claim, step)
        if cond is None or cond.get("status") != "True":
            if cond is None:
                return f"; {step} not reported yet"
            text = cond.get("message") or cond.get("reason") or cond.get("status")
            return f"; {step}={cond.get('status')}: {text}"
    return ""
