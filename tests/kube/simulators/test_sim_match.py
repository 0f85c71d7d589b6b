"""Selecting objects: label requirements, selector strings, field paths, `Match`."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.kube.simulators import Match, Requirement, field_values, parse_label_selector

POD: dict[str, Any] = {
    "metadata": {
        "name": "phi-3-0",
        "namespace": "default",
        "labels": {"app": "phi-3", "tier": "gpu", "replicas": "3"},
        "annotations": {"example.com/fault": "crash", "note": "x"},
    },
    "spec": {
        "nodeName": "n1",
        "hostNetwork": False,
        "containers": [
            {"name": "main", "image": "mcr.microsoft.com/kaito:0.1"},
            {"name": "side", "image": "example.com/proxy:missing"},
        ],
    },
    "status": {
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"},
        ]
    },
}


@pytest.mark.parametrize(
    ("requirement", "expected"),
    [
        (Requirement("app", "In", ["phi-3", "llama"]), True),
        (Requirement("app", "NotIn", ["phi-3"]), False),
        (Requirement("absent", "NotIn", ["x"]), True),
        (Requirement("tier", "Exists"), True),
        (Requirement("absent", "DoesNotExist"), True),
        (Requirement("replicas", "Gt", ["2"]), True),
        (Requirement("replicas", "Lt", ["3"]), False),
        (Requirement("app", "Gt", ["1"]), False),  # not an integer
        (Requirement("absent", "Gt", ["1"]), False),
    ],
)
def test_requirement(requirement: Requirement, expected: bool) -> None:
    assert requirement.matches(POD["metadata"]["labels"]) is expected


@pytest.mark.parametrize(
    ("operator", "values"),
    [("In", []), ("Exists", ["x"]), ("Gt", ["a"]), ("Gt", ["1", "2"]), ("Near", ["x"])],
)
def test_invalid_requirements(operator: str, values: list[str]) -> None:
    with pytest.raises(ValueError, match="operator"):
        Requirement("k", operator, values)


def test_label_selector_strings() -> None:
    parsed = parse_label_selector("app=phi-3, tier!=cpu,gpu,!spot,zone in (a, b),env notin (dev)")
    assert parsed == (
        Requirement("app", "In", ["phi-3"]),
        Requirement("tier", "NotIn", ["cpu"]),
        Requirement("gpu", "Exists"),
        Requirement("spot", "DoesNotExist"),
        Requirement("zone", "In", ["a", "b"]),
        Requirement("env", "NotIn", ["dev"]),
    )
    assert parse_label_selector("app==x") == (Requirement("app", "In", ["x"]),)
    with pytest.raises(ValueError, match="not a label selector"):
        parse_label_selector("app=(x")


def test_field_values() -> None:
    assert field_values(POD, "spec.nodeName") == ["n1"]
    assert field_values(POD, "spec.containers.image") == [
        "mcr.microsoft.com/kaito:0.1",
        "example.com/proxy:missing",
    ]
    assert field_values(POD, "status.conditions[type=Ready].status") == ["False"]
    assert field_values(POD, "metadata.annotations['example.com/fault']") == ["crash"]
    assert field_values(POD, 'metadata.annotations["note"]') == ["x"]
    assert field_values(POD, "spec.missing.deeper") == []
    assert field_values(POD, "metadata.labels") == [POD["metadata"]["labels"]]
    with pytest.raises(ValueError, match="field path"):
        field_values(POD, "spec.[")


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        (Match(), True),
        (Match(labels="app=phi-3,tier"), True),
        (Match(labels={"app": "llama"}), False),
        (
            Match(
                labels={
                    "matchLabels": {"app": "phi-3"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu"]}],
                }
            ),
            True,
        ),
        (Match(annotations={"example.com/fault": "cr*"}), True),
        (Match(annotations={"absent": "*"}), False),
        (Match(fields={"spec.containers.image": "*:missing"}), True),
        (Match(fields={"spec.containers.image": "*:latest"}), False),
        (Match(fields={"spec.hostNetwork": "false"}), True),
        (Match(fields={"spec.schedulerName": None}), True),
        (Match(fields={"spec.nodeName": None}), False),
        (Match(namespace="default", name="phi-3-*"), True),
        (Match(namespace="kube-system"), False),
        (Match(name="llama-*"), False),
        (Match(predicate=lambda obj: obj["spec"]["nodeName"] == "n1"), True),
        (Match(labels="app=phi-3", predicate=lambda obj: False), False),
    ],
)
def test_match(match: Match, expected: bool) -> None:
    assert match.matches(POD) is expected


def test_match_rejects_bad_paths() -> None:
    with pytest.raises(ValueError, match="field path"):
        Match(fields={"spec.[": "x"})
