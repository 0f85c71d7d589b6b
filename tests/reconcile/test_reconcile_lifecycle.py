"""Whole lifecycles: the reconciler with the Karpenter provisioner and kaito's simulators.

The simulators play Karpenter (NodeClaim -> Node), the scheduler, the StatefulSet controller
and the kubelets beside the emulator, so a workspace goes from nothing to WorkspaceReady, rolls
out an adapter change, and is deleted without leaving anything behind. Failures are simulator
stages: capacity that is not there, a NodeClaim that never becomes a node, an image that cannot
be pulled, a pod no node takes, a container that crashes. Each test drives passes by hand (the
operator's watches would), a bounded number of times.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from reconcile_helpers import (
    A100X2,
    LLAMA70,
    ReconcilerFactory,
    condition,
    inference_doc,
    seed,
)

from kaito.kube import (
    CONFIG_MAP,
    EVENT,
    NODE,
    NODE_CLAIM,
    POD,
    SERVICE,
    STATEFUL_SET,
    WORKSPACE,
    KubeClient,
    NotFound,
    ServerError,
)
from kaito.kube.emulator import Emulator
from kaito.kube.simulators import (
    Match,
    SimulatorConfig,
    Simulators,
    crash_loop,
    image_pull_error,
    insufficient_capacity,
    never_registers,
)
from kaito.provisioners import ProvisionerContext
from kaito.provisioners.karpenter import KarpenterProvisioner
from kaito.reconcile import REVISION_ANNOTATION, TerminalError, WorkspaceReconciler

pytestmark = pytest.mark.timeout(30)

NS = "default"
V1ALPHA1 = attrs.evolve(WORKSPACE, version="v1alpha1")
WS_LABELS = {"kaito.sh/workspace": "ws-phi"}


class ShiftedClock:
    """Wall-clock time plus an offset the test moves (the provisioner's view of 'now')."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


StartSims = Callable[..., Any]


@pytest.fixture
async def start_sims(sim_client: KubeClient) -> AsyncIterator[StartSims]:
    started: list[Simulators] = []

    async def start(*stages: Any) -> Simulators:
        sims = Simulators(sim_client, SimulatorConfig(stages=stages))
        await sims.start()
        started.append(sims)
        return sims

    yield start
    for sims in started:
        await sims.stop()


def _karpenter(
    client: KubeClient, make_reconciler: ReconcilerFactory, clock: ShiftedClock | None = None
) -> WorkspaceReconciler:
    provisioner = KarpenterProvisioner(ProvisionerContext(client=client), clock=clock)
    return make_reconciler(provisioner)


async def _get(client: KubeClient, name: str) -> dict[str, Any] | None:
    try:
        return await client.get(WORKSPACE, name, namespace=NS)
    except NotFound:
        return None


async def _drive(
    reconciler: WorkspaceReconciler,
    sims: Simulators,
    client: KubeClient,
    name: str,
    until: Callable[[dict[str, Any] | None], bool],
    passes: int = 10,
) -> dict[str, Any] | None:
    """Reconcile and let the simulators act, until `until(workspace)` holds."""
    ws: dict[str, Any] | None = None
    for _ in range(passes):
        with contextlib.suppress(TerminalError):
            await reconciler.reconcile(f"{NS}/{name}")
        await sims.idle()
        ws = await _get(client, name)
        if until(ws):
            return ws
    raise AssertionError(f"not reached in {passes} passes; status: {(ws or {}).get('status')}")


def _is(type_: str, status: str, reason: str | None = None) -> Callable[[Any], bool]:
    def check(ws: dict[str, Any] | None) -> bool:
        cond = condition(ws or {}, type_)
        return (
            cond is not None
            and cond["status"] == status
            and (reason is None or cond["reason"] == reason)
        )

    return check


async def _events(client: KubeClient) -> list[tuple[str, str]]:
    return sorted((e["reason"], e["type"]) for e in (await client.list(EVENT, namespace=NS)).items)


async def test_the_seed_workspace_becomes_ready_and_then_costs_nothing(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await client.create(V1ALPHA1, seed("phi-3-inference.yaml"), namespace=NS)
    reconciler = _karpenter(client, make_reconciler)
    name = "workspace-phi-3-mini"
    ws = await _drive(reconciler, sims, client, name, _is("WorkspaceReady", "True"))
    assert ws is not None
    status = ws["status"]
    assert [(c["type"], c["status"]) for c in status["conditions"]] == [
        ("ResourceReady", "True"),
        ("NodeClaimReady", "True"),
        ("NodesReady", "True"),
        ("InferenceReady", "True"),
        ("WorkspaceReady", "True"),
    ]
    assert status["state"] == "Ready"
    (claim,) = (await client.list(NODE_CLAIM)).items
    assert status["workerNodes"] == [n["metadata"]["name"] for n in (await client.list(NODE)).items]
    sts = await client.get(STATEFUL_SET, name, namespace=NS)
    revision = sts["metadata"]["annotations"][REVISION_ANNOTATION]
    inference = condition(ws, "InferenceReady")
    assert inference is not None
    assert inference["message"] == f"revision {revision} is live: 1 of 1 pods ready"
    assert claim["spec"]["resources"]["requests"]["storage"] == "80Gi"

    client.requests.reset()
    await reconciler.reconcile(f"{NS}/{name}")
    assert client.requests.writes == 0, client.requests
    assert len((await client.list(NODE_CLAIM)).items) == 1


async def test_deleting_a_ready_workspace_leaves_nothing_behind(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await client.create(WORKSPACE, inference_doc(), namespace=NS)
    reconciler = _karpenter(client, make_reconciler)
    await _drive(reconciler, sims, client, "ws-phi", _is("WorkspaceReady", "True"))
    await client.delete(WORKSPACE, "ws-phi", namespace=NS)
    await _drive(reconciler, sims, client, "ws-phi", lambda ws: ws is None)
    assert (await client.list(NODE_CLAIM)).items == []
    assert (await client.list(NODE)).items == []
    for kind in (STATEFUL_SET, SERVICE, CONFIG_MAP):
        owned = (await client.list(kind, namespace=NS, label_selector=WS_LABELS)).items
        assert owned == [], kind
    await sims.idle()
    assert (await client.list(POD, namespace=NS)).items == []


@pytest.mark.parametrize(
    ("verb", "plural"),
    [("create", "nodeclaims"), ("patch", "services"), ("patch", "workspaces/status")],
)
async def test_a_crash_at_a_write_converges_without_duplicate_nodeclaims(
    emu: Emulator,
    client: KubeClient,
    make_reconciler: ReconcilerFactory,
    start_sims: StartSims,
    verb: str,
    plural: str,
) -> None:
    sims = await start_sims()
    await client.create(WORKSPACE, inference_doc(), namespace=NS)
    fault = emu.faults.add(verb=verb, plural=plural, code=500, message="injected")
    reconciler = _karpenter(client, make_reconciler)
    for _ in range(5):  # the pass that meets the fault fails; the operator would retry it
        try:
            await reconciler.reconcile(f"{NS}/ws-phi")
        except ServerError:
            break
        await sims.idle()
    await _drive(reconciler, sims, client, "ws-phi", _is("WorkspaceReady", "True"), passes=12)
    assert fault.hits == 1
    assert len((await client.list(NODE_CLAIM)).items) == 1
    assert len((await client.list(NODE)).items) == 1


async def test_no_capacity_for_the_instance_type_is_a_failure_with_karpenters_message(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims(insufficient_capacity(Match()))
    await client.create(WORKSPACE, inference_doc(), namespace=NS)
    reconciler = _karpenter(client, make_reconciler)
    ws = await _drive(
        reconciler, sims, client, "ws-phi", _is("ResourceReady", "False", "NodeClaimLaunchFailed")
    )
    assert ws is not None
    resource = condition(ws, "ResourceReady")
    assert resource is not None
    assert "insufficient capacity for instance type Standard_NC6s_v3" in resource["message"]
    claim = condition(ws, "NodeClaimReady")
    assert claim is not None
    assert claim["status"] == "False"
    ready = condition(ws, "WorkspaceReady")
    assert ready is not None
    assert ready["reason"] == "NodeClaimLaunchFailed"
    assert ws["status"]["state"] == "Failed"
    assert ("NodeClaimLaunchFailed", "Warning") in await _events(client)
    with pytest.raises(NotFound):
        await client.get(STATEFUL_SET, "ws-phi", namespace=NS)


async def test_a_nodeclaim_that_never_becomes_ready_times_out(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims(never_registers(Match()))
    await client.create(WORKSPACE, inference_doc(), namespace=NS)
    clock = ShiftedClock()
    reconciler = _karpenter(client, make_reconciler, clock)
    ws = await _drive(reconciler, sims, client, "ws-phi", _is("NodesReady", "False"))
    nodes = condition(ws or {}, "NodesReady")
    assert nodes is not None
    assert (nodes["reason"], nodes["message"]) == ("WaitingForNodes", "0 of 1 nodes ready")
    inference = condition(ws or {}, "InferenceReady")
    assert inference is not None
    assert inference["reason"] == "WaitingForNodes"
    assert (ws or {})["status"]["state"] == "Pending"

    clock.offset = timedelta(hours=1)
    ws = await _drive(
        reconciler, sims, client, "ws-phi", _is("ResourceReady", "False", "NodeClaimNotReady")
    )
    resource = condition(ws or {}, "ResourceReady")
    assert resource is not None
    assert "is not Ready 10m0s after its creation" in resource["message"]
    assert (ws or {})["status"]["state"] == "Failed"


async def test_an_image_that_cannot_be_pulled_is_named(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims(image_pull_error(Match(labels=WS_LABELS)))
    await client.create(WORKSPACE, inference_doc(), namespace=NS)
    reconciler = _karpenter(client, make_reconciler)
    ws = await _drive(
        reconciler, sims, client, "ws-phi", _is("InferenceReady", "False", "ImagePullFailed")
    )
    inference = condition(ws or {}, "InferenceReady")
    assert inference is not None
    image = "ghcr.io/kaito-project/kaito/kaito-base:"
    assert inference["message"].startswith(f"image {image}")
    assert "cannot be pulled: " in inference["message"]
    ready = condition(ws or {}, "WorkspaceReady")
    assert ready is not None
    assert ready["reason"] == "ImagePullFailed"
    assert (ws or {})["status"]["state"] == "NotReady"
    assert ("ImagePullFailed", "Warning") in await _events(client)


async def test_a_crash_looping_server_reports_its_restarts(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims(crash_loop(Match(labels=WS_LABELS), max_restarts=3))
    await client.create(WORKSPACE, inference_doc(), namespace=NS)
    reconciler = _karpenter(client, make_reconciler)
    ws = await _drive(
        reconciler, sims, client, "ws-phi", _is("InferenceReady", "False", "CrashLoopBackOff")
    )
    inference = condition(ws or {}, "InferenceReady")
    assert inference is not None
    assert "container inference of pod ws-phi-0 keeps crashing (restarted" in inference["message"]
    assert "last exit code 1" in inference["message"]


async def test_a_pod_no_node_takes_reports_the_schedulers_message(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims()
    doc = inference_doc("ws-phi")
    doc["inference"] = {
        "template": {
            "spec": {
                "containers": [{"name": "server", "image": "registry.example/server:1"}],
                "nodeSelector": {"pool": "nowhere"},
            }
        }
    }
    await client.create(WORKSPACE, doc, namespace=NS)
    reconciler = _karpenter(client, make_reconciler)
    ws = await _drive(
        reconciler, sims, client, "ws-phi", _is("InferenceReady", "False", "PodUnschedulable")
    )
    inference = condition(ws or {}, "InferenceReady")
    assert inference is not None
    assert inference["message"].startswith("pod ws-phi-0 cannot be scheduled: 0/1 nodes")
    sts = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)
    template = sts["spec"]["template"]["spec"]
    assert "tolerations" not in template, "the template as given"
    assert "affinity" not in template, "the template as given"


async def test_an_adapter_change_rolls_out_and_status_names_the_live_revision(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await client.create(WORKSPACE, inference_doc(), namespace=NS)
    reconciler = _karpenter(client, make_reconciler)
    await _drive(reconciler, sims, client, "ws-phi", _is("WorkspaceReady", "True"))
    old = (await client.get(STATEFUL_SET, "ws-phi", namespace=NS))["metadata"]["annotations"][
        REVISION_ANNOTATION
    ]

    current = await client.get(WORKSPACE, "ws-phi", namespace=NS)
    current["inference"]["adapters"] = [
        {"source": {"name": "tone", "image": "registry.example/tone:1"}, "strength": "0.4"}
    ]
    await client.update(WORKSPACE, current, namespace=NS)

    def new_revision_live(ws: dict[str, Any] | None) -> bool:
        cond = condition(ws or {}, "InferenceReady")
        return cond is not None and cond["status"] == "True" and old not in cond["message"]

    ws = await _drive(reconciler, sims, client, "ws-phi", new_revision_live)
    sts = await client.get(STATEFUL_SET, "ws-phi", namespace=NS)
    new = sts["metadata"]["annotations"][REVISION_ANNOTATION]
    assert new != old
    inference = condition(ws or {}, "InferenceReady")
    assert inference is not None
    assert inference["message"].startswith(f"revision {new} is live")
    (pod,) = (await client.list(POD, namespace=NS, label_selector=WS_LABELS)).items
    assert pod["metadata"]["annotations"][REVISION_ANNOTATION] == new
    (init,) = pod["spec"]["initContainers"]
    assert init["image"] == pod["spec"]["containers"][0]["image"]
    assert init["command"][-2:] == ["registry.example/tone:1", "/mnt/adapter/tone"]


async def test_a_model_over_two_nodes_becomes_ready(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims()
    doc = inference_doc(
        "ws-llama", preset=LLAMA70, instance_type=A100X2, annotations={"kaito.sh/runtime": "vllm"}
    )
    await client.create(WORKSPACE, doc, namespace=NS)
    reconciler = _karpenter(client, make_reconciler)
    ws = await _drive(reconciler, sims, client, "ws-llama", _is("WorkspaceReady", "True"))
    assert ws is not None
    assert ws["status"]["targetNodeCount"] == 2
    assert len(ws["status"]["workerNodes"]) == 2
    assert len((await client.list(NODE_CLAIM)).items) == 2
    pods = (
        await client.list(POD, namespace=NS, label_selector={"kaito.sh/workspace": "ws-llama"})
    ).items
    assert sorted(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] for p in pods) == [
        "0",
        "1",
    ]
    assert {p["spec"]["nodeName"] for p in pods} == set(ws["status"]["workerNodes"])
