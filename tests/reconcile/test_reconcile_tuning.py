"""Tuning workspaces: the Job `<ws>-tuning`, its conditions, deletion and idempotence.

The builder tests pin the exact Job for the seed's tuning workspace (arguments, mounts, the push
secret, the GPU request) and the other input and output kinds. The lifecycle tests run the
reconciler with the Karpenter provisioner against the emulator while kaito's simulators play
Karpenter, the scheduler, the Job controller and the kubelets: the Job appears after the nodes,
starts, and completes or fails; deleting the workspace removes the Job and the nodes.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from reconcile_helpers import NC6, PHI3, ReconcilerFactory, condition, seed, with_uid

from kaito.kube import CONFIG_MAP, JOB, NODE_CLAIM, POD, WORKSPACE, KubeClient, NotFound
from kaito.kube.simulators import Match, SimulatorConfig, Simulators, pod_failure
from kaito.presets import Plan, PlanOptions, builtin_presets, builtin_skus, plan
from kaito.provisioners import ProvisionerContext
from kaito.provisioners.karpenter import KarpenterProvisioner
from kaito.reconcile import (
    TUNING_CONFIG_KEY,
    TerminalError,
    WorkspaceReconciler,
    desired_tuning_config_map,
    desired_tuning_job,
)
from kaito.reconcile._tuning import termination_summary
from kaito.tuning import default_config_text

pytestmark = pytest.mark.timeout(30)

NS = "default"
WS = "workspace-phi-3-mini"
JOB_NAME = f"{WS}-tuning"
V1ALPHA1 = attrs.evolve(WORKSPACE, version="v1alpha1")
WS_LABELS = {"kaito.sh/workspace": WS, "kaito.sh/workspacenamespace": NS}
DATA_URL = (
    "https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/data/"
    "train-00000-of-00001-54e3756291ca09c6.parquet?download=true"
)


def _plan() -> Plan:
    options = PlanOptions(node_count=1, mode="tuning", tuning_method="qlora")
    return plan(builtin_presets()[PHI3], builtin_skus()[NC6], options)


def _job(doc: dict[str, Any], nodes: tuple[str, ...] = ("node-a",)) -> dict[str, Any]:
    return desired_tuning_job(
        with_uid(doc), nodes=nodes, preset=builtin_presets()[PHI3], plan=_plan(), image="img:1"
    )


def test_the_seed_tuning_workspace_gets_exactly_this_job() -> None:
    job = _job(seed("phi-3-tuning.yaml"))
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"] == {
        "name": JOB_NAME,
        "namespace": NS,
        "labels": WS_LABELS,
        "ownerReferences": [
            {
                "apiVersion": "kaito.sh/v1beta1",
                "kind": "Workspace",
                "name": WS,
                "uid": "uid-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    assert job["spec"]["backoffLimit"] == 2
    template = job["spec"]["template"]
    assert template["metadata"] == {"labels": WS_LABELS}
    pod = template["spec"]
    assert pod["restartPolicy"] == "Never"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-a"]},
                {"key": "app", "operator": "In", "values": ["phi-3-adapter"]},
            ]
        }
    ]
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    (container,) = pod["containers"]
    assert container["image"] == "img:1"
    assert container["command"] == ["python", "-m", "kaito.tuning"]
    assert container["args"] == [
        "--preset", PHI3,
        "--method", "qlora",
        "--config", "/mnt/config/training_config.yaml",
        "--data-url", DATA_URL,
        "--output-dir", "/mnt/results",
        "--push", "ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1",
        "--push-secret", "/mnt/push-secret",
        "--metrics-port", "5000",
    ]  # fmt: skip
    assert container["resources"] == {
        "requests": {"nvidia.com/gpu": "1"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert "env" not in container
    assert container["volumeMounts"] == [
        {"name": "config", "mountPath": "/mnt/config", "readOnly": True},
        {"name": "results", "mountPath": "/mnt/results"},
        {"name": "push-secret", "mountPath": "/mnt/push-secret", "readOnly": True},
    ]
    assert pod["volumes"] == [
        {"name": "config", "configMap": {"name": f"{WS}-tuning-config"}},
        {"name": "results", "emptyDir": {}},
        {
            "name": "push-secret",
            "secret": {
                "secretName": "ACR_REGISTRY_SECRET_HERE",
                "items": [{"key": ".dockerconfigjson", "path": ".dockerconfigjson"}],
            },
        },
    ]


def test_image_input_volume_output_and_a_users_config() -> None:
    doc = seed("phi-3-tuning.yaml")
    doc["tuning"]["config"] = "my-tuning"
    doc["tuning"]["input"] = {
        "image": "registry.example/data:1",
        "imagePullSecrets": ["dp", "dp-2", "dp"],
    }
    doc["tuning"]["output"] = {"volumeSource": {"persistentVolumeClaim": {"claimName": "out"}}}
    doc["tuning"]["preset"]["presetOptions"] = {"imagePullSecrets": ["img-pull"]}
    pod = _job(doc)["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--data-image") + 1] == "registry.example/data:1"
    secrets = [args[i + 1] for i, a in enumerate(args) if a == "--data-pull-secret"]
    assert secrets == ["/mnt/data-pull-secret/dp", "/mnt/data-pull-secret/dp-2"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {
        "name": "data-pull-secret-1",
        "mountPath": "/mnt/data-pull-secret/dp-2",
        "readOnly": True,
    } in mounts
    assert "--push" not in args
    assert "--data-url" not in args
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"] == {"name": "my-tuning"}
    assert volumes["data-pull-secret"]["secret"]["secretName"] == "dp"
    assert volumes["data-pull-secret-1"]["secret"]["secretName"] == "dp-2"
    assert volumes["results"] == {
        "name": "results",
        "persistentVolumeClaim": {"claimName": "out"},
    }
    assert pod["imagePullSecrets"] == [{"name": "img-pull"}]


def test_a_model_directory_and_the_model_access_token_reach_the_program() -> None:
    doc = seed("phi-3-tuning.yaml")
    doc["apiVersion"] = "kaito.sh/v1beta1"  # modelAccessSecret is a v1beta1 field
    doc["tuning"]["preset"]["presetOptions"] = {"modelAccessSecret": "hf-token"}
    job = desired_tuning_job(
        with_uid(doc),
        nodes=("node-a",),
        preset=builtin_presets()[PHI3],
        plan=_plan(),
        image="img:1",
        model_source="/models/phi-3",
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--model") + 1] == "/models/phi-3"
    assert args[args.index("--preset") + 1] == PHI3
    assert container["env"] == [
        {
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}},
        }
    ]


@pytest.mark.parametrize(
    ("message", "summary"),
    [
        ("", ""),
        ("just one line", "just one line"),
        (
            "a\n2026 ERROR kaito.tuning: error: cannot push to r/x:1: denied\nb\n",
            "cannot push to r/x:1: denied",
        ),
        ("line\n\n  last words  \n", "last words"),
        (
            "x ERROR kaito.tuning: error: invalid tuning config /c.yaml:\n"
            "  LoraConfig.r: Input should be a valid integer\n"
            "  TrainingArguments.epochs: Extra inputs are not permitted\n",
            "invalid tuning config /c.yaml: LoraConfig.r: Input should be a valid integer; "
            "TrainingArguments.epochs: Extra inputs are not permitted",
        ),
        (
            "retrying after error: timeout\nTraceback (most recent call last):\n"
            "  File x\nKeyError: 'messages'\n",
            "KeyError: 'messages'",
        ),
        ("error: " + "x" * 600, "x" * 497 + "..."),
    ],
)
def test_the_termination_summary_is_the_error_line(message: str, summary: str) -> None:
    assert termination_summary(message) == summary


def test_volume_input_is_mounted_as_the_data_directory() -> None:
    doc = seed("phi-3-tuning.yaml")
    doc["tuning"]["input"] = {"volumeSource": {"persistentVolumeClaim": {"claimName": "in"}}}
    pod = _job(doc)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][container["args"].index("--data-dir") + 1] == "/mnt/data"
    assert {"name": "data", "mountPath": "/mnt/data", "readOnly": True} in container["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "in"}} in pod["volumes"]


def test_the_default_tuning_config_is_the_methods_shipped_default() -> None:
    config_map = desired_tuning_config_map(with_uid(seed("phi-3-tuning.yaml")))
    assert config_map["metadata"]["name"] == f"{WS}-tuning-config"
    assert config_map["metadata"]["labels"] == WS_LABELS
    assert config_map["data"] == {TUNING_CONFIG_KEY: default_config_text("qlora")}


# ---------------------------------------------------------------------------------------------
# against the emulator and the simulators


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


def _karpenter(client: KubeClient, make_reconciler: ReconcilerFactory) -> WorkspaceReconciler:
    return make_reconciler(KarpenterProvisioner(ProvisionerContext(client=client)))


async def _get(client: KubeClient, kind: Any, name: str) -> dict[str, Any] | None:
    try:
        return await client.get(kind, name, namespace=NS)
    except NotFound:
        return None


async def _drive(
    reconciler: WorkspaceReconciler,
    sims: Simulators,
    client: KubeClient,
    until: Callable[[dict[str, Any] | None], bool],
    passes: int = 12,
) -> dict[str, Any]:
    ws: dict[str, Any] | None = None
    for _ in range(passes):
        with contextlib.suppress(TerminalError):
            await reconciler.reconcile(f"{NS}/{WS}")
        await sims.idle()
        ws = await _get(client, WORKSPACE, WS)
        if until(ws):
            assert ws is not None
            return ws
    raise AssertionError(f"not reached in {passes} passes; status: {(ws or {}).get('status')}")


def _is(type_: str, status: str) -> Callable[[dict[str, Any] | None], bool]:
    def check(ws: dict[str, Any] | None) -> bool:
        cond = condition(ws or {}, type_)
        return cond is not None and cond["status"] == status

    return check


async def _create_seed(client: KubeClient, **tuning: Any) -> None:
    doc = copy.deepcopy(seed("phi-3-tuning.yaml"))
    doc["tuning"].update(tuning)
    await client.create(V1ALPHA1, doc, namespace=NS)


async def test_the_job_runs_after_the_nodes_and_the_workspace_succeeds(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await _create_seed(client)
    reconciler = _karpenter(client, make_reconciler)

    await reconciler.reconcile(f"{NS}/{WS}")
    ws = await _get(client, WORKSPACE, WS)
    assert ws is not None
    waiting = condition(ws, "JobStarted")
    assert waiting is not None
    assert (waiting["status"], waiting["reason"]) == ("False", "WaitingForNodes")
    assert await _get(client, JOB, JOB_NAME) is None, "no Job before the nodes are ready"

    ws = await _drive(reconciler, sims, client, _is("WorkspaceSucceeded", "True"))
    started = condition(ws, "JobStarted")
    assert started is not None
    assert (started["status"], started["reason"]) == ("True", "JobStarted")
    ready = condition(ws, "WorkspaceReady")
    assert ready is not None
    assert ready["status"] == "True"
    assert ready["message"] == (
        "tuning finished; the adapter was pushed to ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1"
    )
    assert ws["status"]["state"] == "Succeeded"
    assert condition(ws, "InferenceReady") is None

    job = await client.get(JOB, JOB_NAME, namespace=NS)
    assert job["metadata"]["labels"] == WS_LABELS
    (node,) = ws["status"]["workerNodes"]
    terms = job["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [node]
    assert await _get(client, CONFIG_MAP, f"{WS}-tuning-config") is not None

    # Converged: another pass reads only, and a completed Job is never created again.
    uid = job["metadata"]["uid"]
    client.requests.reset()
    await reconciler.reconcile(f"{NS}/{WS}")
    assert client.requests.writes == 0, client.requests
    assert (await client.get(JOB, JOB_NAME, namespace=NS))["metadata"]["uid"] == uid


async def test_a_failing_job_fails_the_workspace_with_the_jobs_reason(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims(pod_failure(Match(labels=WS_LABELS), exit_code=3))
    await _create_seed(client)
    reconciler = _karpenter(client, make_reconciler)
    ws = await _drive(reconciler, sims, client, _is("WorkspaceSucceeded", "False"), passes=20)
    # The Job retries its pod; drive until it gives up.
    for _ in range(20):
        succeeded = condition(ws, "WorkspaceSucceeded")
        assert succeeded is not None
        if succeeded["reason"] == "BackoffLimitExceeded":
            break
        ws = await _drive(reconciler, sims, client, lambda _ws: True)
    succeeded = condition(ws, "WorkspaceSucceeded")
    assert succeeded is not None
    assert succeeded["reason"] == "BackoffLimitExceeded"
    assert JOB_NAME in succeeded["message"]
    assert "container tuning exited with code 3 (Error)" in succeeded["message"]
    assert ws["status"]["state"] == "Failed"

    # The termination message (with FallbackToLogsOnError, the tail of the log) is passed on
    # as its `error:` line.
    pods = (await client.list(POD, namespace=NS, label_selector=WS_LABELS)).items
    failed = sorted(pods, key=lambda p: p["metadata"]["name"])[-1]
    statuses = copy.deepcopy(failed["status"]["containerStatuses"])
    statuses[0]["state"]["terminated"]["message"] = (
        "2026-11-24 01:00:00 INFO kaito.tuning: reading the data\n"
        "2026-11-24 01:00:01 ERROR kaito.tuning: error: no data rows in the input\n"
    )
    await client.patch_status(
        POD, failed["metadata"]["name"], {"status": {"containerStatuses": statuses}}, namespace=NS
    )
    await reconciler.reconcile(f"{NS}/{WS}")
    ws = await _get(client, WORKSPACE, WS)
    succeeded = condition(ws or {}, "WorkspaceSucceeded")
    assert succeeded is not None
    assert succeeded["message"].endswith("(Error): no data rows in the input")
    ready = condition(ws, "WorkspaceReady")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "BackoffLimitExceeded")


async def test_deleting_a_tuning_workspace_removes_the_job_and_the_nodes(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await _create_seed(client)
    reconciler = _karpenter(client, make_reconciler)
    await _drive(reconciler, sims, client, _is("JobStarted", "True"))
    assert (await client.list(NODE_CLAIM)).items

    await client.delete(WORKSPACE, WS, namespace=NS)
    for _ in range(12):
        await reconciler.reconcile(f"{NS}/{WS}")
        await sims.idle()
        if await _get(client, WORKSPACE, WS) is None:
            break
    assert await _get(client, WORKSPACE, WS) is None
    assert await _get(client, JOB, JOB_NAME) is None
    assert await _get(client, CONFIG_MAP, f"{WS}-tuning-config") is None
    assert (await client.list(NODE_CLAIM)).items == []


async def test_a_missing_tuning_config_is_reported_and_no_job_is_made(
    client: KubeClient, make_reconciler: ReconcilerFactory, start_sims: StartSims
) -> None:
    sims = await start_sims()
    await _create_seed(client, config="absent-config")
    reconciler = _karpenter(client, make_reconciler)
    ws = await _drive(reconciler, sims, client, _is("NodesReady", "True"))
    ws = await _drive(
        reconciler, sims, client, lambda w: condition(w or {}, "JobStarted") is not None
    )
    started = condition(ws, "JobStarted")
    assert started is not None
    assert started["reason"] == "ConfigMapNotFound"
    assert "absent-config" in started["message"]
    assert await _get(client, JOB, JOB_NAME) is None

    await client.create(
        CONFIG_MAP,
        {"metadata": {"name": "absent-config"}, "data": {"mine.yaml": "training_config: {}\n"}},
        namespace=NS,
    )
    await _drive(reconciler, sims, client, _is("WorkspaceSucceeded", "True"))
    job = await client.get(JOB, JOB_NAME, namespace=NS)
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--config") + 1] == "/mnt/config/mine.yaml"


async def test_job_status_drives_the_conditions_and_state(
    client: KubeClient, make_reconciler: ReconcilerFactory
) -> None:
    # The fake provisioner's nodes are ready at once and nothing runs the Job: the test plays
    # the Job controller by writing the Job's status.
    await _create_seed(client)
    reconciler = make_reconciler()
    await reconciler.reconcile(f"{NS}/{WS}")
    ws = await _get(client, WORKSPACE, WS)
    assert ws is not None
    started = condition(ws, "JobStarted")
    assert started is not None
    assert (started["status"], started["reason"]) == ("False", "JobPending")
    assert ws["status"]["state"] == "Pending"

    await client.patch_status(
        JOB,
        JOB_NAME,
        {"status": {"startTime": "2025-01-01T00:00:00Z", "active": 1}},
        namespace=NS,
    )
    await reconciler.reconcile(f"{NS}/{WS}")
    ws = await _get(client, WORKSPACE, WS)
    assert ws is not None
    started = condition(ws, "JobStarted")
    succeeded = condition(ws, "WorkspaceSucceeded")
    assert started is not None
    assert succeeded is not None
    assert (started["status"], started["reason"]) == ("True", "JobStarted")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "TuningRunning")
    assert ws["status"]["state"] == "Running"

    complete = {"type": "Complete", "status": "True", "reason": "CompletionsReached"}
    await client.patch_status(
        JOB,
        JOB_NAME,
        {"status": {"active": 0, "succeeded": 1, "conditions": [complete]}},
        namespace=NS,
    )
    await reconciler.reconcile(f"{NS}/{WS}")
    ws = await _get(client, WORKSPACE, WS)
    assert ws is not None
    succeeded = condition(ws, "WorkspaceSucceeded")
    assert succeeded is not None
    assert (succeeded["status"], succeeded["reason"]) == ("True", "TuningSucceeded")
    assert ws["status"]["state"] == "Succeeded"
    client.requests.reset()
    await reconciler.reconcile(f"{NS}/{WS}")
    assert client.requests.writes == 0, client.requests
