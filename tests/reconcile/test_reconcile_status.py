"""Conditions from observed state: transition times, Events, and the workload's condition.

These are the pure parts of status: merging computed conditions with stored ones (the
lastTransitionTime moves only with the status), which changes earn an Event, and what the
InferenceReady condition says for pods that cannot pull, cannot be scheduled, crash, or are
still coming, and for a roll-out in progress.
"""

from __future__ import annotations

from typing import Any

import pytest

from kaito.api import WorkspaceState
from kaito.reconcile._status import (
    Cond,
    inference_condition,
    pod_problem,
    render_conditions,
    state_for,
    transitions,
    workspace_ready,
)

pytestmark = pytest.mark.timeout(10)

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:05:00Z"


def _pod(
    name: str,
    *,
    ready: bool = False,
    revision: str | None = "rev-new",
    conditions: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    phase: str = "Pending",
) -> dict[str, Any]:
    conds = list(conditions or [])
    conds.append({"type": "Ready", "status": "True" if ready else "False"})
    meta: dict[str, Any] = {"name": name}
    if revision is not None:
        meta["annotations"] = {"workspace.kaito.io/revision": revision}
    status: dict[str, Any] = {"phase": phase, "conditions": conds}
    if containers is not None:
        status["containerStatuses"] = containers
    if init is not None:
        status["initContainerStatuses"] = init
    return {
        "metadata": meta,
        "spec": {
            "initContainers": [{"name": "adapter-a", "image": "r.example/adapter:1"}],
            "containers": [{"name": "inference", "image": "r.example/server:1"}],
        },
        "status": status,
    }


def _sts(replicas: int, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "ws"}, "spec": {"replicas": replicas}, "status": status}


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = render_conditions(
        [], [Cond("NodesReady", "False", "WaitingForNodes", "0 of 1")], generation=1, now=T0
    )
    assert first == [
        {
            "type": "NodesReady",
            "status": "False",
            "reason": "WaitingForNodes",
            "message": "0 of 1",
            "lastTransitionTime": T0,
            "observedGeneration": 1,
        }
    ]
    same_status = render_conditions(
        first, [Cond("NodesReady", "False", "Other", "changed")], generation=2, now=T1
    )
    assert same_status[0]["lastTransitionTime"] == T0
    assert same_status[0]["observedGeneration"] == 2
    flipped = render_conditions(
        first, [Cond("NodesReady", "True", "NodesReady", "1 of 1")], generation=1, now=T1
    )
    assert flipped[0]["lastTransitionTime"] == T1


def test_conditions_are_rendered_in_the_canonical_order() -> None:
    rendered = render_conditions(
        [],
        [
            Cond("WorkspaceReady", "False", "X", "x"),
            Cond("InferenceReady", "False", "X", "x"),
            Cond("ResourceReady", "False", "X", "x"),
            Cond("NodeClaimReady", "True", "Y", "y"),
        ],
        generation=None,
        now=T0,
    )
    assert [c["type"] for c in rendered] == [
        "ResourceReady",
        "NodeClaimReady",
        "InferenceReady",
        "WorkspaceReady",
    ]
    assert "observedGeneration" not in rendered[0]


def test_events_are_due_for_new_conditions_and_status_or_reason_changes() -> None:
    before = render_conditions(
        [],
        [Cond("NodesReady", "False", "WaitingForNodes", "0 of 1"), Cond("X", "True", "R", "m")],
        generation=1,
        now=T0,
    )
    computed = [
        Cond("NodesReady", "False", "WaitingForNodes", "1 of 2"),  # message only: no event
        Cond("X", "True", "R2", "m"),  # reason changed
        Cond("InferenceReady", "False", "WaitingForPods", "m"),  # new
    ]
    assert [c.type for c in transitions(before, computed)] == ["InferenceReady", "X"]


def test_workspace_ready_copies_the_first_failing_condition() -> None:
    conds = [
        Cond("ResourceReady", "True", "ResourcesReady", "ok"),
        Cond("InferenceReady", "False", "ImagePullFailed", "image X cannot be pulled", True),
    ]
    ready = workspace_ready(conds, success_message="fine")
    assert (ready.status, ready.reason, ready.message, ready.warning) == (
        "False",
        "ImagePullFailed",
        "image X cannot be pulled",
        True,
    )
    ok = workspace_ready(conds[:1], success_message="fine")
    assert (ok.status, ok.reason, ok.message) == ("True", "WorkspaceReady", "fine")


def test_state_summarises_the_conditions() -> None:
    ready = [Cond("WorkspaceReady", "True", "WorkspaceReady", "ok")]
    assert state_for(ready, failed=False) is WorkspaceState.READY
    assert state_for(ready, failed=True) is WorkspaceState.FAILED
    waiting = [Cond("InferenceReady", "False", "WaitingForPods", "m")]
    assert state_for(waiting, failed=False) is WorkspaceState.PENDING
    broken = [Cond("InferenceReady", "False", "CrashLoopBackOff", "m", warning=True)]
    assert state_for(broken, failed=False) is WorkspaceState.NOT_READY


def test_image_pull_failure_names_the_image() -> None:
    pod = _pod(
        "ws-0",
        init=[
            {
                "name": "adapter-a",
                "state": {"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}},
            }
        ],
    )
    reason, message = pod_problem(pod) or ("", "")
    assert reason == "ImagePullFailed"
    assert message.startswith("image r.example/adapter:1 cannot be pulled: manifest unknown")


def test_unschedulable_pod_reports_the_schedulers_message() -> None:
    pod = _pod(
        "ws-0",
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ],
    )
    assert pod_problem(pod) == (
        "PodUnschedulable",
        "pod ws-0 cannot be scheduled: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    )


def test_crash_loop_reports_restarts_and_last_exit() -> None:
    pod = _pod(
        "ws-0",
        containers=[
            {
                "name": "inference",
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
        ],
    )
    assert pod_problem(pod) == (
        "CrashLoopBackOff",
        "container inference of pod ws-0 keeps crashing (restarted 4 times; last exit code 1 "
        "(Error))",
    )


def test_missing_secret_is_reported_as_cannot_start() -> None:
    pod = _pod(
        "ws-0",
        containers=[
            {
                "name": "inference",
                "state": {
                    "waiting": {
                        "reason": "CreateContainerConfigError",
                        "message": 'secret "hf-creds" not found',
                    }
                },
            }
        ],
    )
    assert pod_problem(pod) == (
        "ContainerCannotStart",
        'container inference of pod ws-0 cannot start: secret "hf-creds" not found',
    )


def test_inference_ready_when_every_pod_serves_the_wanted_revision() -> None:
    pods = [_pod("ws-0", ready=True), _pod("ws-1", ready=True)]
    cond = inference_condition(_sts(2), pods, revision="rev-new")
    assert (cond.status, cond.reason) == ("True", "InferenceReady")
    assert cond.message == "revision rev-new is live: 2 of 2 pods ready"


def test_waiting_for_pods_counts_what_is_missing() -> None:
    pods = [_pod("ws-0", ready=True), _pod("ws-1")]
    cond = inference_condition(_sts(2), pods, revision="rev-new")
    assert (cond.status, cond.reason, cond.warning) == ("False", "WaitingForPods", False)
    assert cond.message == "waiting for 1 of 2 pods to be ready (revision rev-new)"


def test_roll_out_says_which_revision_still_serves() -> None:
    pods = [_pod("ws-0", ready=True, revision="rev-old")]
    cond = inference_condition(_sts(1), pods, revision="rev-new")
    assert cond.reason == "RollingOut"
    assert cond.message == (
        "rolling out revision rev-new: 0 of 1 pods updated and ready; revision rev-old still serves"
    )


def test_a_pod_problem_wins_over_waiting() -> None:
    pods = [
        _pod("ws-0", ready=True),
        _pod(
            "ws-1",
            containers=[
                {
                    "name": "inference",
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": "denied"}},
                }
            ],
        ),
    ]
    cond = inference_condition(_sts(2), pods, revision="rev-new")
    assert (cond.reason, cond.warning) == ("ImagePullFailed", True)


def test_pods_without_a_revision_count_by_the_statefulsets_roll_out() -> None:
    pods = [_pod("ws-0", ready=True, revision=None)]
    rolled = _sts(1, updateRevision="ws-abc", currentRevision="ws-abc")
    assert inference_condition(rolled, pods, revision="r").ok
    rolling = _sts(1, updateRevision="ws-def", currentRevision="ws-abc")
    assert not inference_condition(rolling, pods, revision="r").ok


def test_no_statefulset_yet_is_waiting() -> None:
    cond = inference_condition(None, [], revision="r")
    assert (cond.status, cond.reason) == ("False", "WaitingForPods")
