"""Resource kinds: what the client needs to build a URL and the emulator needs to serve one.

A kind is addressed on the wire by group, version and plural, and it is either namespaced or
cluster-scoped. kaito speaks to built-in kinds and custom resources the same way (raw JSON
objects plus a `ResourceKind`), in the manner of lightkube's generic resources, so that one
client serves Pods, StatefulSets, NodeClaims and Workspaces alike without generated classes.

The table of built-in kinds below is also the emulator's source for discovery documents, so the
two sides cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


@attrs.frozen
class ResourceKind:
    """One kind of API object as the API server serves it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """`apiVersion` as objects carry it: `v1` for the core group, else `group/version`."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def resource_name(self) -> str:
        """`plural.group`, the name a CustomResourceDefinition carries."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The URL path of the collection, or of one object when `name` is given."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        return base

    def __str__(self) -> str:
        return f"{self.kind}.{self.api_version}"


def _k(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    status: bool = True,
    categories: tuple[str, ...] = (),
    verbs: tuple[str, ...] = ALL_VERBS,
    extra_subresources: tuple[str, ...] = (),
) -> ResourceKind:
    subresources = (("status",) if status else ()) + extra_subresources
    return ResourceKind(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        namespaced=namespaced,
        singular=kind.lower(),
        short_names=short,
        categories=categories,
        verbs=verbs,
        subresources=subresources,
    )


NAMESPACE = _k(
    "",
    "v1",
    "Namespace",
    "namespaces",
    namespaced=False,
    short=("ns",),
    verbs=tuple(v for v in ALL_VERBS if v != "deletecollection"),
)
NODE = _k("", "v1", "Node", "nodes", namespaced=False, short=("no",))
POD = _k("", "v1", "Pod", "pods", short=("po",), categories=("all",))
SERVICE = _k("", "v1", "Service", "services", short=("svc",), categories=("all",))
CONFIG_MAP = _k("", "v1", "ConfigMap", "configmaps", short=("cm",), status=False)
SECRET = _k("", "v1", "Secret", "secrets", status=False)
SERVICE_ACCOUNT = _k("", "v1", "ServiceAccount", "serviceaccounts", short=("sa",), status=False)
EVENT = _k("", "v1", "Event", "events", short=("ev",), status=False)
PERSISTENT_VOLUME_CLAIM = _k(
    "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short=("pvc",)
)
STATEFUL_SET = _k(
    "apps",
    "v1",
    "StatefulSet",
    "statefulsets",
    short=("sts",),
    categories=("all",),
    extra_subresources=("scale",),
)
DEPLOYMENT = _k(
    "apps",
    "v1",
    "Deployment",
    "deployments",
    short=("deploy",),
    categories=("all",),
    extra_subresources=("scale",),
)
REPLICA_SET = _k("apps", "v1", "ReplicaSet", "replicasets", short=("rs",), categories=("all",))
CONTROLLER_REVISION = _k("apps", "v1", "ControllerRevision", "controllerrevisions", status=False)
JOB = _k("batch", "v1", "Job", "jobs", categories=("all",))
LEASE = _k("coordination.k8s.io", "v1", "Lease", "leases", status=False)
EVENT_V1 = _k("events.k8s.io", "v1", "Event", "events", short=("ev",), status=False)
CUSTOM_RESOURCE_DEFINITION = _k(
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
    namespaced=False,
    short=("crd", "crds"),
)
CLUSTER_ROLE = _k(
    "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False, status=False
)
CLUSTER_ROLE_BINDING = _k(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRoleBinding",
    "clusterrolebindings",
    namespaced=False,
    status=False,
)
ROLE = _k("rbac.authorization.k8s.io", "v1", "Role", "roles", status=False)
ROLE_BINDING = _k("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", status=False)

# Custom resources kaito works with; their CRDs are installed, not built in, but the client needs
# their coordinates before discovery has run.
NODE_CLAIM = _k(
    "karpenter.sh", "v1", "NodeClaim", "nodeclaims", namespaced=False, categories=("karpenter",)
)
WORKSPACE = _k("kaito.sh", "v1beta1", "Workspace", "workspaces", short=("wk", "wks"))

BUILTIN_KINDS: tuple[ResourceKind, ...] = (
    NAMESPACE,
    NODE,
    POD,
    SERVICE,
    CONFIG_MAP,
    SECRET,
    SERVICE_ACCOUNT,
    EVENT,
    PERSISTENT_VOLUME_CLAIM,
    STATEFUL_SET,
    DEPLOYMENT,
    REPLICA_SET,
    CONTROLLER_REVISION,
    JOB,
    LEASE,
    EVENT_V1,
    CUSTOM_RESOURCE_DEFINITION,
    CLUSTER_ROLE,
    CLUSTER_ROLE_BINDING,
    ROLE,
    ROLE_BINDING,
)


class KindTable:
    """Look-up of kinds by (apiVersion, kind) and by (group, version, plural)."""

    def __init__(self, kinds: Iterable[ResourceKind] = ()) -> None:
        self._by_kind: dict[tuple[str, str], ResourceKind] = {}
        self._by_plural: dict[tuple[str, str, str], ResourceKind] = {}
        for k in kinds:
            self.add(k)

    def add(self, kind: ResourceKind) -> None:
        self._by_kind[(kind.api_version, kind.kind)] = kind
        self._by_plural[(kind.group, kind.version, kind.plural)] = kind

    def remove(self, kind: ResourceKind) -> None:
        self._by_kind.pop((kind.api_version, kind.kind), None)
        self._by_plural.pop((kind.group, kind.version, kind.plural), None)

    def for_object(self, obj: Mapping[str, Any]) -> ResourceKind | None:
        return self._by_kind.get((str(obj.get("apiVersion", "")), str(obj.get("kind", ""))))

    def by_kind(self, api_version: str, kind: str) -> ResourceKind | None:
        return self._by_kind.get((api_version, kind))

    def by_plural(self, group: str, version: str, plural: str) -> ResourceKind | None:
        return self._by_plural.get((group, version, plural))

    def __iter__(self) -> Any:
        return iter(list(self._by_kind.values()))

    def __len__(self) -> int:
        return len(self._by_kind)


def builtin_table() -> KindTable:
    """A fresh table holding the built-in kinds and kaito's known custom resources."""
    return KindTable((*BUILTIN_KINDS, NODE_CLAIM, WORKSPACE))
