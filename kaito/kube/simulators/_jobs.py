"""Jobs (`batch/v1`): pods run to completion, and the Job counts them.

The Job stage keeps `parallelism` pods active until `completions` of them have succeeded, or
until more than `backoffLimit` have failed. Whether a pod succeeds or fails is the pod stages'
business (`pod-complete`, or a `pod_failure` stage in front of it), so a test makes a Job fail
by selecting its pods, exactly as it would make any pod fail.

Pods are `<job>-<suffix>` with the `batch.kubernetes.io/job-name`, `job-name`,
`batch.kubernetes.io/controller-uid` and `controller-uid` labels. Status carries startTime,
active, ready, succeeded, failed and, at the end, the conditions Kubernetes (1.31 and later)
writes: SuccessCriteriaMet and Complete with completionTime, or FailureTarget and Failed with
reason BackoffLimitExceeded (active pods are deleted then). A suspended Job runs no pods.

Simplifications: a failed pod is replaced at once (no exponential back-off), restartPolicy
OnFailure is treated like Never, and activeDeadlineSeconds, indexed completion and
ttlSecondsAfterFinished are not simulated.
"""

from __future__ import annotations

from typing import Any

from kaito.kube import JOB, POD, RawObject, ResourceKind
from kaito.kube.simulators._objects import (
    deleting,
    is_true,
    name_of,
    namespace_of,
    random_suffix,
    set_condition,
    spec_of,
    status_of,
    uid_of,
)
from kaito.kube.simulators._pods import phase_of, pod_ready
from kaito.kube.simulators._stages import Stage, StageContext
from kaito.kube.simulators._workloads import Owners, pod_from_template, write_status
from kaito.kube.simulators._world import World

LABEL_JOB_NAME = "batch.kubernetes.io/job-name"
LABEL_CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
BACKOFF_MESSAGE = "Job has reached the specified backoff limit"


def _finished(job: RawObject) -> bool:
    return is_true(job, "Complete") or is_true(job, "Failed")


def _running(job: RawObject) -> bool:
    return not deleting(job) and not _finished(job)


class JobController:
    def __init__(self, world: World, owners: Owners) -> None:
        self._world = world
        self._owners = owners
        world.informer(JOB).add_handler(lambda _old, new: world.enqueue(JOB, new))

    def stages(self) -> list[Stage]:
        return [Stage("job-sync", JOB, self._sync, when=_running)]

    async def _create(self, ctx: StageContext, job: RawObject) -> None:
        labels = {
            LABEL_JOB_NAME: name_of(job),
            "job-name": name_of(job),
            LABEL_CONTROLLER_UID: uid_of(job),
            "controller-uid": uid_of(job),
        }
        for _ in range(10):
            name = f"{name_of(job)}-{random_suffix(self._world.rng)}"
            if self._world.cached(POD, name, namespace_of(job)) is None:
                await ctx.create(POD, pod_from_template(job, name, labels=labels))
                return

    async def _sync(self, ctx: StageContext, kind: ResourceKind, job: RawObject) -> None:
        spec = spec_of(job)
        status = status_of(job)
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec.get("parallelism", 1))
        backoff_limit = int(spec.get("backoffLimit", 6))
        suspended = bool(spec.get("suspend"))
        pods = self._owners.pods_of(job)
        active = [p for p in pods if not deleting(p) and phase_of(p) not in ("Succeeded", "Failed")]
        succeeded = max(
            int(status.get("succeeded") or 0), sum(1 for p in pods if phase_of(p) == "Succeeded")
        )
        failed = max(
            int(status.get("failed") or 0), sum(1 for p in pods if phase_of(p) == "Failed")
        )
        now = ctx.timestamp()
        update: dict[str, Any] = {}
        conds = [dict(c) for c in status.get("conditions") or ()]

        if failed > backoff_limit:
            for pod in active:
                await ctx.delete(POD, pod)
            active = []
            conds = set_condition(
                conds,
                "FailureTarget",
                "True",
                now,
                reason="BackoffLimitExceeded",
                message=BACKOFF_MESSAGE,
                heartbeat="lastProbeTime",
            )
            conds = set_condition(
                conds,
                "Failed",
                "True",
                now,
                reason="BackoffLimitExceeded",
                message=BACKOFF_MESSAGE,
                heartbeat="lastProbeTime",
            )
        elif succeeded >= completions:
            for pod in active:
                await ctx.delete(POD, pod)
            active = []
            message = "Reached expected number of succeeded pods"
            conds = set_condition(
                conds,
                "SuccessCriteriaMet",
                "True",
                now,
                reason="CompletionsReached",
                message=message,
                heartbeat="lastProbeTime",
            )
            conds = set_condition(
                conds,
                "Complete",
                "True",
                now,
                reason="CompletionsReached",
                message=message,
                heartbeat="lastProbeTime",
            )
            update["completionTime"] = status.get("completionTime") or now
        elif not suspended:
            wanted = min(parallelism, completions - succeeded)
            for _ in range(wanted - len(active)):
                await self._create(ctx, job)
            active = [
                p
                for p in self._owners.pods_of(job)
                if not deleting(p) and phase_of(p) not in ("Succeeded", "Failed")
            ]
        if not suspended or status.get("startTime"):
            update["startTime"] = status.get("startTime") or now
        update.update(
            {
                "active": len(active),
                "ready": sum(1 for p in active if pod_ready(p)),
                "succeeded": succeeded,
                "failed": failed,
            }
        )
        if conds:
            update["conditions"] = conds
        await write_status(ctx, kind, job, update)
