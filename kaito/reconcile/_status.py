"""Status: what the workspace's conditions say, computed from what the cluster shows.

Conditions are computed afresh on every pass (level-triggered) as `Cond` values, then merged
with the ones already written so that `lastTransitionTime` moves only when a condition's status
changes, the way `meta.SetStatusCondition` does in Go controllers. A pass that computes the same
conditions therefore renders the same status, and the reconciler writes nothing.

The workload's condition reads the StatefulSet and its pods, and names the first thing a user
can act on: an image that cannot be pulled ("image X cannot be pulled: ..."), a pod the
scheduler cannot place (the scheduler's message), a container in a crash loop (with its restart
count), a container that cannot start (a missing Secret), or else how many pods are still
coming. Pods carry the `workspace.kaito.io/revision` of the template they were made from, so the
condition also says which revision serves, and whether a roll-out is under way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from kaito.api import ConditionType, WorkspaceState
from kaito.reconcile._constants import REVISION_ANNOTATION

Status = Literal["True", "False", "Unknown"]

CONDITION_ORDER: tuple[str, ...] = tuple(c.value for c in ConditionType)
"""Conditions are written in this order, so a re-run renders the same list."""

# Reasons the reconciler itself gives (the provisioner's reasons pass through unchanged).
REASON_INVALID_SPEC = "InvalidSpec"
REASON_PLAN_FAILED = "PlanFailed"
REASON_NODE_FACTS_UNKNOWN = "NodeFactsUnavailable"
REASON_UNSUPPORTED_RUNTIME = "UnsupportedRuntime"
REASON_RESOURCES_READY = "ResourcesReady"
REASON_PROVISIONING = "ProvisioningNodes"
REASON_PROVISIONING_FAILED = "ProvisioningFailed"
REASON_NODE_CLAIMS_READY = "NodeClaimsReady"
REASON_NODE_CLAIMS_NOT_READY = "NodeClaimsNotReady"
REASON_NODES_READY = "NodesReady"
REASON_WAITING_FOR_NODES = "WaitingForNodes"
REASON_INFERENCE_READY = "InferenceReady"
REASON_WAITING_FOR_PODS = "WaitingForPods"
REASON_ROLLING_OUT = "RollingOut"
REASON_IMAGE_PULL = "ImagePullFailed"
REASON_UNSCHEDULABLE = "PodUnschedulable"
REASON_CRASH_LOOP = "CrashLoopBackOff"
REASON_CONTAINER_CONFIG = "ContainerCannotStart"
REASON_POD_FAILED = "PodFailed"
REASON_CONFIG_NOT_FOUND = "ConfigMapNotFound"
REASON_NAME_CONFLICT = "NameConflict"
REASON_WORKSPACE_READY = "WorkspaceReady"
REASON_JOB_PENDING = "JobPending"
REASON_JOB_STARTED = "JobStarted"
REASON_JOB_RUNNING = "TuningRunning"
REASON_TUNING_SUCCEEDED = "TuningSucceeded"

IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
START_FAILURE_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)


@attrs.frozen
class Cond:
    """One computed condition; `warning` marks a failure (its Event is a Warning)."""

    type: str
    status: Status
    reason: str
    message: str
    warning: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "True"


def render_conditions(
    previous: Iterable[Mapping[str, Any]],
    computed: Iterable[Cond],
    *,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """The conditions to write: `computed` in the canonical order, keeping each previous
    `lastTransitionTime` whose status did not change."""
    before = {str(c.get("type")): c for c in previous}
    out: list[dict[str, Any]] = []
    for cond in sorted(computed, key=_order):
        old = before.get(cond.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == cond.status else None
        rendered: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": since or now,
        }
        if generation is not None:
            rendered["observedGeneration"] = generation
        out.append(rendered)
    return out


def transitions(previous: Iterable[Mapping[str, Any]], computed: Iterable[Cond]) -> list[Cond]:
    """Conditions that are new, or whose status or reason changed (each earns an Event)."""
    before = {str(c.get("type")): c for c in previous}
    changed: list[Cond] = []
    for cond in sorted(computed, key=_order):
        old = before.get(cond.type)
        if old is None or old.get("status") != cond.status or old.get("reason") != cond.reason:
            changed.append(cond)
    return changed


def _order(cond: Cond) -> tuple[int, str]:
    try:
        return CONDITION_ORDER.index(cond.type), cond.type
    except ValueError:
        return len(CONDITION_ORDER), cond.type


def workspace_ready(conditions: Sequence[Cond], *, success_message: str) -> Cond:
    """WorkspaceReady: True when every other condition is; else the first one that is not,
    with its reason and message (so `kubectl get workspace` tells what to fix)."""
    for cond in sorted(conditions, key=_order):
        if not cond.ok:
            return Cond(
                ConditionType.WORKSPACE_READY.value,
                "False",
                cond.reason,
                cond.message,
                cond.warning,
            )
    return Cond(
        ConditionType.WORKSPACE_READY.value, "True", REASON_WORKSPACE_READY, success_message
    )


def state_for(conditions: Sequence[Cond], *, failed: bool) -> WorkspaceState:
    """The one-word `status.state`: Failed for what waiting will not fix (an invalid spec, a
    plan that does not fit, nodes that cannot be had, a tuning Job that failed); for tuning,
    Succeeded once WorkspaceSucceeded is True and Running while the Job runs; Ready when
    WorkspaceReady is True, NotReady when the workload has a problem the user must act on,
    else Pending."""
    if failed:
        return WorkspaceState.FAILED
    by_type = {c.type: c for c in conditions}
    succeeded = by_type.get(ConditionType.WORKSPACE_SUCCEEDED.value)
    if succeeded is not None and succeeded.ok:
        return WorkspaceState.SUCCEEDED
    started = by_type.get(ConditionType.JOB_STARTED.value)
    if started is not None and started.ok and not any(c.warning for c in conditions):
        return WorkspaceState.RUNNING
    ready = by_type.get(ConditionType.WORKSPACE_READY.value)
    if ready is not None and ready.ok:
        return WorkspaceState.READY
    if any(c.warning for c in conditions):
        return WorkspaceState.NOT_READY
    return WorkspaceState.PENDING


# ---------------------------------------------------------------------------------------------
# the workload


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    for cond in _status(pod).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def pod_revision(pod: Mapping[str, Any]) -> str | None:
    """The kaito revision a pod was created from (its template's annotation)."""
    value = (_meta(pod).get("annotations") or {}).get(REVISION_ANNOTATION)
    return str(value) if value else None


def pod_problem(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) of what keeps a pod from running, if it is something to act on."""
    name = str(_meta(pod).get("name", ""))
    status = _status(pod)
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            detail = cond.get("message") or "no node fits the pod"
            return REASON_UNSCHEDULABLE, f"pod {name} cannot be scheduled: {detail}"
    images = _container_images(pod)
    for cs in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        problem = _container_problem(name, cs, images)
        if problem is not None:
            return problem
    if status.get("phase") == "Failed":
        detail = status.get("message") or status.get("reason") or "all containers exited"
        return REASON_POD_FAILED, f"pod {name} failed: {detail}"
    return None


def _container_images(pod: Mapping[str, Any]) -> dict[str, str]:
    spec = pod.get("spec") or {}
    return {
        str(c.get("name")): str(c.get("image", ""))
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    }


def _container_problem(
    pod: str, cs: Mapping[str, Any], images: Mapping[str, str]
) -> tuple[str, str] | None:
    waiting = (cs.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    if not reason:
        return None
    container = str(cs.get("name", ""))
    detail = waiting.get("message") or reason
    if reason in IMAGE_PULL_REASONS:
        image = images.get(container) or cs.get("image") or "(unknown)"
        return (
            REASON_IMAGE_PULL,
            f"image {image} cannot be pulled: {detail} (container {container} of pod {pod})",
        )
    if reason == "CrashLoopBackOff":
        restarts = int(cs.get("restartCount") or 0)
        last = ((cs.get("lastState") or {}).get("terminated")) or {}
        exit_info = ""
        if last:
            exit_info = f"; last exit code {last.get('exitCode')}"
            if last.get("reason"):
                exit_info += f" ({last['reason']})"
            if last.get("message"):
                exit_info += f": {last['message']}"
        return (
            REASON_CRASH_LOOP,
            f"container {container} of pod {pod} keeps crashing "
            f"(restarted {restarts} times{exit_info})",
        )
    if reason in START_FAILURE_REASONS:
        return (
            REASON_CONTAINER_CONFIG,
            f"container {container} of pod {pod} cannot start: {detail}",
        )
    return None


def inference_condition(
    statefulset: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    *,
    revision: str,
) -> Cond:
    """InferenceReady from the StatefulSet and its pods.

    Ready means every wanted pod is Ready and made from `revision` (the desired one); the
    message names the live revision either way. Pods that predate kaito's revision annotation
    count by the StatefulSet's own roll-out status.
    """
    kind = ConditionType.INFERENCE_READY.value
    if statefulset is None:
        return Cond(
            kind, "False", REASON_WAITING_FOR_PODS, "the inference workload is not created yet"
        )
    wanted = int((statefulset.get("spec") or {}).get("replicas") or 0)
    live = [p for p in pods if not _meta(p).get("deletionTimestamp")]
    live.sort(key=lambda p: str(_meta(p).get("name", "")))
    sts_status = _status(statefulset)
    rolled = bool(sts_status.get("updateRevision")) and sts_status.get(
        "updateRevision"
    ) == sts_status.get("currentRevision")

    def current(pod: Mapping[str, Any]) -> bool:
        found = pod_revision(pod)
        return found == revision if found is not None else rolled

    ready_current = [p for p in live if _pod_ready(p) and current(p)]
    if wanted and len(ready_current) >= wanted:
        return Cond(
            kind,
            "True",
            REASON_INFERENCE_READY,
            f"revision {revision} is live: {len(ready_current)} of {wanted} pods ready",
        )
    for pod in live:
        if _pod_ready(pod):
            continue
        problem = pod_problem(pod)
        if problem is not None:
            return Cond(kind, "False", problem[0], problem[1], warning=True)
    old_serving = sorted(
        {r for p in live if _pod_ready(p) and not current(p) and (r := pod_revision(p))}
    )
    if old_serving:
        return Cond(
            kind,
            "False",
            REASON_ROLLING_OUT,
            f"rolling out revision {revision}: {len(ready_current)} of {wanted} pods updated "
            f"and ready; revision {', '.join(old_serving)} still serves",
        )
    missing = max(wanted - len(ready_current), 0)
    return Cond(
        kind,
        "False",
        REASON_WAITING_FOR_PODS,
        f"waiting for {missing} of {wanted} pods to be ready (revision {revision})",
    )
