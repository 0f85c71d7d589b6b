"""The scheduler as a pure function: filters, their order, requests, messages, the choice."""

from __future__ import annotations

from typing import Any

import pytest
from sim_support import node

from kaito.kube.simulators import schedule, unschedulable_message


def pod(
    *,
    gpus: int = 0,
    cpu: str | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    node_selector: dict[str, str] | None = None,
    terms: list[dict[str, Any]] | None = None,
    init_gpus: int = 0,
    phase: str = "Pending",
    node_name: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "i", "resources": {}}
    if gpus:
        container["resources"]["limits"] = {"nvidia.com/gpu": gpus}
    if cpu:
        container["resources"]["requests"] = {"cpu": cpu}
    spec: dict[str, Any] = {"containers": [container]}
    if init_gpus:
        spec["initContainers"] = [
            {"name": "init", "image": "i", "resources": {"limits": {"nvidia.com/gpu": init_gpus}}}
        ]
    if tolerations:
        spec["tolerations"] = tolerations
    if node_selector:
        spec["nodeSelector"] = node_selector
    if terms is not None:
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
            }
        }
    if node_name:
        spec["nodeName"] = node_name
    return {"metadata": {"name": "p", "uid": "u"}, "spec": spec, "status": {"phase": phase}}


GPU_TAINT = [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]


def test_fits_and_prefers_the_least_allocated_node() -> None:
    nodes = [node("a", gpus=2), node("b", gpus=2)]
    bound = {"a": [pod(gpus=1, node_name="a", phase="Running")]}
    assert schedule(pod(gpus=1), nodes, bound).node == "b"
    assert schedule(pod(gpus=1), nodes, {}).node == "a"  # a tie goes to the first name


def test_terminal_pods_free_their_resources() -> None:
    done = pod(gpus=2, node_name="a", phase="Succeeded")
    assert schedule(pod(gpus=2), [node("a", gpus=2)], {"a": [done]}).node == "a"
    running = pod(gpus=2, node_name="a", phase="Running")
    decision = schedule(pod(gpus=2), [node("a", gpus=2)], lambda name: [running])
    assert decision.node is None
    assert decision.message == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."


def test_init_containers_count_alone() -> None:
    assert schedule(pod(gpus=1, init_gpus=2), [node("a", gpus=2)], {}).node == "a"
    assert schedule(pod(gpus=1, init_gpus=3), [node("a", gpus=2)], {}).node is None


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        ({"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}, True),
        ({"key": "sku", "value": "gpu"}, True),  # any effect, Equal by default
        ({"key": "sku", "operator": "Exists"}, True),
        ({"operator": "Exists"}, True),  # tolerates everything
        ({"key": "sku", "operator": "Equal", "value": "cpu"}, False),
        ({"key": "sku", "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_tolerations(toleration: dict[str, Any], tolerated: bool) -> None:
    decision = schedule(pod(tolerations=[toleration]), [node("a", taints=GPU_TAINT)], {})
    assert (decision.node == "a") is tolerated


def test_prefer_no_schedule_taints_do_not_filter() -> None:
    soft = [{"key": "sku", "value": "gpu", "effect": "PreferNoSchedule"}]
    assert schedule(pod(), [node("a", taints=soft)], {}).node == "a"


@pytest.mark.parametrize(
    ("terms", "fits"),
    [
        ([{"matchExpressions": [{"key": "apps", "operator": "In", "values": ["x", "y"]}]}], True),
        ([{"matchExpressions": [{"key": "apps", "operator": "NotIn", "values": ["x"]}]}], False),
        ([{"matchExpressions": [{"key": "apps", "operator": "Exists"}]}], True),
        ([{"matchExpressions": [{"key": "apps", "operator": "DoesNotExist"}]}], False),
        ([{"matchExpressions": [{"key": "gpus", "operator": "Gt", "values": ["4"]}]}], True),
        ([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}], True),
        (
            [{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["a"]}]}],
            False,
        ),
        # Terms are ORed; an empty term selects nothing.
        ([{}, {"matchExpressions": [{"key": "apps", "operator": "In", "values": ["x"]}]}], True),
        ([{}], False),
        ([], False),
    ],
)
def test_required_node_affinity(terms: list[dict[str, Any]], fits: bool) -> None:
    target = node("a", labels={"apps": "x", "gpus": "8"})
    assert (schedule(pod(terms=terms), [target], {}).node == "a") is fits


def test_node_selector() -> None:
    nodes = [node("a", labels={"apps": "x"}), node("b")]
    assert schedule(pod(node_selector={"apps": "x"}), nodes, {}).node == "a"
    decision = schedule(pod(node_selector={"apps": "z"}), nodes, {})
    assert decision.message == (
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    )


def test_filters_run_in_the_schedulers_order() -> None:
    # A cordoned node reports only that; a tainted node that also mismatches reports the taint.
    cordoned = node("a", gpus=0, taints=GPU_TAINT)
    cordoned["spec"]["unschedulable"] = True
    tainted = node("b", taints=GPU_TAINT, labels={"apps": "other"})
    decision = schedule(pod(gpus=1, node_selector={"apps": "x"}), [cordoned, tainted], {})
    assert decision.reasons == {
        "node(s) were unschedulable": 1,
        "node(s) had untolerated taint {sku: gpu}": 1,
    }
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}])
    assert schedule(tolerant, [node("c")], {}).node == "c"


def test_several_resources_short_on_one_node() -> None:
    decision = schedule(pod(gpus=2, cpu="16"), [node("a", gpus=1, cpu="8")], {})
    assert decision.message == (
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient nvidia.com/gpu."
    )


def test_too_many_pods() -> None:
    full = node("a")
    full["status"]["allocatable"]["pods"] = "1"
    decision = schedule(pod(), [full], {"a": [pod(node_name="a", phase="Running")]})
    assert decision.message == "0/1 nodes are available: 1 Too many pods."


def test_not_ready_nodes_are_tainted() -> None:
    decision = schedule(pod(), [node("a", ready=False)], {})
    assert decision.message == (
        "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
    )


def test_messages() -> None:
    assert unschedulable_message(0, {}) == "no nodes available to schedule pods"
    assert unschedulable_message(3, {"b reason": 1, "a reason": 2}) == (
        "0/3 nodes are available: 1 b reason, 2 a reason."
    )
