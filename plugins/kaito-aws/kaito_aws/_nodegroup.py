"""The node group a workspace asks for, worked out without talking to AWS.

One EKS managed node group per workspace: a fixed size (min = max = desired = the plan's node
count, so the cluster autoscaler never shrinks a serving model), one instance type, the plan's
disk, an NVIDIA AMI, the workspace's labels, kaito's GPU taint, and tags naming the workspace.
Everything here is a pure function of the `NodeRequest` and the settings, so the provisioner can
compare what exists with what should exist before it calls AWS at all.

The name is deterministic: `kaito-<workspace name>-<10 hex digits of sha256(namespace/name)>`,
cut to EKS's 63 characters (letters, digits, '-', '_'). The hash keeps two namespaces' workspaces
of the same name apart, the readable part lets an operator find a group in the console, and
because a restarted operator derives the same name it finds its group instead of making another.
The idempotency token of CreateNodegroup is derived the same way (plus the workspace UID and the
group's shape), so a create that botocore retries after a lost response is the same request to
EKS, while a later workspace of the same name gets a fresh token.

Kubernetes spells taint effects `NoSchedule`; EKS spells them `NO_SCHEDULE`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final, cast

import attrs

from kaito.provisioners import WORKSPACE_LABEL, WORKSPACE_NAMESPACE_LABEL, NodeRequest, Taint
from kaito.provisioners.nodes import node_base_name, selector_labels
from kaito_aws._config import EKSConfig

if TYPE_CHECKING:
    from mypy_boto3_eks.literals import AMITypesType, TaintEffectType
    from mypy_boto3_eks.type_defs import (
        CreateNodegroupRequestTypeDef,
        NodegroupTypeDef,
        TaintTypeDef,
        UpdateNodegroupConfigRequestTypeDef,
    )

NODEGROUP_LABEL: Final = "eks.amazonaws.com/nodegroup"
"""The label EKS puts on every node of a managed node group: the group's name."""

NAME_PREFIX: Final = "kaito-"
"""Every node group kaito creates starts with this; leftovers are looked for among them."""
MAX_NAME_LENGTH: Final = 63
CREATED_BY_TAG: Final = "kaito.sh/created-by"

TAINT_EFFECTS: Final[Mapping[str, TaintEffectType]] = {
    "NoSchedule": "NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
}
"""Kubernetes taint effects in EKS's enum spelling."""

_HASH_CHARS: Final = 10
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_ARM_FAMILY = re.compile(r"^[a-z]+[0-9]+[a-z]*g[a-z]*$")


def nodegroup_name(namespace: str, name: str) -> str:
    """The node group of workspace `namespace/name`; deterministic, at most 63 characters."""
    digest = node_base_name(namespace, name)[-_HASH_CHARS:]
    room = MAX_NAME_LENGTH - len(NAME_PREFIX) - 1 - len(digest)
    readable = _UNSAFE.sub("-", name).strip("-_")[:room].rstrip("-_")
    middle = f"{readable}-" if readable else ""
    return f"{NAME_PREFIX}{middle}{digest}"


def is_arm(instance_type: str) -> bool:
    """Whether an instance type is a Graviton (arm64) one: a `g` after the generation
    digit of its family (`g5g`, `c7gn`), not before it (`g5`, `gr6`)."""
    family = instance_type.split(".", 1)[0]
    return bool(_ARM_FAMILY.match(family))


def default_ami_type(instance_type: str) -> str:
    """The AL2023 NVIDIA AMI for the instance type's architecture."""
    return "AL2023_ARM_64_NVIDIA" if is_arm(instance_type) else "AL2023_x86_64_NVIDIA"


def eks_taint(taint: Taint) -> TaintTypeDef:
    """A Kubernetes taint in the form CreateNodegroup takes; `ValueError` for an odd effect."""
    effect = TAINT_EFFECTS.get(taint.effect)
    if effect is None:
        raise ValueError(
            f"taint {taint.key}={taint.value} has effect {taint.effect!r}; "
            f"EKS node groups take {', '.join(TAINT_EFFECTS)}"
        )
    return {"key": taint.key, "value": taint.value, "effect": effect}


def node_labels(request: NodeRequest) -> dict[str, str]:
    """The labels every node of the group carries, so the workspace's selector matches them.

    matchLabels and `In` expressions become labels (an `In` with several values takes the
    first), `Exists` gets the value "true", and `NotIn` / `DoesNotExist` hold as long as the
    labels do not contradict them; a contradiction is a `ValueError`.
    """
    labels, rest = selector_labels(request)
    for expr in rest:
        if expr.operator == "In" and expr.key not in labels:
            labels[expr.key] = expr.values[0]
        elif expr.operator == "Exists" and expr.key not in labels:
            labels[expr.key] = "true"
    for expr in rest:
        if not expr.matches(labels):
            raise ValueError(
                f"the label selector expression {expr.selector()!r} contradicts the node "
                f"labels {labels!r}"
            )
    labels[WORKSPACE_LABEL] = request.workspace_name
    labels[WORKSPACE_NAMESPACE_LABEL] = request.workspace_namespace
    return labels


def workspace_tags(namespace: str, name: str) -> dict[str, str]:
    """The AWS tags that tie a node group to its workspace."""
    return {WORKSPACE_LABEL: name, WORKSPACE_NAMESPACE_LABEL: namespace, CREATED_BY_TAG: "kaito"}


def tagged_for(group: NodegroupTypeDef, namespace: str, name: str) -> bool:
    """Whether a node group carries the tags of workspace `namespace/name`."""
    tags = group.get("tags") or {}
    return all(tags.get(k) == v for k, v in workspace_tags(namespace, name).items())


@attrs.frozen
class NodegroupSpec:
    """The node group one workspace needs."""

    cluster_name: str
    name: str
    instance_type: str
    count: int
    disk_gib: int
    ami_type: str
    node_role_arn: str
    labels: Mapping[str, str]
    taints: tuple[Taint, ...]
    tags: Mapping[str, str]

    @classmethod
    def for_request(cls, request: NodeRequest, config: EKSConfig) -> NodegroupSpec:
        """The spec for a request; `ValueError` when the request cannot be a node group."""
        if not request.instance_type:
            raise ValueError("the aws provisioner needs resource.instanceType")
        if request.count < 1:
            raise ValueError(
                f"a node group needs at least one node, the plan asks for {request.count}"
            )
        for taint in request.taints:
            eks_taint(taint)
        return cls(
            cluster_name=config.cluster_name,
            name=nodegroup_name(request.workspace_namespace, request.workspace_name),
            instance_type=request.instance_type,
            count=request.count,
            disk_gib=request.disk_gib,
            ami_type=config.ami_type or default_ami_type(request.instance_type),
            node_role_arn=config.node_role_arn,
            labels=node_labels(request),
            taints=tuple(request.taints),
            tags=workspace_tags(request.workspace_namespace, request.workspace_name),
        )

    def client_token(self, workspace_uid: str) -> str:
        """CreateNodegroup's idempotency token: the same for the same workspace and shape."""
        key = "|".join(
            (
                workspace_uid,
                self.cluster_name,
                self.name,
                self.instance_type,
                self.ami_type,
                str(self.disk_gib),
                str(self.count),
            )
        )
        return "kaito-" + hashlib.sha256(key.encode()).hexdigest()[:32]

    def create_request(
        self, subnets: Sequence[str], workspace_uid: str
    ) -> CreateNodegroupRequestTypeDef:
        """The CreateNodegroup parameters, placed in `subnets`."""
        body: CreateNodegroupRequestTypeDef = {
            "clusterName": self.cluster_name,
            "nodegroupName": self.name,
            "subnets": list(subnets),
            "nodeRole": self.node_role_arn,
            "scalingConfig": {
                "minSize": self.count,
                "maxSize": self.count,
                "desiredSize": self.count,
            },
            "instanceTypes": [self.instance_type],
            "amiType": cast("AMITypesType", self.ami_type),
            "capacityType": "ON_DEMAND",
            "labels": dict(self.labels),
            "taints": [eks_taint(t) for t in self.taints],
            "tags": dict(self.tags),
            "clientRequestToken": self.client_token(workspace_uid),
        }
        if self.disk_gib > 0:
            body["diskSize"] = self.disk_gib
        return body

    def stale_because(self, group: NodegroupTypeDef) -> str | None:
        """Why an existing group cannot serve this spec (what EKS cannot change in place)."""
        types = group.get("instanceTypes") or []
        if types != [self.instance_type]:
            return f"has instance type {', '.join(types) or '(none)'}, not {self.instance_type}"
        ami = group.get("amiType")
        if ami and ami != self.ami_type:
            return f"has AMI type {ami}, not {self.ami_type}"
        disk = group.get("diskSize")
        if self.disk_gib > 0 and disk is not None and disk != self.disk_gib:
            return f"has a {disk} GiB disk, not {self.disk_gib} GiB"
        return None

    def update_request(self, group: NodegroupTypeDef) -> UpdateNodegroupConfigRequestTypeDef | None:
        """The UpdateNodegroupConfig call that brings the group's size, labels and taints in
        line with the spec, or None when they already are. Labels and taints the group has
        beyond the spec are left alone; they may be someone else's."""
        body: UpdateNodegroupConfigRequestTypeDef = {
            "clusterName": self.cluster_name,
            "nodegroupName": self.name,
        }
        scaling = group.get("scalingConfig") or {}
        wanted = {"minSize": self.count, "maxSize": self.count, "desiredSize": self.count}
        if any(scaling.get(k) != v for k, v in wanted.items()):
            body["scalingConfig"] = {
                "minSize": self.count,
                "maxSize": self.count,
                "desiredSize": self.count,
            }
        labels = group.get("labels") or {}
        changed = {k: v for k, v in self.labels.items() if labels.get(k) != v}
        if changed:
            body["labels"] = {"addOrUpdateLabels": changed}
        present = {
            (t.get("key"), t.get("value"), t.get("effect")) for t in group.get("taints") or []
        }
        missing = [eks_taint(t) for t in self.taints]
        missing = [t for t in missing if (t["key"], t["value"], t["effect"]) not in present]
        if missing:
            body["taints"] = {"addOrUpdateTaints": missing}
        return body if len(body) > 2 else None
