"""Install manifests: their shape, and RBAC that covers exactly what the operator does.

The RBAC test replays a workspace's whole life (creation, nodes, workload, status, events,
deletion with its finalizer) through the operator, kaito's `WorkspaceReconciler` and the fake
provisioner against the emulator, with leader election on, and takes the requests the
emulator's request log saw as the truth about what the code needs.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
import yaml
from operator_support import running, settings, wait_until, workspace

from kaito.api import workspace_crd
from kaito.cli._operator import register_manifests
from kaito.kube import KubeClient, PatchType, ResourceKind
from kaito.kube.emulator import Emulator
from kaito.operator import LEASE_RULES, Operator, cluster_role_rules, operator_manifests
from kaito.plugins import Registry
from kaito.provisioners import ProvisionerContext
from kaito.provisioners.fake import FakeProvisioner
from kaito.reconcile import FINALIZER, WorkspaceReconciler
from kaito.runtimes.hf._runtime import HuggingFaceRuntime

pytestmark = pytest.mark.timeout(30)


def by_kind(objects: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(o["kind"]): dict(o) for o in objects}


def test_the_manifests_hold_the_crd_namespace_rbac_and_deployment_in_apply_order() -> None:
    objects = operator_manifests("example/kaito:1.2.3", "kaito-ops")
    assert [o["kind"] for o in objects] == [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
    ]
    kinds = by_kind(objects)
    assert kinds["CustomResourceDefinition"] == workspace_crd()
    assert all(o["metadata"].get("name") != "nodeclaims.karpenter.sh" for o in objects)
    assert kinds["Namespace"]["metadata"]["name"] == "kaito-ops"
    subject = {"kind": "ServiceAccount", "name": "kaito-workspace", "namespace": "kaito-ops"}
    assert kinds["ClusterRoleBinding"]["subjects"] == [subject]
    assert (
        kinds["ClusterRoleBinding"]["roleRef"]["name"] == kinds["ClusterRole"]["metadata"]["name"]
    )
    assert kinds["Role"]["metadata"]["namespace"] == "kaito-ops"
    assert kinds["Role"]["rules"] == LEASE_RULES
    assert kinds["RoleBinding"]["subjects"] == [subject]


def test_the_deployment_runs_the_operator_safely() -> None:
    deployment = by_kind(
        operator_manifests(
            "example/kaito:1.2.3",
            "kaito-ops",
            replicas=2,
            provisioner="karpenter",
            provisioner_options={"nodeClass": "default", "arch": "amd64"},
            runtime="vllm",
        )
    )["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kaito-workspace"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] > 30, "longer than the shutdown timeout"
    (container,) = pod["containers"]
    assert container["image"] == "example/kaito:1.2.3"
    assert container["command"] == ["kaito", "operator", "run"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http-metrics": 8080, "http-health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-health"}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["KAITO_PROVISIONER"] == "karpenter"
    assert env["KAITO_PROVISIONER_OPTION"] == "arch=amd64,nodeClass=default"
    assert env["KAITO_RUNTIME"] == "vllm"
    assert env["KAITO_LEADER_ELECTION"] == "true"
    assert env["KAITO_METRICS_ADDR"] == "0.0.0.0:8080"
    assert env["KAITO_HEALTH_ADDR"] == "0.0.0.0:8081"
    assert env["KAITO_LEASE_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["KAITO_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_manifest_options() -> None:
    bare = operator_manifests(
        "kaito:dev", include_crds=False, include_namespace=False, leader_election=False
    )
    assert [o["kind"] for o in bare] == [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
    ]
    env = {
        e["name"]: e.get("value")
        for e in by_kind(bare)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KAITO_LEADER_ELECTION"] == "false"
    with pytest.raises(ValueError, match="leader election"):
        operator_manifests("kaito:dev", replicas=2, leader_election=False)
    with pytest.raises(ValueError, match="replicas"):
        operator_manifests("kaito:dev", replicas=0)


def test_the_provisioner_decides_the_node_rules() -> None:
    def grants(provisioner: str) -> set[tuple[str, str, str]]:
        return granted(cluster_role_rules(provisioner))

    assert ("create", "karpenter.sh", "nodeclaims") in grants("karpenter")
    assert ("create", "karpenter.sh", "nodeclaims") not in grants("fake")
    assert ("create", "", "nodes") in grants("fake")
    assert ("create", "", "nodes") not in grants("karpenter")
    assert {verb for verb, _, res in grants("byo") if res == "nodes"} == {"get", "list", "watch"}
    assert not any(res == "secrets" for _, _, res in grants("karpenter")), "no secret is read"


def test_kaito_manifests_operator_prints_the_same_objects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser(prog="kaito manifests")
    register_manifests(parser.add_subparsers(dest="manifests_command", required=True))
    args = parser.parse_args(
        [
            "operator",
            "--image",
            "example/kaito:9",
            "--namespace",
            "ops",
            "--provisioner",
            "fake",
            "--provisioner-option",
            "cpu=4",
            "--no-crds",
        ]
    )
    assert args.func(args, Registry()) == 0
    printed = list(yaml.safe_load_all(io.StringIO(capsys.readouterr().out)))
    assert printed == operator_manifests(
        "example/kaito:9",
        "ops",
        provisioner="fake",
        provisioner_options={"cpu": "4"},
        include_crds=False,
    )


# -- RBAC against a recorded run ---------------------------------------------------------------


def granted(rules: Iterable[Mapping[str, list[str]]]) -> set[tuple[str, str, str]]:
    return {
        (verb, group, resource)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


class ApplyRecorder:
    """The client, noting which kinds it wrote with server-side apply (authorized as create
    as well as patch when the object is new, which the request log cannot tell)."""

    def __init__(self, inner: KubeClient) -> None:
        self._inner = inner
        self.applied: set[tuple[str, str]] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def patch(self, kind: ResourceKind, name: str, patch: Any, **kw: Any) -> Any:
        if kw.get("patch_type") is PatchType.APPLY:
            self.applied.add((kind.group, kind.plural))
        return await self._inner.patch(kind, name, patch, **kw)


NOT_EXERCISED = {
    ("get", "", "nodes"): "the fake provisioner reads a node back after losing a create race",
    ("patch", "", "nodes/status"): "the fake provisioner repairs the status of an unfit node",
}
"""Rules granted for code paths the recorded run does not reach, with the reason."""


async def test_the_rbac_covers_exactly_what_a_workspace_lifecycle_uses(
    emu: Emulator, client: KubeClient
) -> None:
    recorder = ApplyRecorder(client)
    registry = Registry()
    registry.add_runtime("hf", HuggingFaceRuntime)
    reconciler = WorkspaceReconciler(
        recorder,  # type: ignore[arg-type]
        provisioner=FakeProvisioner(ProvisionerContext(recorder)),  # type: ignore[arg-type]
        registry=registry,
    )
    operator = Operator(
        recorder,  # type: ignore[arg-type]
        reconciler,
        settings(leader_election=True, lease_name="kaito-workspace-controller"),
    )
    tuning = workspace("tune")
    del tuning["inference"]
    tuning["tuning"] = {
        "preset": {"name": "phi-3-mini-4k-instruct"},
        "method": "lora",
        "input": {"urls": ["https://data.example/train.jsonl"]},
        "output": {"image": "registry.example/adapter:1", "imagePushSecret": "push"},
    }
    emu.requests.reset()
    emu.store.seed([workspace("phi"), tuning])
    async with running(operator):
        await wait_until(
            lambda: emu.store.get("statefulsets", "default", "phi") is not None,
            within=10,
            what="the workload",
        )
        await wait_until(
            lambda: emu.store.get("jobs", "default", "tune-tuning") is not None,
            within=10,
            what="the tuning Job",
        )
        await wait_until(
            lambda: bool((emu.store.get("workspaces", "default", "phi") or {}).get("status")),
            what="the status",
        )
        ws = emu.store.get("workspaces", "default", "phi")
        assert ws is not None
        assert FINALIZER in ws["metadata"]["finalizers"]
        emu.store.delete("workspaces", "default", "phi")
        emu.store.delete("workspaces", "default", "tune")
        await wait_until(
            lambda: (
                emu.store.get("workspaces", "default", "phi") is None
                and emu.store.get("workspaces", "default", "tune") is None
            ),
            within=10,
            what="the finalizers to be removed",
        )

    used = {(e.verb, e.group, e.resource) for e in emu.requests.entries}
    used |= {("create", group, plural) for group, plural in recorder.applied}
    rules = granted(cluster_role_rules("fake")) | granted(LEASE_RULES)
    missing = sorted(used - rules)
    assert not missing, f"the code does more than the RBAC allows: {missing}"
    unused = sorted(rules - used - set(NOT_EXERCISED))
    assert not unused, f"the RBAC grants more than the code uses: {unused}"
    # The run did go through the interesting paths.
    assert ("create", "", "events") in used
    assert ("delete", "apps", "statefulsets") in used
    assert ("delete", "batch", "jobs") in used
    assert ("update", "coordination.k8s.io", "leases") in used
