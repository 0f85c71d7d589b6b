"""Names the reconciler writes into the cluster, and the naming rules of a workspace's children.

They live in one module because other parts of kaito (the operator's watches, the CLI, tests)
find a workspace's objects by exactly these names and labels; a second spelling anywhere would
make those look-ups silently miss.
"""

from __future__ import annotations

import hashlib
import re

from kaito.api import Workspace
from kaito.provisioners import WORKSPACE_LABEL, WORKSPACE_NAMESPACE_LABEL

FIELD_MANAGER = "kaito"
"""The field manager of every write kaito makes (server-side apply owns fields by it)."""

FINALIZER = "workspace.kaito.io/finalizer"
"""Held on a workspace until its nodes are released and its children removed."""

SPEC_HASH_ANNOTATION = "workspace.kaito.io/spec-hash"
"""On every child: a hash of the object as kaito last wanted it, to skip writes that would
change nothing."""

REVISION_ANNOTATION = "workspace.kaito.io/revision"
"""On the StatefulSet and its pod template: a short hash of the pod template, i.e. of everything
that rolls the pods (adapters, config, template, image, plan, nodes)."""

CONFIG_HASH_ANNOTATION = "workspace.kaito.io/config-hash"
"""On the pod template: a hash of the inference ConfigMap's data, so editing it rolls the pods."""

ACCEPTED_SPEC_ANNOTATION = "workspace.kaito.io/accepted-spec"
"""On the workspace: the fields that may not change after creation, as first accepted. Without an
admission webhook this is the only memory of the old values that update validation compares to."""

SERVICE_TYPE_ANNOTATION = "kaito.sh/service-type"
"""A workspace annotation; `LoadBalancer` exposes the inference Service outside the cluster."""

POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
"""The label the StatefulSet controller puts on each pod with its ordinal."""

NODE_RANK_ENV = "KAITO_NODE_RANK"
"""Environment variable holding a pod's index in a multi-node workload (0 is the leader)."""

HF_TOKEN_ENV = "HF_TOKEN"
"""Environment variable (and Secret key) of the model hub access token."""

ADAPTER_STRENGTHS_ENV = "KAITO_ADAPTER_STRENGTHS"
"""JSON object adapter name -> strength, read by kaito's inference servers."""

HOSTNAME_LABEL = "kubernetes.io/hostname"

EVENT_COMPONENT = "kaito-workspace-controller"
"""`reportingComponent` (and `source.component`) of the Events kaito records."""

_LABEL_SAFE = re.compile(r"[^a-z0-9-]+")


def workspace_labels(namespace: str, name: str) -> dict[str, str]:
    """The two labels every object of a workspace carries (the operator maps events by them)."""
    return {WORKSPACE_LABEL: name, WORKSPACE_NAMESPACE_LABEL: namespace}


def namespace_of(workspace: Workspace) -> str:
    return workspace.metadata.namespace or "default"


def name_of(workspace: Workspace) -> str:
    return workspace.metadata.name or ""


def statefulset_name(workspace: Workspace) -> str:
    return name_of(workspace)


def service_name(workspace: Workspace) -> str:
    return name_of(workspace)


def headless_service_name(workspace: Workspace) -> str:
    return f"{name_of(workspace)}-headless"


def default_config_map_name(workspace: Workspace) -> str:
    return f"{name_of(workspace)}-inference-config"


def node_request_name(namespace: str, name: str) -> str:
    """The deterministic base name of a workspace's node requests: `ws` + 10 hex characters of
    sha256("<namespace>/<name>"); provisioners append `-<index>`."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()
    return f"ws{digest[:10]}"


def dns_label(prefix: str, name: str) -> str:
    """`prefix-name` as a DNS-1123 label (container and volume names): dots and other
    characters become '-', and a name too long is cut and made unique with a short hash."""
    raw = f"{prefix}-{name}".lower()
    cleaned = _LABEL_SAFE.sub("-", raw).strip("-")
    if len(cleaned) <= 63 and cleaned == raw:
        return cleaned
    digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
    return f"{cleaned[:54].rstrip('-')}-{digest}"


def tuning_job_name(workspace: Workspace) -> str:
    return f"{name_of(workspace)}-tuning"


def tuning_config_map_name(workspace: Workspace) -> str:
    """kaito's default tuning ConfigMap, for tuning workspaces whose `tuning.config` is empty."""
    return f"{name_of(workspace)}-tuning-config"
