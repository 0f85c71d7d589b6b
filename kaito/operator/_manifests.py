"""Install manifests for the operator: CRD, namespace, RBAC, and the Deployment.

`operator_manifests(image, namespace)` returns plain Kubernetes objects (dicts) in the order
they can be applied; `kaito manifests operator` prints them as YAML, and the Helm chart in
`charts/kaito` renders the same objects (a test holds the two together).

The RBAC is least privilege: it grants exactly what the operator machinery and the reconciler
do, rule by rule, and a test replays a workspace's whole life against the API-server emulator
and checks every request it saw against these rules. The provisioner in use adds its own
rules (the Karpenter provisioner creates NodeClaims; the fake one creates Node objects), so a
cluster that does not use Karpenter grants no write on NodeClaims. The lease rules go into a
Role in the operator's namespace rather than the ClusterRole: leader election never needs a
Lease anywhere else.

Karpenter's NodeClaim CRD is Karpenter's to install and is not included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from kaito.api import workspace_crd
from kaito.operator._settings import OperatorSettings

Rule = dict[str, list[str]]

NAME: Final = "kaito-workspace"
"""The name of the ServiceAccount, ClusterRole, bindings and Deployment."""
METRICS_PORT: Final = 8080
HEALTH_PORT: Final = 8081
CONTAINER_NAME: Final = "manager"

_READ: Final = ["get", "list", "watch"]
_WATCH: Final = ["list", "watch"]
# Children are written with server-side apply: a PATCH, which the API server also authorizes
# as `create` when the object does not exist yet.
_APPLY_AND_DELETE: Final = ["create", "patch", "delete"]

DEFAULT_RESOURCES: Final[Mapping[str, Mapping[str, str]]] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def _rule(group: str, resources: Sequence[str], verbs: Sequence[str]) -> Rule:
    return {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}


def cluster_role_rules(provisioner: str = "karpenter") -> list[Rule]:
    """The ClusterRole's rules for an operator using `provisioner`."""
    rules = [
        # Watched; the reconciler reads one, and patches its finalizer and its status.
        _rule("kaito.sh", ["workspaces"], [*_READ, "patch"]),
        _rule("kaito.sh", ["workspaces/status"], ["patch"]),
        # The workload and its configuration: applied, read back, removed on deletion.
        _rule("apps", ["statefulsets"], [*_READ, *_APPLY_AND_DELETE]),
        _rule("", ["services", "configmaps"], [*_READ, *_APPLY_AND_DELETE]),
        # Watched to wake workspaces (and listed for their status).
        _rule("", ["pods", "nodes"], _WATCH),
        # A tuning workspace's Job: created once, then read and watched; removed on deletion.
        _rule("batch", ["jobs"], [*_READ, *_APPLY_AND_DELETE]),
        _rule("karpenter.sh", ["nodeclaims"], _WATCH),
        # One Event per condition transition (always a new Event, never patched).
        _rule("", ["events"], ["create"]),
    ]
    rules.extend(PROVISIONER_RULES.get(provisioner, []))
    return rules


PROVISIONER_RULES: Final[Mapping[str, list[Rule]]] = {
    # NodeClaims by the workspace labels: created, read back after a lost race, released.
    "karpenter": [_rule("karpenter.sh", ["nodeclaims"], ["get", "create", "delete"])],
    # The fake writes Node objects itself, including their status.
    "fake": [
        _rule("", ["nodes"], ["get", "create", "delete"]),
        _rule("", ["nodes/status"], ["patch"]),
    ],
    # Bring-your-own only reads the nodes the user named.
    "byo": [_rule("", ["nodes"], ["get"])],
}
"""Rules a built-in provisioner adds; a third-party one documents its own."""

LEASE_RULES: Final[list[Rule]] = [
    _rule("coordination.k8s.io", ["leases"], ["get", "create", "update"]),
]
"""The Role (in the operator's namespace) that leader election needs."""


def _labels(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": NAME,
        "app.kubernetes.io/part-of": "kaito",
        "app.kubernetes.io/component": "controller",
    }
    labels.update(extra or {})
    return labels


def _env(settings: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "value": value} for name, value in settings.items()]


def operator_manifests(
    image: str,
    namespace: str = "kaito-system",
    *,
    replicas: int = 1,
    provisioner: str = "karpenter",
    provisioner_options: Mapping[str, str] | None = None,
    runtime: str = "hf",
    disable_node_auto_provisioning: bool = False,
    concurrency: int = 4,
    leader_election: bool = True,
    lease_name: str | None = None,
    log_format: str = "json",
    image_pull_policy: str = "IfNotPresent",
    resources: Mapping[str, Mapping[str, str]] | None = None,
    include_crds: bool = True,
    include_namespace: bool = True,
) -> list[dict[str, Any]]:
    """The objects that install the operator in `namespace`, in apply order.

    Several `replicas` need `leader_election` (only one of them works at a time). The
    settings reach the container as `KAITO_*` environment variables (see `kaito.operator`).
    """
    if replicas < 1:
        raise ValueError("replicas must be at least 1")
    if replicas > 1 and not leader_election:
        raise ValueError("more than one replica needs leader election")
    defaults = OperatorSettings()
    lease = lease_name or defaults.lease_name
    objects: list[dict[str, Any]] = []
    if include_crds:
        objects.append(workspace_crd())
    if include_namespace:
        objects.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    meta = {"name": NAME, "namespace": namespace, "labels": _labels()}
    objects.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)})
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": _labels()},
            "rules": cluster_role_rules(provisioner),
        }
    )
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    objects.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": NAME, "labels": _labels()},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": NAME,
            },
            "subjects": subject,
        }
    )
    if leader_election:
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": dict(meta),
                "rules": LEASE_RULES,
            }
        )
        objects.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": dict(meta),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
                "subjects": subject,
            }
        )
    objects.append(
        _deployment(
            image,
            namespace,
            replicas=replicas,
            env={
                "KAITO_PROVISIONER": provisioner,
                "KAITO_PROVISIONER_OPTION": ",".join(
                    f"{k}={v}" for k, v in sorted((provisioner_options or {}).items())
                ),
                "KAITO_RUNTIME": runtime,
                "KAITO_DISABLE_NODE_AUTO_PROVISIONING": _bool(disable_node_auto_provisioning),
                "KAITO_CONCURRENCY": str(concurrency),
                "KAITO_LEADER_ELECTION": _bool(leader_election),
                "KAITO_LEASE_NAME": lease,
                "KAITO_LOG_FORMAT": log_format,
                "KAITO_METRICS_ADDR": f"0.0.0.0:{METRICS_PORT}",
                "KAITO_HEALTH_ADDR": f"0.0.0.0:{HEALTH_PORT}",
            },
            image_pull_policy=image_pull_policy,
            resources=resources if resources is not None else DEFAULT_RESOURCES,
            shutdown_timeout=defaults.shutdown_timeout,
        )
    )
    return objects


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _deployment(
    image: str,
    namespace: str,
    *,
    replicas: int,
    env: Mapping[str, str],
    image_pull_policy: str,
    resources: Mapping[str, Mapping[str, str]],
    shutdown_timeout: float,
) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": NAME}
    field_env = [
        # The lease lives next to the operator, and each pod is named in it by its own name.
        {
            "name": "KAITO_LEASE_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        {"name": "KAITO_IDENTITY", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "command": ["kaito", "operator", "run"],
        "env": [*field_env, *_env(env)],
        "ports": [
            {"name": "http-metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            {"name": "http-health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http-health"},
            "initialDelaySeconds": 15,
            "periodSeconds": 20,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http-health"},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
        },
        "resources": {k: dict(v) for k, v in resources.items()},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": namespace, "labels": _labels()},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": _labels()},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    # Long enough for the in-flight reconciles and the lease release.
                    "terminationGracePeriodSeconds": int(shutdown_timeout) + 10,
                    "containers": [container],
                },
            },
        },
    }
