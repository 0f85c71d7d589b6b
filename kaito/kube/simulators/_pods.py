"""Pods: the scheduler and the kubelet, as stages.

    pod-gc        a pod bound to a node that was deleted is deleted (the pod GC controller)
    pod-schedule  an unbound pod is bound to a node that fits (see `_scheduling`), or gets
                  `PodScheduled=False, reason Unschedulable` with the scheduler's message
    pod-start     a bound pod runs: phase Running, every container running and ready
    pod-complete  a pod that runs to completion (restartPolicy Never or OnFailure) succeeds

Failures go in front of pod-start or pod-complete: `image_pull_error` (ErrImagePull, then
ImagePullBackOff), `crash_loop` (CrashLoopBackOff with a growing restartCount), and
`pod_failure` (the pod ends Failed with an exit code).

Unschedulable pods are retried when something changes that could let them fit: a node
appears, changes its labels, taints, allocatable or readiness, or a pod leaves a node — not
when only the pod's own status changed, which is how kube-scheduler keeps from retrying in a
loop. With many pending pods and many nodes both the waking and the deciding must stay cheap:

- pending pods are indexed by the label one of which their node must carry (from
  `nodeSelector` or a single required affinity term), so a node change wakes only the pods
  waiting for one of its labels (and those that do not narrow their choice);
- a decision examines only the nodes carrying such a label; for the message, which counts
  every node, the others come from a running tally of how many nodes stop at which taint for
  the pod's set of tolerations, kept up to date on every node change.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import attrs

from kaito.kube import NODE, POD, RawObject, ResourceKind
from kaito.kube.simulators._match import ALL, Match
from kaito.kube.simulators._objects import (
    deleting,
    is_true,
    labels_of,
    meta,
    name_of,
    namespace_of,
    set_condition,
    spec_of,
    status_of,
    uid_of,
)
from kaito.kube.simulators._scheduling import (
    ANY_NODE,
    TERMINAL_PHASES,
    Decision,
    decide,
    node_keys,
    required_keys,
    schedule,
    taint_reason,
    tolerations_of,
)
from kaito.kube.simulators._stages import Delay, Delete, Stage, StageContext
from kaito.kube.simulators._world import World

DEFAULT_SCHEDULER = "default-scheduler"


# -- predicates -------------------------------------------------------------------------------


def phase_of(pod: RawObject) -> str:
    return str(status_of(pod).get("phase") or "Pending")


def awaiting_schedule(pod: RawObject) -> bool:
    spec = spec_of(pod)
    return (
        not deleting(pod)
        and not spec.get("nodeName")
        and phase_of(pod) not in TERMINAL_PHASES
        and spec.get("schedulerName", DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
    )


def awaiting_start(pod: RawObject) -> bool:
    return (
        not deleting(pod)
        and bool(spec_of(pod).get("nodeName"))
        and phase_of(pod) == "Pending"
        and not status_of(pod).get("containerStatuses")
    )


def runs_to_completion(pod: RawObject) -> bool:
    return spec_of(pod).get("restartPolicy", "Always") in ("Never", "OnFailure")


def all_running(pod: RawObject) -> bool:
    statuses = status_of(pod).get("containerStatuses") or []
    return (
        phase_of(pod) == "Running"
        and bool(statuses)
        and all("running" in (s.get("state") or {}) for s in statuses if isinstance(s, dict))
    )


def finishing(pod: RawObject) -> bool:
    return not deleting(pod) and runs_to_completion(pod) and all_running(pod)


def waiting_reason(pod: RawObject) -> str | None:
    for cstatus in status_of(pod).get("containerStatuses") or []:
        waiting = (cstatus.get("state") or {}).get("waiting")
        if waiting:
            return str(waiting.get("reason") or "")
    return None


def pod_ready(pod: RawObject) -> bool:
    if phase_of(pod) != "Running" or deleting(pod):
        return False
    return is_true(pod, "Ready")


# -- status builders --------------------------------------------------------------------------


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _image_id(image: str) -> str:
    repo = image
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        repo = image[: len(image) - len(last)] + last.split(":", 1)[0]
    return f"{repo}@sha256:{_digest(image)}"


def _containers(pod: RawObject, field: str = "containers") -> list[dict[str, Any]]:
    return [c for c in spec_of(pod).get(field) or () if isinstance(c, dict)]


def _container_status(
    pod: RawObject,
    container: dict[str, Any],
    state: dict[str, Any],
    *,
    ready: bool,
    restarts: int = 0,
    last_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    image = str(container.get("image", ""))
    name = str(container.get("name", ""))
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "imageID": _image_id(image) if "waiting" not in state else "",
        "ready": ready,
        "started": "running" in state,
        "restartCount": restarts,
        "state": state,
        "lastState": last_state or {},
    }
    if "waiting" not in state:
        out["containerID"] = f"containerd://{_digest(uid_of(pod) + name)}"
    return out


def _unready_message(pod: RawObject) -> str:
    names = " ".join(str(c.get("name")) for c in _containers(pod))
    return f"containers with unready status: [{names}]"


def _pod_ip(pod: RawObject) -> str:
    # Derived from the uid: stable across restarts of the simulators, no shared counter.
    raw = int(_digest(uid_of(pod) or name_of(pod))[:6], 16)
    return f"10.{64 + (raw >> 16) % 64}.{(raw >> 8) & 0xFF}.{raw % 254 + 1}"


def _host_ip(node: RawObject | None) -> str:
    for address in status_of(node or {}).get("addresses") or ():
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return ""


def _conditions(obj: RawObject) -> list[dict[str, Any]]:
    found = status_of(obj).get("conditions")
    return [dict(c) for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def _pod_conditions(
    pod: RawObject, now: str, *, ready: bool, reason: str | None = None
) -> list[dict[str, Any]]:
    conds = _conditions(pod)
    conds = set_condition(conds, "PodReadyToStartContainers", "True", now)
    conds = set_condition(conds, "Initialized", "True", now)
    if ready:
        conds = set_condition(conds, "Ready", "True", now)
        conds = set_condition(conds, "ContainersReady", "True", now)
    else:
        message = _unready_message(pod) if reason == "ContainersNotReady" else None
        conds = set_condition(conds, "Ready", "False", now, reason=reason, message=message)
        conds = set_condition(
            conds, "ContainersReady", "False", now, reason=reason, message=message
        )
    return set_condition(conds, "PodScheduled", "True", now)


def _started_fields(ctx: StageContext, pod: RawObject) -> dict[str, Any]:
    status = status_of(pod)
    node = ctx.cached(NODE, str(spec_of(pod).get("nodeName", "")))
    host = _host_ip(node)
    pod_ip = status.get("podIP") or _pod_ip(pod)
    return {
        "hostIP": host,
        "hostIPs": [{"ip": host}] if host else [],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": status.get("startTime") or ctx.timestamp(),
    }


def _init_statuses(pod: RawObject, now: str) -> list[dict[str, Any]]:
    done = {
        "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}
    }
    return [_container_status(pod, c, done, ready=True) for c in _containers(pod, "initContainers")]


# -- the pod simulator ------------------------------------------------------------------------


MAX_SUMMARIES = 64
"""Distinct sets of tolerations whose per-node taint outcomes are kept up to date."""


def _pod_key(pod: RawObject) -> tuple[str, str]:
    return (namespace_of(pod) or "", name_of(pod))


def _bound_node(pod: RawObject) -> list[str]:
    node = spec_of(pod).get("nodeName")
    return [str(node)] if node else []


def _pending_keys(pod: RawObject) -> list[str]:
    """Where a pending pod waits: the `key=value` strings one of which its node must offer,
    or `*` when its node selection does not narrow the nodes down."""
    if not awaiting_schedule(pod):
        return []
    return required_keys(pod) or [ANY_NODE]


def _tolerations_key(tolerations: list[dict[str, Any]]) -> str:
    return json.dumps(
        sorted(tolerations, key=lambda t: json.dumps(t, sort_keys=True)), sort_keys=True
    )


def _scheduling_view(node: RawObject | None) -> Any:
    """What of a node matters to the scheduler; a change elsewhere (a heartbeat) wakes no pod."""
    if node is None:
        return None
    spec = spec_of(node)
    status = status_of(node)
    ready = [c.get("status") for c in status.get("conditions") or () if c.get("type") == "Ready"]
    return (
        labels_of(node),
        spec.get("taints"),
        spec.get("unschedulable"),
        status.get("allocatable") or status.get("capacity"),
        ready,
        bool(meta(node).get("deletionTimestamp")),
    )


@attrs.frozen
class PodSettings:
    schedule: Delay
    start: Delay
    run: Delay


class PodSimulator:
    """Builds the pod stages and wires node and pod changes to the pods they concern."""

    def __init__(self, world: World, settings: PodSettings) -> None:
        self._world = world
        self._settings = settings
        self._lock = asyncio.Lock()
        self._gone_nodes: set[str] = set()
        self.pods = world.informer(POD)
        self.pods.add_index("node", _bound_node)
        self.pods.add_index("pending", _pending_keys)
        self.pods.add_handler(self._on_pod)
        self.nodes = world.informer(NODE)
        self.nodes.add_index("labels", node_keys)
        self.nodes.add_handler(self._on_node)
        # Per set of tolerations: how many nodes stop at each taint reason (None: none).
        self._summaries: dict[str, tuple[list[dict[str, Any]], collections.Counter[str | None]]]
        self._summaries = {}
        self._retry: set[tuple[str, str]] = set()
        """Pending pods that something has happened to since they last failed to fit."""

    # -- event wiring ---------------------------------------------------------------------

    def _wake_pending_for(self, node: RawObject) -> None:
        for key in [*node_keys(node), ANY_NODE]:
            for pod in self.pods.by_index("pending", key):
                self._retry.add(_pod_key(pod))
                self._world.enqueue(POD, pod)

    def _on_pod(self, old: RawObject | None, new: RawObject | None) -> None:
        self._world.enqueue(POD, new)
        if new is None:
            assert old is not None
            self._retry.discard(_pod_key(old))
        elif (old is None or spec_of(old) != spec_of(new)) and awaiting_schedule(new):
            self._retry.add(_pod_key(new))
        if old is None:
            return
        node_name = spec_of(old).get("nodeName")
        if not node_name:
            return
        if (
            new is None
            and node_name in self._gone_nodes
            and not self.pods.by_index("node", str(node_name))
        ):
            self._gone_nodes.discard(str(node_name))  # its last pod is gone: forget the node
        freed = new is None or (
            phase_of(new) in TERMINAL_PHASES and phase_of(old) not in TERMINAL_PHASES
        )
        if freed:
            node = self.nodes.get(str(node_name))
            if node is not None:
                self._wake_pending_for(node)

    def _on_node(self, old: RawObject | None, new: RawObject | None) -> None:
        for tolerations, counts in self._summaries.values():
            if old is not None:
                counts[taint_reason(tolerations, old)] -= 1
            if new is not None:
                counts[taint_reason(tolerations, new)] += 1
        if new is None:
            assert old is not None
            self._gone_nodes.add(name_of(old))
            for pod in self.pods.by_index("node", name_of(old)):
                self._world.enqueue(POD, pod)
            return
        self._gone_nodes.discard(name_of(new))
        if old is None:
            for pod in self.pods.by_index("node", name_of(new)):
                self._world.enqueue(POD, pod)  # pods that were waiting for their node
        if _scheduling_view(old) != _scheduling_view(new):
            self._wake_pending_for(new)

    # -- stages ---------------------------------------------------------------------------

    def preamble(self) -> list[Stage]:
        return [Stage("pod-gc", POD, Delete(), when=self._orphaned)]

    def lifecycle(self) -> list[Stage]:
        s = self._settings
        return [
            Stage("pod-schedule", POD, self._schedule, when=awaiting_schedule, delay=s.schedule),
            Stage("pod-start", POD, self._start, when=self._startable, delay=s.start),
            Stage("pod-complete", POD, _complete, when=finishing, delay=s.run),
        ]

    def _orphaned(self, pod: RawObject) -> bool:
        node = spec_of(pod).get("nodeName")
        return (
            not deleting(pod)
            and bool(node)
            and str(node) in self._gone_nodes
            and self.nodes.get(str(node)) is None
        )

    def _startable(self, pod: RawObject) -> bool:
        return awaiting_start(pod) and self.nodes.get(str(spec_of(pod)["nodeName"])) is not None

    # -- effects --------------------------------------------------------------------------

    def _bound_pods(self, node: str) -> Sequence[RawObject]:
        return self.pods.by_index("node", node)

    def _summary(self, tolerations: list[dict[str, Any]]) -> collections.Counter[str | None]:
        key = _tolerations_key(tolerations)
        found = self._summaries.get(key)
        if found is None:
            if len(self._summaries) >= MAX_SUMMARIES:
                del self._summaries[next(iter(self._summaries))]
            counts = collections.Counter(taint_reason(tolerations, n) for n in self.nodes.items())
            found = self._summaries[key] = (tolerations, counts)
        return found[1]

    def _decide(self, pod: RawObject) -> Decision:
        keys = required_keys(pod)
        if keys is None:
            return schedule(pod, self.nodes.items(), self._bound_pods)
        # Only nodes offering a required label can take the pod; the others are accounted for
        # by the summary of what stops them (for the message), without looking at each.
        candidates: dict[str, RawObject] = {}
        for key in keys:
            for node in self.nodes.by_index("labels", key):
                candidates[name_of(node)] = node
        tolerations = tolerations_of(pod)
        others = collections.Counter(self._summary(tolerations))
        for node in candidates.values():
            others[taint_reason(tolerations, node)] -= 1
        return decide(
            pod,
            candidates.values(),
            self._bound_pods,
            total=len(self.nodes),
            others=others,
        )

    async def _schedule(self, ctx: StageContext, kind: ResourceKind, pod: RawObject) -> None:
        async with self._lock:
            current = self.pods.get(name_of(pod), namespace_of(pod))
            if current is None or not awaiting_schedule(current):
                return
            key = _pod_key(current)
            scheduled = [c for c in _conditions(current) if c.get("type") == "PodScheduled"]
            if (
                scheduled
                and scheduled[0].get("reason") == "Unschedulable"
                and key not in self._retry
            ):
                return  # nothing it could fit on has changed since it last failed
            self._retry.discard(key)
            decision = self._decide(current)
            now = ctx.timestamp()
            if decision.node is not None:
                bound = await ctx.patch(kind, current, {"spec": {"nodeName": decision.node}})
                if bound is not None and scheduled and scheduled[0].get("status") != "True":
                    conds = set_condition(_conditions(bound), "PodScheduled", "True", now)
                    await ctx.patch_status(kind, bound, {"status": {"conditions": conds}})
                return
            conds = set_condition(
                _conditions(current),
                "PodScheduled",
                "False",
                now,
                reason="Unschedulable",
                message=decision.message,
            )
            if conds != _conditions(current) or phase_of(current) != "Pending":
                await ctx.patch_status(
                    kind, current, {"status": {"phase": "Pending", "conditions": conds}}
                )

    async def _start(self, ctx: StageContext, kind: ResourceKind, pod: RawObject) -> None:
        now = ctx.timestamp()
        running = {"running": {"startedAt": now}}
        status = {
            **_started_fields(ctx, pod),
            "phase": "Running",
            "conditions": _pod_conditions(pod, now, ready=True),
            "containerStatuses": [
                _container_status(pod, c, running, ready=True) for c in _containers(pod)
            ],
        }
        init = _init_statuses(pod, now)
        if init:
            status["initContainerStatuses"] = init
        await ctx.patch_status(kind, pod, {"status": status})


async def _complete(ctx: StageContext, kind: ResourceKind, pod: RawObject) -> None:
    await _terminate(ctx, kind, pod, exit_code=0, reason="Completed")


async def _terminate(
    ctx: StageContext, kind: ResourceKind, pod: RawObject, *, exit_code: int, reason: str
) -> None:
    now = ctx.timestamp()
    statuses = []
    for cstatus, container in zip(
        status_of(pod).get("containerStatuses") or [], _containers(pod), strict=False
    ):
        started = ((cstatus.get("state") or {}).get("running") or {}).get("startedAt", now)
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": started,
                "finishedAt": now,
            }
        }
        statuses.append(
            _container_status(
                pod, container, state, ready=False, restarts=int(cstatus.get("restartCount") or 0)
            )
        )
    phase = "Succeeded" if exit_code == 0 else "Failed"
    why = "PodCompleted" if exit_code == 0 else "PodFailed"
    conds = _conditions(pod)
    conds = set_condition(conds, "Ready", "False", now, reason=why)
    conds = set_condition(conds, "ContainersReady", "False", now, reason=why)
    await ctx.patch_status(
        kind, pod, {"status": {"phase": phase, "conditions": conds, "containerStatuses": statuses}}
    )


# -- failures ---------------------------------------------------------------------------------


def _waiting_status(
    ctx: StageContext,
    pod: RawObject,
    *,
    phase: str,
    reason: str,
    message: str,
    restarts: int = 0,
    last_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    now = ctx.timestamp()
    statuses = []
    for container in _containers(pod):
        text = message.format(
            image=container.get("image", ""),
            name=container.get("name", ""),
            pod=name_of(pod),
            namespace=namespace_of(pod) or "",
            uid=uid_of(pod),
        )
        state = {"waiting": {"reason": reason, "message": text}}
        statuses.append(
            _container_status(
                pod, container, state, ready=False, restarts=restarts, last_state=last_state
            )
        )
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": _pod_conditions(pod, now, ready=False, reason="ContainersNotReady"),
        "containerStatuses": statuses,
    }
    if not status_of(pod).get("startTime"):
        status["startTime"] = now
    return status


def image_pull_error(
    match: Match = ALL, *, delay: Delay | float = 0.05, backoff: Delay | float = 0.05
) -> list[Stage]:
    """Pods selected by `match` cannot pull their images: once bound they stay Pending, their
    containers waiting with reason ErrImagePull, and after `backoff` ImagePullBackOff."""

    async def pull_failed(ctx: StageContext, kind: ResourceKind, pod: RawObject) -> None:
        status = _waiting_status(
            ctx,
            pod,
            phase="Pending",
            reason="ErrImagePull",
            message='failed to pull and unpack image "{image}": not found',
        )
        await ctx.patch_status(kind, pod, {"status": status})

    async def backing_off(ctx: StageContext, kind: ResourceKind, pod: RawObject) -> None:
        status = _waiting_status(
            ctx,
            pod,
            phase="Pending",
            reason="ImagePullBackOff",
            message='Back-off pulling image "{image}"',
        )
        await ctx.patch_status(kind, pod, {"status": status})

    def pulling_failed(pod: RawObject) -> bool:
        return not deleting(pod) and waiting_reason(pod) == "ErrImagePull"

    return [
        Stage(
            "pod-image-pull-error", POD, pull_failed, match=match, when=awaiting_start, delay=delay
        ),
        Stage(
            "pod-image-pull-backoff",
            POD,
            backing_off,
            match=match,
            when=pulling_failed,
            delay=backoff,
        ),
    ]


def crash_loop(
    match: Match = ALL,
    *,
    max_restarts: int = 3,
    delay: Delay | float = 0.05,
    backoff: Delay | float = 0.05,
    exit_code: int = 1,
) -> list[Stage]:
    """Pods selected by `match` start, and their containers keep exiting with `exit_code`:
    phase Running, containers waiting with reason CrashLoopBackOff; the restartCount grows by
    one every `backoff` until it reaches `max_restarts` (bounded, since each restart is a
    write)."""
    message = "back-off 10s restarting failed container={name} pod={pod}_{namespace}({uid})"

    def crashed(ctx: StageContext, pod: RawObject, restarts: int) -> dict[str, Any]:
        now = ctx.timestamp()
        last = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Error",
                "startedAt": now,
                "finishedAt": now,
            }
        }
        status = _waiting_status(
            ctx,
            pod,
            phase="Running",
            reason="CrashLoopBackOff",
            message=message,
            restarts=restarts,
            last_state=last,
        )
        status.update({k: v for k, v in _started_fields(ctx, pod).items() if k != "startTime"})
        return status

    async def first_crash(ctx: StageContext, kind: ResourceKind, pod: RawObject) -> None:
        await ctx.patch_status(kind, pod, {"status": crashed(ctx, pod, 1)})

    async def restart(ctx: StageContext, kind: ResourceKind, pod: RawObject) -> None:
        await ctx.patch_status(kind, pod, {"status": crashed(ctx, pod, _restarts(pod) + 1)})

    def looping(pod: RawObject) -> bool:
        return (
            not deleting(pod)
            and waiting_reason(pod) == "CrashLoopBackOff"
            and _restarts(pod) < max_restarts
        )

    return [
        Stage("pod-crash", POD, first_crash, match=match, when=awaiting_start, delay=delay),
        Stage("pod-crash-restart", POD, restart, match=match, when=looping, delay=backoff),
    ]


def _restarts(pod: RawObject) -> int:
    counts = [
        int(s.get("restartCount") or 0) for s in status_of(pod).get("containerStatuses") or []
    ]
    return max(counts, default=0)


def pod_failure(
    match: Match = ALL, *, exit_code: int = 1, reason: str = "Error", delay: Delay | float = 0.05
) -> Stage:
    """Run-to-completion pods (restartPolicy Never/OnFailure) selected by `match` end Failed:
    their containers terminate with `exit_code` and `reason` after running for `delay`."""
    if exit_code == 0:
        raise ValueError("a failure needs a non-zero exit code")

    async def fail(ctx: StageContext, kind: ResourceKind, pod: RawObject) -> None:
        await _terminate(ctx, kind, pod, exit_code=exit_code, reason=reason)

    return Stage("pod-failure", POD, fail, match=match, when=finishing, delay=delay)
