"""A tuning workspace's objects and conditions, computed by pure functions.

A tuning workspace runs one batch Job, `<ws>-tuning`, on the nodes it was given: one pod that
runs `python -m kaito.tuning` (data in, training, adapter out) and is never restarted in place;
the Job retries it a few times (`TUNING_BACKOFF_LIMIT`) and then reports Failed. The pod is
placed like the inference pods (GPU requests of the plan, the GPU toleration, required node
affinity to the ready nodes), through the same builders in `_desired`.

Everything the program needs is a flag: the tuning config is a ConfigMap mounted at
`/mnt/config` (the user's `tuning.config`, or `<ws>-tuning-config` with kaito's shipped default
for the method); the data comes as URLs, an OCI image (its pull secrets mounted as docker
configs) or a volume at `/mnt/data`; the adapter goes to a volume at `/mnt/results` or is
pushed to an image with the push secret mounted at `/mnt/push-secret`.

A Job's pod template cannot change after creation, and a finished Job must not run again, so
the reconciler creates the Job once and afterwards only reads it; its status decides JobStarted
and WorkspaceSucceeded here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kaito.api import ConditionType, Workspace
from kaito.kube import RawObject
from kaito.presets import Plan, Preset
from kaito.reconcile._constants import HF_TOKEN_ENV, tuning_config_map_name, tuning_job_name
from kaito.reconcile._desired import (
    GPU_TOLERATIONS,
    labels_of,
    metadata_of,
    node_affinity,
    set_gpus,
)
from kaito.reconcile._status import (
    REASON_JOB_PENDING,
    REASON_JOB_RUNNING,
    REASON_JOB_STARTED,
    REASON_TUNING_SUCCEEDED,
    Cond,
    pod_problem,
)
from kaito.runtimes import CONFIG_DIR, CONFIG_VOLUME, INFERENCE_PORT

# The defaults module, not the facade: the facade also reaches the trainer (torch, peft).
from kaito.tuning._config import Method, default_config_text

TUNING_CONFIG_KEY = "training_config.yaml"
"""The key of the tuning config file in kaito's default tuning ConfigMap."""

TUNING_BACKOFF_LIMIT = 2
"""Pod retries of the tuning Job before it fails: a bad config or unreachable data fails the
same way every time, so a few tries are enough for a flaky download."""

DATA_DIR = "/mnt/data"
RESULTS_DIR = "/mnt/results"
PUSH_SECRET_DIR = "/mnt/push-secret"
DATA_PULL_SECRET_DIR = "/mnt/data-pull-secret"
DOCKERCONFIGJSON_KEY = ".dockerconfigjson"
TUNING_CONTAINER = "tuning"

_DATA_VOLUME = "data"
_RESULTS_VOLUME = "results"
_PUSH_SECRET_VOLUME = "push-secret"
_DATA_PULL_SECRET_VOLUME = "data-pull-secret"


def tuning_method(workspace: Workspace) -> Method:
    tuning = workspace.tuning
    method = tuning.method if tuning is not None else None
    return Method(method.value) if method is not None else Method.LORA


def tuning_image(workspace: Workspace, default_image: str) -> str:
    """`tuning.preset.presetOptions.image` if set, else `default_image` (the HF runtime's)."""
    tuning = workspace.tuning
    options = tuning.preset.preset_options if tuning and tuning.preset else None
    if options is not None and options.image:
        return options.image
    return default_image


def tuning_success_message(workspace: Workspace) -> str:
    """WorkspaceReady's message once tuning succeeded: where the adapter is."""
    output = workspace.tuning.output if workspace.tuning is not None else None
    if output is not None and output.image:
        return f"tuning finished; the adapter was pushed to {output.image}"
    return "tuning finished; the adapter is in the tuning.output volume"


def desired_tuning_config_map(workspace: Workspace) -> RawObject:
    """`<ws>-tuning-config`: kaito's default tuning config for the workspace's method, for
    workspaces whose `tuning.config` is empty."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata_of(workspace, tuning_config_map_name(workspace)),
        "data": {TUNING_CONFIG_KEY: default_config_text(tuning_method(workspace))},
    }


def tuning_config_key(data: Mapping[str, str]) -> str | None:
    """The file of a user's tuning ConfigMap to read: `training_config.yaml` if present, else
    its only YAML key (None when that is ambiguous or absent)."""
    if TUNING_CONFIG_KEY in data:
        return TUNING_CONFIG_KEY
    yaml_keys = sorted(k for k in data if k.endswith((".yaml", ".yml")))
    return yaml_keys[0] if len(yaml_keys) == 1 else None


def desired_tuning_job(
    workspace: Workspace,
    *,
    nodes: Sequence[str],
    preset: Preset,
    plan: Plan,
    image: str,
    config_key: str = TUNING_CONFIG_KEY,
    model_source: str | None = None,
) -> RawObject:
    """The Job `<ws>-tuning`. `config_key` is the file in the config ConfigMap (the user's
    `tuning.config`, or kaito's default); `model_source` is where the preset's weights are when
    not at its Hugging Face id (a directory, as `ReconcilerSettings.model_sources` gives)."""
    tuning = workspace.tuning
    if tuning is None:
        raise ValueError("only tuning workspaces have a tuning Job")
    config_map = tuning.config or tuning_config_map_name(workspace)
    args = [
        "--preset",
        preset.name,
        "--method",
        tuning_method(workspace).value,
        "--config",
        f"{CONFIG_DIR}/{config_key}",
    ]
    if model_source:
        args += ["--model", model_source]
    mounts: list[dict[str, Any]] = [
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}
    ]
    volumes: list[dict[str, Any]] = [{"name": CONFIG_VOLUME, "configMap": {"name": config_map}}]

    source = tuning.input
    if source is not None and source.urls:
        for url in source.urls:
            args += ["--data-url", url]
    elif source is not None and source.image:
        args += ["--data-image", source.image]
        # Each secret's docker config in a directory of its own; the program uses the first
        # that has the registry, as a kubelet tries a pod's pull secrets.
        for index, secret in enumerate(dict.fromkeys(source.image_pull_secrets or [])):
            volume = (
                _DATA_PULL_SECRET_VOLUME if index == 0 else f"{_DATA_PULL_SECRET_VOLUME}-{index}"
            )
            directory = f"{DATA_PULL_SECRET_DIR}/{secret}"
            args += ["--data-pull-secret", directory]
            mounts.append({"name": volume, "mountPath": directory, "readOnly": True})
            volumes.append(_docker_config_volume(volume, secret))
    elif source is not None and source.volume_source is not None:
        args += ["--data-dir", DATA_DIR]
        mounts.append({"name": _DATA_VOLUME, "mountPath": DATA_DIR, "readOnly": True})
        volumes.append({"name": _DATA_VOLUME, **source.volume_source})

    args += ["--output-dir", RESULTS_DIR]
    mounts.append({"name": _RESULTS_VOLUME, "mountPath": RESULTS_DIR})
    output = tuning.output
    if output is not None and output.volume_source is not None:
        volumes.append({"name": _RESULTS_VOLUME, **output.volume_source})
    else:
        volumes.append({"name": _RESULTS_VOLUME, "emptyDir": {}})
    if output is not None and output.image:
        args += ["--push", output.image]
        if output.image_push_secret:
            args += ["--push-secret", PUSH_SECRET_DIR]
            mounts.append(
                {"name": _PUSH_SECRET_VOLUME, "mountPath": PUSH_SECRET_DIR, "readOnly": True}
            )
            volumes.append(_docker_config_volume(_PUSH_SECRET_VOLUME, output.image_push_secret))
    args += ["--metrics-port", str(INFERENCE_PORT)]

    container: dict[str, Any] = {
        "name": TUNING_CONTAINER,
        "image": image,
        "command": ["python", "-m", "kaito.tuning"],
        "args": args,
        "ports": [{"name": "metrics", "containerPort": INFERENCE_PORT, "protocol": "TCP"}],
        "volumeMounts": mounts,
        # The program's last log line says what went wrong; it becomes the failure message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    options = tuning.preset.preset_options if tuning.preset is not None else None
    if options is not None and options.model_access_secret:
        container["env"] = [
            {
                "name": HF_TOKEN_ENV,
                "valueFrom": {
                    "secretKeyRef": {"name": options.model_access_secret, "key": HF_TOKEN_ENV}
                },
            }
        ]
    set_gpus(container, plan.gpus_per_node)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "affinity": node_affinity(workspace, nodes),
        "tolerations": [dict(t) for t in GPU_TOLERATIONS],
        "containers": [container],
        "volumes": volumes,
    }
    if options is not None and options.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in options.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata_of(workspace, tuning_job_name(workspace)),
        "spec": {
            "backoffLimit": TUNING_BACKOFF_LIMIT,
            "template": {"metadata": {"labels": labels_of(workspace)}, "spec": pod_spec},
        },
    }


def _docker_config_volume(volume: str, secret: str) -> dict[str, Any]:
    return {
        "name": volume,
        "secret": {
            "secretName": secret,
            "items": [{"key": DOCKERCONFIGJSON_KEY, "path": DOCKERCONFIGJSON_KEY}],
        },
    }


# ---------------------------------------------------------------------------------------------
# status


def _job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _termination_detail(pods: Sequence[Mapping[str, Any]]) -> str:
    """How the last failed tuning container ended: exit code, reason and the termination
    message the program wrote (kaito.tuning's `error:` line), if any."""
    found = ""
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", ""))):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (cs.get("state") or {}).get("terminated") or {}
            if not terminated.get("exitCode"):
                continue
            found = f"container {cs.get('name')} exited with code {terminated['exitCode']}"
            if terminated.get("reason"):
                found += f" ({terminated['reason']})"
            message = termination_summary(str(terminated.get("message") or ""))
            if message:
                found += f": {message}"
    return found


ERROR_MARK = "error: "
TRACEBACK_MARK = "Traceback (most recent call last):"
SUMMARY_LIMIT = 500


def termination_summary(message: str) -> str:
    """The part of a termination message that says what went wrong. With the policy
    FallbackToLogsOnError the message is the tail of the log, and kaito.tuning ends it with
    `... error: WHAT`, its details on indented lines below (a config's field paths): the last
    such block gives `WHAT DETAIL; DETAIL`. A traceback after it (a crash after an earlier
    `error:` line) or no such line at all: the last line, what happened last."""
    lines = [line.rstrip() for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    chosen = lines[-1].strip()
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if line.startswith(TRACEBACK_MARK):
            break
        at = line.find(ERROR_MARK)
        if at < 0:
            continue
        head = line[at + len(ERROR_MARK) :].strip()
        details = [d.strip() for d in lines[index + 1 :] if d[:1].isspace()]
        if head:
            chosen = f"{head} {'; '.join(details)}" if details else head
        break
    if len(chosen) > SUMMARY_LIMIT:
        chosen = chosen[: SUMMARY_LIMIT - 3] + "..."
    return chosen


def tuning_conditions(
    job: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]
) -> tuple[list[Cond], bool]:
    """JobStarted and WorkspaceSucceeded from the tuning Job and its pods, and whether the
    workspace failed (the Job reported Failed)."""
    started_type = ConditionType.JOB_STARTED.value
    succeeded_type = ConditionType.WORKSPACE_SUCCEEDED.value
    if job is None:
        return [
            Cond(started_type, "False", REASON_JOB_PENDING, "the tuning Job is not created yet")
        ], False
    name = str((job.get("metadata") or {}).get("name", ""))
    status = job.get("status") or {}
    started = bool(status.get("startTime") or status.get("active") or status.get("succeeded"))
    complete = _job_condition(job, "Complete")
    failed = _job_condition(job, "Failed")
    if started or complete or failed:
        conditions = [
            Cond(started_type, "True", REASON_JOB_STARTED, f"the tuning Job {name} started")
        ]
    else:
        problem = next((p for p in map(pod_problem, pods) if p is not None), None)
        if problem is not None:
            return [Cond(started_type, "False", problem[0], problem[1], warning=True)], False
        return [
            Cond(
                started_type,
                "False",
                REASON_JOB_PENDING,
                f"the tuning Job {name} is created; waiting for its pod to start",
            )
        ], False
    if complete is not None:
        conditions.append(
            Cond(
                succeeded_type,
                "True",
                REASON_TUNING_SUCCEEDED,
                f"the tuning Job {name} completed",
            )
        )
        return conditions, False
    if failed is not None:
        reason = str(failed.get("reason") or "JobFailed")
        message = f"the tuning Job {name} failed: {failed.get('message') or reason}"
        detail = _termination_detail(pods)
        if detail:
            message += f"; {detail}"
        conditions.append(Cond(succeeded_type, "False", reason, message, warning=True))
        return conditions, True
    running = f"the tuning Job {name} is running"
    # Pods that already failed are the Job's retries to count, not a problem of the one running.
    live = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded")]
    problem = next((p for p in map(pod_problem, live) if p is not None), None)
    if problem is not None:
        conditions.append(Cond(succeeded_type, "False", problem[0], problem[1], warning=True))
    else:
        conditions.append(Cond(succeeded_type, "False", REASON_JOB_RUNNING, running))
    return conditions, False
