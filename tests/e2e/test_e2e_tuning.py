"""End to end through the operator: a tuning workspace runs its Job to the end.

The operator (watches, work queue, the `WorkspaceReconciler` with the Karpenter provisioner)
runs against the API-server emulator with the simulators playing Karpenter, the scheduler, the
Job controller and the kubelets. The test writes the seed's tuning workspace and reads what the
operator made of it: a node, then the Job `<ws>-tuning`, then WorkspaceSucceeded; deleting the
workspace removes the Job and the node. A Job whose pods fail ends the workspace Failed; only
the Job's own status changes wake the operator for that.
"""

from __future__ import annotations

import pytest
from e2e_support import NS, V1ALPHA1, Env, MakeEnv, condition, describe, is_condition, seed

from kaito.kube import JOB, NODE_CLAIM, WORKSPACE, NotFound
from kaito.kube.simulators import Match, pod_failure

pytestmark = pytest.mark.timeout(30)

NAME = "workspace-phi-3-mini"
JOB_NAME = f"{NAME}-tuning"
LABELS = {"kaito.sh/workspace": NAME, "kaito.sh/workspacenamespace": NS}


async def test_the_seed_tuning_workspace_succeeds_and_deletion_cleans_up(env: Env) -> None:
    await env.start_operator()
    await env.client.create(V1ALPHA1, seed("phi-3-tuning.yaml"), namespace=NS)
    ws = await env.wait_for(
        NAME, is_condition("WorkspaceSucceeded", "True"), what="WorkspaceSucceeded True"
    )
    assert ws is not None
    assert ws["status"]["state"] == "Succeeded", describe(ws)
    for type_ in ("ResourceReady", "NodesReady", "JobStarted", "WorkspaceReady"):
        cond = condition(ws, type_)
        assert cond is not None, describe(ws)
        assert cond["status"] == "True", describe(ws)
    job = await env.client.get(JOB, JOB_NAME, namespace=NS)
    assert job["metadata"]["ownerReferences"][0]["uid"] == ws["metadata"]["uid"]
    complete = [c for c in job["status"]["conditions"] if c["type"] == "Complete"]
    assert complete[0]["status"] == "True"
    (claim,) = (await env.client.list(NODE_CLAIM)).items
    assert claim["metadata"]["labels"]["kaito.sh/workspace"] == NAME

    await env.client.delete(WORKSPACE, NAME, namespace=NS)
    await env.wait_for(NAME, lambda w: w is None, what="the workspace to be deleted")
    with pytest.raises(NotFound):
        await env.client.get(JOB, JOB_NAME, namespace=NS)
    assert (await env.client.list(NODE_CLAIM)).items == []


async def test_a_tuning_job_whose_pods_fail_fails_the_workspace(make_env: MakeEnv) -> None:
    env = await make_env(pod_failure(Match(labels=LABELS), exit_code=2))
    await env.start_operator()
    await env.client.create(V1ALPHA1, seed("phi-3-tuning.yaml"), namespace=NS)
    ws = await env.wait_for(
        NAME,
        lambda w: (
            (condition(w, "WorkspaceSucceeded") or {}).get("reason") == "BackoffLimitExceeded"
        ),
        what="WorkspaceSucceeded False BackoffLimitExceeded",
    )
    assert ws is not None
    assert ws["status"]["state"] == "Failed", describe(ws)
    succeeded = condition(ws, "WorkspaceSucceeded")
    assert succeeded is not None
    assert succeeded["status"] == "False"
    assert JOB_NAME in succeeded["message"]
