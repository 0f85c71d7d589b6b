"""Reconcile passes against the emulator over HTTP, with the fake provisioner.

Covers what a pass writes and when it writes nothing: children and status on first sight, zero
writes on a converged re-run, repair of an edited child, roll-outs on adapter and config
changes, deletion through the finalizer, crashes injected at chosen writes, and every way a
spec can fail (invalid, immutable change, plan, runtime, missing ConfigMap, name conflict).
"""

from __future__ import annotations

import copy
from typing import Any

import attrs
import pytest
from reconcile_helpers import (
    A100X2,
    LLAMA70,
    NC6,
    FakeClock,
    ReconcilerFactory,
    condition,
    containers,
    inference_doc,
    seed,
)

from kaito.api import workspace_crd
from kaito.kube import (
    CONFIG_MAP,
    EVENT,
    NODE,
    SERVICE,
    STATEFUL_SET,
    WORKSPACE,
    KubeClient,
    NotFound,
    ServerError,
)
from kaito.kube.emulator import Emulator, nodeclaim_crd
from kaito.reconcile import (
    FINALIZER,
    REVISION_ANNOTATION,
    SPEC_HASH_ANNOTATION,
    ReconcilerSettings,
    Result,
    TerminalError,
)

pytestmark = pytest.mark.timeout(30)

NS = "default"
V1ALPHA1 = attrs.evolve(WORKSPACE, version="v1alpha1")
LABELS = {"kaito.sh/workspace": "ws-phi", "kaito.sh/workspacenamespace": NS}


async def _create(client: KubeClient, doc: dict[str, Any]) -> dict[str, Any]:
    kind = V1ALPHA1 if doc["apiVersion"].endswith("v1alpha1") else WORKSPACE
    return await client.create(kind, doc, namespace=doc["metadata"].get("namespace", NS))


async def _ws(client: KubeClient, name: str = "ws-phi") -> dict[str, Any]:
    return await client.get(WORKSPACE, name, namespace=NS)


async def _edit(client: KubeClient, name: str, change: Any) -> None:
    """Apply `change` to the stored workspace and update it (a user's `kubectl edit`)."""
    current = await _ws(client, name)
    change(current)
    await client.update(WORKSPACE, current, namespace=NS)


async def test_first_pass_creates_the_children_and_reports_status(
    client: KubeClient, make_reconciler: ReconcilerFactory, clock: FakeClock
) -> None:
    await _create(client, seed("phi-3-inference.yaml"))
    result = await make_reconciler().reconcile("default/workspace-phi-3-mini")
    assert result == Result()

    ws = await _ws(client, "workspace-phi-3-mini")
    assert FINALIZER in ws["metadata"]["finalizers"]
    uid = ws["metadata"]["uid"]
    labels = {"kaito.sh/workspace": "workspace-phi-3-mini", "kaito.sh/workspacenamespace": NS}
    for kind, name in (
        (STATEFUL_SET, "workspace-phi-3-mini"),
        (SERVICE, "workspace-phi-3-mini"),
        (CONFIG_MAP, "workspace-phi-3-mini-inference-config"),
    ):
        child = await client.get(kind, name, namespace=NS)
        assert child["metadata"]["labels"] == labels, kind
        (owner,) = child["metadata"]["ownerReferences"]
        assert (owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (uid, True, True)
        assert SPEC_HASH_ANNOTATION in child["metadata"]["annotations"]

    status = ws["status"]
    (node,) = (await client.list(NODE, label_selector=labels)).items
    assert status["workerNodes"] == [node["metadata"]["name"]]
    assert status["targetNodeCount"] == 1
    assert status["state"] == "Pending"
    assert [c["type"] for c in status["conditions"]] == [
        "ResourceReady",
        "NodesReady",
        "InferenceReady",
        "WorkspaceReady",
    ]
    assert condition(ws, "ResourceReady")["status"] == "True"  # type: ignore[index]
    inference = condition(ws, "InferenceReady")
    assert inference is not None
    assert (inference["status"], inference["reason"]) == ("False", "WaitingForPods")
    assert inference["observedGeneration"] == 1
    assert inference["lastTransitionTime"] == "2025-01-01T00:00:00Z"

    events = (await client.list(EVENT, namespace=NS)).items
    reasons = sorted((e["reason"], e["type"]) for e in events)
    assert reasons == [
        ("NodesReady", "Normal"),
        ("ResourcesReady", "Normal"),
        ("WaitingForPods", "Normal"),
        ("WaitingForPods", "Normal"),
    ]
    assert all(e["involvedObject"]["uid"] == uid for e in events)
    assert {e["reportingComponent"] for e in events} == {"kaito-workspace-controller"}


async def test_a_converged_workspace_costs_zero_writes(
    client: KubeClient, make_reconciler: ReconcilerFactory, clock: FakeClock
) -> None:
    await _create(client, inference_doc())
    reconciler = make_reconciler()
    await reconciler.reconcile("default/ws-phi")
    clock.advance(600)  # time passing alone changes nothing
    client.requests.reset()
    assert await reconciler.reconcile("default/ws-phi") == Result()
    assert client.requests.writes == 0, client.requests
    # A second reconciler (an operator restart) agrees: nothing is remembered in memory.
    client.requests.reset()
    await make_reconciler().reconcile("default/ws-phi")
    assert client.requests.writes == 0, client.requests


async def test_an_edited_child_is_put_back_with_one_write(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    await _create(client, inference_doc())
    reconciler = make_reconciler()
    await reconciler.reconcile("default/ws-phi")
    await client.patch(STATEFUL_SET, "ws-phi", {"spec": {"replicas": 0}}, namespace=NS)
    await client.patch(
        STATEFUL_SET, "ws-phi", {"metadata": {"labels": {"team": "mine"}}}, namespace=NS
    )
    client.requests.reset()
    await reconciler.reconcile("default/ws-phi")
    assert client.requests.writes == 1
    sts = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)
    assert sts["spec"]["replicas"] == 1
    assert sts["metadata"]["labels"]["team"] == "mine", "fields kaito does not own are kept"


async def test_changing_adapters_rolls_the_statefulset(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    await _create(client, inference_doc())
    reconciler = make_reconciler()
    await reconciler.reconcile("default/ws-phi")
    before = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)

    def add_adapter(ws: dict[str, Any]) -> None:
        ws["inference"]["adapters"] = [
            {"source": {"name": "tone", "image": "registry.example/tone:1"}, "strength": "0.3"}
        ]

    await _edit(client, "ws-phi", add_adapter)
    client.requests.reset()
    await reconciler.reconcile("default/ws-phi")
    after = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)
    old_rev = before["metadata"]["annotations"][REVISION_ANNOTATION]
    new_rev = after["metadata"]["annotations"][REVISION_ANNOTATION]
    assert old_rev != new_rev
    assert after["spec"]["template"]["metadata"]["annotations"][REVISION_ANNOTATION] == new_rev
    (init,) = after["spec"]["template"]["spec"]["initContainers"]
    assert init["image"] == containers(after)[0]["image"]
    assert init["command"][3:] == ["pull", "registry.example/tone:1", "/mnt/adapter/tone"]
    ws = await _ws(client)
    inference = condition(ws, "InferenceReady")
    assert inference is not None
    assert new_rev in inference["message"]
    assert inference["observedGeneration"] == 2
    # One write for the StatefulSet, one for the status; nothing else changed.
    assert client.requests.count("patch", "statefulsets.apps") == 1
    assert client.requests.count("patch", "services") == 0


async def test_user_config_map_is_awaited_and_its_edits_roll_the_pods(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    await _create(client, inference_doc(config="my-config"))
    reconciler = make_reconciler()
    result = await reconciler.reconcile("default/ws-phi")
    assert result.requeue_after == ReconcilerSettings().missing_config_requeue_seconds
    ws = await _ws(client)
    inference = condition(ws, "InferenceReady")
    assert inference is not None
    assert inference["reason"] == "ConfigMapNotFound"
    assert "my-config" in inference["message"]
    assert ws["status"]["state"] == "NotReady"
    with pytest.raises(NotFound):
        await client.get(STATEFUL_SET, "ws-phi", namespace=NS)

    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "my-config", "namespace": NS},
        "data": {"inference_config.yaml": "transformers:\n  max-batch-size: 4\n"},
    }
    await client.create(CONFIG_MAP, config, namespace=NS)
    await reconciler.reconcile("default/ws-phi")
    first = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)
    volumes = {v["name"]: v for v in first["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"] == {"name": "my-config"}
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "ws-phi-inference-config", namespace=NS)

    await client.patch(
        CONFIG_MAP,
        "my-config",
        {"data": {"inference_config.yaml": "transformers:\n  max-batch-size: 8\n"}},
        namespace=NS,
    )
    await reconciler.reconcile("default/ws-phi")
    second = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)
    assert (
        first["metadata"]["annotations"][REVISION_ANNOTATION]
        != second["metadata"]["annotations"][REVISION_ANNOTATION]
    )


async def test_load_balancer_annotation_makes_a_load_balancer_service(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    await _create(client, inference_doc(annotations={"kaito.sh/service-type": "LoadBalancer"}))
    await make_reconciler().reconcile("default/ws-phi")
    svc = await client.get(SERVICE, "ws-phi", namespace=NS)
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 5000, "protocol": "TCP"}
    ]


async def test_multi_node_model_gets_two_nodes_and_a_headless_service(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    doc = inference_doc(
        "ws-llama", preset=LLAMA70, instance_type=A100X2, annotations={"kaito.sh/runtime": "vllm"}
    )
    await _create(client, doc)
    await make_reconciler().reconcile("default/ws-llama")
    ws = await _ws(client, "ws-llama")
    assert ws["status"]["targetNodeCount"] == 2
    assert len(ws["status"]["workerNodes"]) == 2
    sts = await client.get(STATEFUL_SET, "ws-llama", namespace=NS)
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["serviceName"] == "ws-llama-headless"
    headless = await client.get(SERVICE, "ws-llama-headless", namespace=NS)
    assert headless["spec"]["clusterIP"] == "None"


async def test_deletion_removes_children_releases_nodes_then_the_finalizer(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    await _create(client, inference_doc())
    reconciler = make_reconciler()
    await reconciler.reconcile("default/ws-phi")
    assert len((await client.list(NODE, label_selector=LABELS)).items) == 1
    await client.delete(WORKSPACE, "ws-phi", namespace=NS)
    assert (await _ws(client))["metadata"]["deletionTimestamp"]

    assert await reconciler.reconcile("default/ws-phi") == Result()
    for kind, name in (
        (STATEFUL_SET, "ws-phi"),
        (SERVICE, "ws-phi"),
        (CONFIG_MAP, "ws-phi-inference-config"),
        (WORKSPACE, "ws-phi"),
    ):
        with pytest.raises(NotFound):
            await client.get(kind, name, namespace=NS)
    assert (await client.list(NODE, label_selector=LABELS)).items == []
    # Gone is gone: a late pass for the key does nothing.
    client.requests.reset()
    assert await reconciler.reconcile("default/ws-phi") == Result()
    assert client.requests.writes == 0


async def test_deletion_waits_for_the_provisioner_to_release(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    class SlowRelease:
        name = "slow"

        def __init__(self) -> None:
            self.calls = 0

        async def provision(self, request: Any) -> Any:
            from kaito.provisioners import ProvisionStatus

            return ProvisionStatus(ready=True, nodes=("n1",), reason="NodesReady", message="1/1")

        async def release(self, request: Any) -> bool:
            self.calls += 1
            return self.calls >= 2

    provisioner = SlowRelease()
    reconciler = make_reconciler(provisioner)
    await _create(client, inference_doc())
    await reconciler.reconcile("default/ws-phi")
    await client.delete(WORKSPACE, "ws-phi", namespace=NS)
    first = await reconciler.reconcile("default/ws-phi")
    assert first.requeue_after == ReconcilerSettings().release_requeue_seconds
    assert FINALIZER in (await _ws(client))["metadata"]["finalizers"]
    with pytest.raises(NotFound):
        await client.get(STATEFUL_SET, "ws-phi", namespace=NS)
    assert await reconciler.reconcile("default/ws-phi") == Result()
    with pytest.raises(NotFound):
        await _ws(client)


@pytest.mark.parametrize(
    ("verb", "plural"),
    [
        ("patch", "workspaces"),  # the finalizer
        ("create", "nodes"),
        ("patch", "configmaps"),
        ("patch", "statefulsets"),
        ("patch", "workspaces/status"),
    ],
)
async def test_a_failed_write_and_a_rerun_converge_without_duplicates(
    emu: Emulator,
    client: KubeClient,
    make_reconciler: ReconcilerFactory,
    verb: str,
    plural: str,
) -> None:
    await _create(client, inference_doc())
    fault = emu.faults.add(verb=verb, plural=plural, code=500, message="injected")
    reconciler = make_reconciler()
    with pytest.raises(ServerError):
        await reconciler.reconcile("default/ws-phi")
    assert fault.hits == 1
    await reconciler.reconcile("default/ws-phi")
    assert len((await client.list(NODE, label_selector=LABELS)).items) == 1
    assert len((await client.list(STATEFUL_SET, namespace=NS)).items) == 1
    client.requests.reset()
    await reconciler.reconcile("default/ws-phi")
    assert client.requests.writes == 0
    ws = await _ws(client)
    assert condition(ws, "ResourceReady")["status"] == "True"  # type: ignore[index]


async def test_a_failed_write_during_deletion_and_a_rerun_converge(
    emu: Emulator, client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    await _create(client, inference_doc())
    reconciler = make_reconciler()
    await reconciler.reconcile("default/ws-phi")
    await client.delete(WORKSPACE, "ws-phi", namespace=NS)
    emu.faults.add(verb="delete", plural="nodes", code=500, message="injected")
    with pytest.raises(ServerError):
        await reconciler.reconcile("default/ws-phi")
    assert FINALIZER in (await _ws(client))["metadata"]["finalizers"]
    await reconciler.reconcile("default/ws-phi")
    assert (await client.list(NODE, label_selector=LABELS)).items == []
    with pytest.raises(NotFound):
        await _ws(client)


async def test_a_plan_that_does_not_fit_is_terminal(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    # The webhook's fit check is bypassed, so only the planner can say no.
    doc = inference_doc(
        "ws-big",
        preset="phi-4",
        instance_type=NC6,
        annotations={"kaito.sh/bypass-resource-checks": "True"},
    )
    await _create(client, doc)
    reconciler = make_reconciler()
    with pytest.raises(TerminalError, match="phi-4 needs 3 nodes"):
        await reconciler.reconcile("default/ws-big")
    ws = await _ws(client, "ws-big")
    resource = condition(ws, "ResourceReady")
    assert resource is not None
    assert (resource["status"], resource["reason"]) == ("False", "PlanFailed")
    assert condition(ws, "WorkspaceReady")["reason"] == "PlanFailed"  # type: ignore[index]
    assert ws["status"]["state"] == "Failed"
    assert (await client.list(NODE)).items == [], "nothing is provisioned for it"
    client.requests.reset()
    with pytest.raises(TerminalError):
        await reconciler.reconcile("default/ws-big")
    assert client.requests.writes == 0


async def test_an_unsupported_runtime_is_reported_before_any_node_is_made(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    doc = inference_doc(
        "ws-llama", preset=LLAMA70, instance_type=A100X2, annotations={"kaito.sh/runtime": "hf"}
    )
    await _create(client, doc)
    with pytest.raises(TerminalError):
        await make_reconciler().reconcile("default/ws-llama")
    ws = await _ws(client, "ws-llama")
    inference = condition(ws, "InferenceReady")
    assert inference is not None
    assert inference["reason"] == "UnsupportedRuntime"
    assert "vllm" in inference["message"]
    assert (await client.list(NODE)).items == []


async def test_a_name_taken_by_someone_else_is_not_overwritten(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    mine = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ws-phi", "namespace": NS},
        "spec": {"ports": [{"port": 8080}]},
    }
    await client.create(SERVICE, mine, namespace=NS)
    await _create(client, inference_doc())
    result = await make_reconciler().reconcile("default/ws-phi")
    assert result.requeue_after is not None
    inference = condition(await _ws(client), "InferenceReady")
    assert inference is not None
    assert inference["reason"] == "NameConflict"
    svc = await client.get(SERVICE, "ws-phi", namespace=NS)
    assert svc["spec"]["ports"][0]["port"] == 8080
    await client.delete(WORKSPACE, "ws-phi", namespace=NS)
    await make_reconciler().reconcile("default/ws-phi")
    assert await client.get(SERVICE, "ws-phi", namespace=NS), "deletion leaves it alone too"


async def test_events_can_be_turned_off(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    await _create(client, inference_doc())
    await make_reconciler(settings=ReconcilerSettings(record_events=False)).reconcile(
        "default/ws-phi"
    )
    assert (await client.list(EVENT, namespace=NS)).items == []


async def test_an_immutable_change_is_rejected_by_the_reconcilers_validation(
    tmp_path: Any, clock: FakeClock
) -> None:
    """A cluster without kaito's CEL rules or webhook stores the change; the reconciler must
    still refuse it, and serve on with what it accepted."""
    from reconcile_helpers import registry

    from kaito.provisioners import ProvisionerContext
    from kaito.provisioners.fake import FakeProvisioner
    from kaito.reconcile import WorkspaceReconciler

    crd = _without_cel(workspace_crd())
    async with Emulator(crds=[crd, nodeclaim_crd()]) as emu:
        path = emu.write_kubeconfig(tmp_path / "kubeconfig")
        async with await KubeClient.from_kubeconfig(path) as client:
            reconciler = WorkspaceReconciler(
                client,
                provisioner=FakeProvisioner(ProvisionerContext(client=client)),
                registry=registry(),
                clock=clock,
            )
            await _create(client, inference_doc())
            await reconciler.reconcile("default/ws-phi")
            sts_before = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)

            def change_type(ws: dict[str, Any]) -> None:
                ws["resource"]["instanceType"] = "Standard_NC12s_v3"

            await _edit(client, "ws-phi", change_type)
            with pytest.raises(TerminalError, match="instanceType"):
                await reconciler.reconcile("default/ws-phi")
            ws = await _ws(client)
            resource = condition(ws, "ResourceReady")
            assert resource is not None
            assert (resource["status"], resource["reason"]) == ("False", "InvalidSpec")
            assert "immutable" in resource["message"]
            assert resource["observedGeneration"] == 2
            assert ws["status"]["state"] == "Failed"
            sts_after = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)
            assert (
                sts_after["metadata"]["resourceVersion"]
                == sts_before["metadata"]["resourceVersion"]
            ), "the running workload is left alone"

            def change_back(ws: dict[str, Any]) -> None:
                ws["resource"]["instanceType"] = NC6

            await _edit(client, "ws-phi", change_back)
            await reconciler.reconcile("default/ws-phi")
            resource = condition(await _ws(client), "ResourceReady")
            assert resource is not None
            assert resource["status"] == "True"


def _without_cel(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD with every `x-kubernetes-validations` rule removed (an older cluster)."""
    out = copy.deepcopy(crd)

    def strip(node: Any) -> None:
        if isinstance(node, dict):
            node.pop("x-kubernetes-validations", None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)

    strip(out)
    return out


def _byo_node(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "status": {
            "allocatable": {"nvidia.com/gpu": "1"},
            "capacity": {"nvidia.com/gpu": "1"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


GPU_FEATURES = {
    "nvidia.com/gpu.product": "Tesla-V100-PCIE-16GB",
    "nvidia.com/gpu.count": "1",
    "nvidia.com/gpu.memory": "16384",
    "nvidia.com/gpu.compute.major": "7",
    "nvidia.com/gpu.compute.minor": "0",
}


async def test_own_nodes_without_an_instance_type_are_sized_from_what_they_offer(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    from kaito.provisioners import ProvisionerContext
    from kaito.provisioners.byo import BYOProvisioner

    await client.create(NODE, _byo_node("gpu-1", apps="ws-phi", **GPU_FEATURES))
    reconciler = make_reconciler(
        BYOProvisioner(ProvisionerContext(client=client)),
        ReconcilerSettings(auto_provisioning=False),
    )
    await _create(client, inference_doc(instance_type=None))
    await reconciler.reconcile("default/ws-phi")
    ws = await _ws(client)
    assert condition(ws, "NodesReady")["status"] == "True"  # type: ignore[index]
    assert ws["status"]["workerNodes"] == ["gpu-1"]
    sts = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)
    pod = sts["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["gpu-1"]
    assert (await client.list(NODE)).items[0]["metadata"]["name"] == "gpu-1", "nothing created"


async def test_own_nodes_that_do_not_describe_their_gpus_cannot_be_sized(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    from kaito.provisioners import ProvisionerContext
    from kaito.provisioners.byo import BYOProvisioner

    await client.create(NODE, _byo_node("gpu-1", apps="ws-phi"))
    reconciler = make_reconciler(
        BYOProvisioner(ProvisionerContext(client=client)),
        ReconcilerSettings(auto_provisioning=False),
    )
    await _create(client, inference_doc(instance_type=None))
    result = await reconciler.reconcile("default/ws-phi")
    assert result.requeue_after is not None, "labels may still come: look again"
    resource = condition(await _ws(client), "ResourceReady")
    assert resource is not None
    assert resource["reason"] == "NodeFactsUnavailable"
    assert "gpu-1" in resource["message"]
    assert "nvidia.com/gpu.product" in resource["message"]


async def test_without_a_node_describing_provisioner_an_instance_type_is_required(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    from kaito.provisioners import ProvisionStatus

    class Plain:
        name = "plain"

        async def provision(self, request: Any) -> ProvisionStatus:
            return ProvisionStatus(ready=True, nodes=("n1",))

        async def release(self, request: Any) -> bool:
            return True

    reconciler = make_reconciler(Plain(), ReconcilerSettings(auto_provisioning=False))
    await _create(client, inference_doc(instance_type=None))
    with pytest.raises(TerminalError, match="provisioner that describes nodes"):
        await reconciler.reconcile("default/ws-phi")


async def test_a_document_kaito_cannot_read_is_reported_not_retried(
    tmp_path: Any, clock: FakeClock
) -> None:
    """With a CRD that checks nothing, a misspelt field reaches the reconciler."""
    from reconcile_helpers import registry

    from kaito.provisioners import ProvisionerContext
    from kaito.provisioners.fake import FakeProvisioner
    from kaito.reconcile import WorkspaceReconciler

    crd = copy.deepcopy(workspace_crd())
    for version in crd["spec"]["versions"]:
        version["schema"] = {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        }
    async with Emulator(crds=[crd, nodeclaim_crd()]) as emu:
        path = emu.write_kubeconfig(tmp_path / "kubeconfig")
        async with await KubeClient.from_kubeconfig(path) as client:
            reconciler = WorkspaceReconciler(
                client,
                provisioner=FakeProvisioner(ProvisionerContext(client=client)),
                registry=registry(),
                clock=clock,
            )
            doc = inference_doc()
            doc["resource"]["instanceTypo"] = NC6
            await _create(client, doc)
            with pytest.raises(TerminalError, match="instanceTypo"):
                await reconciler.reconcile("default/ws-phi")
            ws = await _ws(client)
            resource = condition(ws, "ResourceReady")
            assert resource is not None
            assert resource["reason"] == "InvalidSpec"
            assert resource["message"].startswith("resource.instanceTypo: unknown field")
            assert (await client.list(NODE)).items == []
            assert FINALIZER not in (ws["metadata"].get("finalizers") or [])
