"""Jobs: pods run to completion; the Job completes, or fails past its backoff limit."""

from __future__ import annotations

import pytest
from sim_support import StartSims, condition, cstatus, job, node

from kaito.kube import JOB, NODE, POD, KubeClient
from kaito.kube.simulators import ManualClock, Match, SimulatorConfig, pod_failure

pytestmark = pytest.mark.timeout(20)


async def test_job_succeeds(client: KubeClient, start_sims: StartSims) -> None:
    clock = ManualClock()
    sims = await start_sims(clock=clock)
    await client.create(NODE, node("n1", gpus=1))
    await client.create(JOB, job("tune", completions=2, gpus=1))
    await sims.idle()
    running = await client.get(JOB, "tune", namespace="default")
    assert running["status"]["active"] == 1
    assert running["status"]["startTime"] == "2025-01-01T00:00:00Z"
    assert condition(running, "Complete") is None

    for _ in range(6):  # start, run, next pod: start, run
        clock.advance(0.05)
        await sims.idle()
    done = await client.get(JOB, "tune", namespace="default")
    status = done["status"]
    assert (status["succeeded"], status["failed"], status["active"]) == (2, 0, 0)
    assert cstatus(done, "Complete") == "True"
    assert cstatus(done, "SuccessCriteriaMet") == "True"
    assert status["completionTime"] >= status["startTime"]

    pods = (await client.list(POD, namespace="default", label_selector={"job-name": "tune"})).items
    assert len(pods) == 2
    assert {p["status"]["phase"] for p in pods} == {"Succeeded"}
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    labels = pods[0]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "tune"
    assert labels["batch.kubernetes.io/controller-uid"] == done["metadata"]["uid"]
    assert sims.pending() == []


async def test_job_fails_past_its_backoff_limit(client: KubeClient, start_sims: StartSims) -> None:
    failing = pod_failure(Match(labels={"job-name": "doomed"}), exit_code=2)
    sims = await start_sims(SimulatorConfig(stages=[failing]))
    await client.create(NODE, node("n1"))
    await client.create(JOB, job("doomed", backoff_limit=1))
    await client.create(JOB, job("lucky"))
    await sims.idle()

    failed = await client.get(JOB, "doomed", namespace="default")
    status = failed["status"]
    assert (status["failed"], status["succeeded"], status["active"]) == (2, 0, 0)
    cond = condition(failed, "Failed")
    assert cond is not None
    assert (cond["status"], cond["reason"]) == ("True", "BackoffLimitExceeded")
    assert condition(failed, "Complete") is None
    assert "completionTime" not in status
    pods = (
        await client.list(POD, namespace="default", label_selector={"job-name": "doomed"})
    ).items
    assert len(pods) == 2
    assert {p["status"]["phase"] for p in pods} == {"Failed"}
    assert pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 2

    lucky = await client.get(JOB, "lucky", namespace="default")
    assert cstatus(lucky, "Complete") == "True"


async def test_suspended_job_runs_no_pods(client: KubeClient, start_sims: StartSims) -> None:
    sims = await start_sims()
    await client.create(NODE, node("n1"))
    suspended = job("later")
    suspended["spec"]["suspend"] = True
    await client.create(JOB, suspended)
    await sims.idle()
    pods = (await client.list(POD, namespace="default", label_selector={"job-name": "later"})).items
    assert pods == []
    status = (await client.get(JOB, "later", namespace="default"))["status"]
    assert status["active"] == 0
    assert "startTime" not in status


def test_pod_failure_needs_a_non_zero_exit_code() -> None:
    with pytest.raises(ValueError, match="non-zero"):
        pod_failure(exit_code=0)
