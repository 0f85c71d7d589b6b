"""Conversion between kaito.sh/v1alpha1 and kaito.sh/v1beta1: lossless in both directions."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workspace_helpers import SEEDS, edited, inference_doc, load_seed, tuning_doc

from kaito.api import CONVERSION_ANNOTATION, Workspace, WorkspaceInvalid, convert

pytestmark = pytest.mark.timeout(60)


def _beta_only(doc: dict[str, Any]) -> dict[str, Any]:
    """The inference base document with every field that v1alpha1 lacks."""
    doc = copy.deepcopy(doc)
    doc["inference"]["preset"]["presetOptions"] = {
        "modelAccessSecret": "hf-token",
        "imagePullSecrets": ["p"],
    }
    doc["resource"]["partition"] = {"mode": "mig", "profile": "1g.10gb"}
    doc["status"] = {
        "state": "Ready",
        "targetNodeCount": 1,
        "workerNodes": ["n1"],
        "performance": {"metrics": {"tpm": {"description": "d", "value": "1"}}},
    }
    return doc


@pytest.mark.parametrize("name", SEEDS)
def test_seed_v1alpha1_survives_a_trip_through_v1beta1(name: str) -> None:
    alpha = load_seed(name)
    beta = convert(alpha, "v1beta1")
    assert beta["apiVersion"] == "kaito.sh/v1beta1"
    assert convert(beta, "v1alpha1") == alpha
    assert Workspace.from_dict(beta).to_dict("v1alpha1") == alpha


def test_v1beta1_only_fields_are_parked_in_an_annotation_and_restored() -> None:
    beta = _beta_only(inference_doc())
    alpha = convert(beta, "v1alpha1")
    assert alpha["apiVersion"] == "kaito.sh/v1alpha1"
    assert "partition" not in alpha["resource"]
    assert alpha["inference"]["preset"]["presetOptions"] == {"imagePullSecrets": ["p"]}
    assert alpha["status"] == {"workerNodes": ["n1"]}
    parked = json.loads(alpha["metadata"]["annotations"][CONVERSION_ANNOTATION])
    assert parked["fields"]["resource"] == {"partition": {"mode": "mig", "profile": "1g.10gb"}}
    assert convert(alpha, "v1beta1") == beta
    # The model path gives the same result, and the parked fields are valid v1alpha1.
    workspace = Workspace.from_dict(beta)
    assert workspace.to_dict("v1alpha1") == alpha
    assert Workspace.from_dict(alpha) == workspace


def test_parking_creates_and_removes_the_annotations_map() -> None:
    beta = edited(tuning_doc(), lambda d: d.update(status={"state": "Running"}))
    beta["metadata"] = {"name": "ws"}
    alpha = convert(beta, "v1alpha1")
    assert set(alpha["metadata"]["annotations"]) == {CONVERSION_ANNOTATION}
    assert convert(alpha, "v1beta1") == beta
    beta["metadata"]["annotations"] = {}
    assert convert(convert(beta, "v1alpha1"), "v1beta1") == beta


def test_documents_without_v1beta1_only_fields_get_no_annotation() -> None:
    alpha = convert(inference_doc(), "v1alpha1")
    assert "annotations" not in alpha["metadata"]
    assert alpha == {**inference_doc(), "apiVersion": "kaito.sh/v1alpha1"}


def test_convert_does_not_modify_its_input_and_copies_deeply() -> None:
    beta = _beta_only(inference_doc())
    snapshot = copy.deepcopy(beta)
    same = convert(beta, "v1beta1")
    alpha = convert(beta, "v1alpha1")
    assert beta == snapshot
    same["inference"]["adapters"].append({})
    alpha["inference"]["adapters"].append({})
    assert beta == snapshot


@pytest.mark.parametrize(
    ("document", "version", "message"),
    [
        (inference_doc(), "v2", "unknown version"),
        ({"apiVersion": "v1", "kind": "Pod"}, "v1beta1", "not a kaito Workspace"),
        (
            {"apiVersion": "kaito.sh/v1beta1", "kind": "RAGEngine"},
            "v1alpha1",
            "not a kaito Workspace",
        ),
    ],
)
def test_convert_rejects_what_it_cannot_convert(
    document: dict[str, Any], version: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        convert(document, version)


def test_a_corrupt_conversion_annotation_is_reported_on_its_path() -> None:
    alpha = {**inference_doc(), "apiVersion": "kaito.sh/v1alpha1"}
    alpha["metadata"] = {"name": "ws", "annotations": {CONVERSION_ANNOTATION: "{not json"}}
    with pytest.raises(ValueError, match="corrupt conversion annotation"):
        convert(alpha, "v1beta1")
    with pytest.raises(WorkspaceInvalid) as caught:
        Workspace.from_dict(alpha)
    assert caught.value.errors[0].path == f"metadata.annotations[{CONVERSION_ANNOTATION}]"


# ---------------------------------------------------------------------------------------------
# Property: generated workspaces convert losslessly


_names = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
_text = st.text(alphabet="abcXYZ019-_. /:", min_size=0, max_size=12)
_secrets = st.lists(_names, max_size=2)


def _obj(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(required, optional=optional)


def _preset(beta: bool) -> st.SearchStrategy[dict[str, Any]]:
    options: dict[str, Any] = {"image": _text, "imagePullSecrets": _secrets}
    if beta:
        options["modelAccessSecret"] = _names
    return _obj(
        {"name": _names},
        {"accessMode": st.sampled_from(["public", "private"]), "presetOptions": _obj({}, options)},
    )


_volume = st.dictionaries(st.sampled_from(["emptyDir", "hostPath"]), st.just({}), max_size=1)
_source = _obj(
    {},
    {
        "name": _names,
        "urls": st.lists(_text, max_size=2),
        "image": _text,
        "imagePullSecrets": _secrets,
        "volumeSource": _volume,
    },
)
_timestamp = st.sampled_from(["2024-05-01T12:00:00Z", "2025-01-31T23:59:59.5+01:00"])
_condition = _obj(
    {
        "type": st.sampled_from(["ResourceReady", "InferenceReady", "WorkspaceReady"]),
        "status": st.sampled_from(["True", "False", "Unknown"]),
        "reason": st.sampled_from(["Ready", "Pending"]),
        "message": _text,
        "lastTransitionTime": _timestamp,
    },
    {"observedGeneration": st.integers(0, 9)},
)


def _workspace(beta: bool) -> st.SearchStrategy[dict[str, Any]]:
    resource: dict[str, Any] = {
        "count": st.integers(1, 4),
        "instanceType": _names,
        "labelSelector": _obj(
            {},
            {
                "matchLabels": st.dictionaries(_names, _names, max_size=2),
                "matchExpressions": st.lists(
                    _obj(
                        {"key": _names, "operator": st.sampled_from(["In", "Exists"])},
                        {"values": st.lists(_names, max_size=2)},
                    ),
                    max_size=2,
                ),
            },
        ),
        "preferredNodes": st.lists(_names, max_size=2),
    }
    status: dict[str, Any] = {
        "workerNodes": st.lists(_names, max_size=2),
        "conditions": st.lists(_condition, max_size=2),
    }
    if beta:
        resource["partition"] = _obj(
            {"mode": st.sampled_from(["mig", "accelerator"])},
            {"profile": _text, "count": st.integers(1, 8)},
        )
        status["state"] = st.sampled_from(["Pending", "Ready", "Failed"])
        status["targetNodeCount"] = st.integers(0, 4)
        status["performance"] = _obj(
            {},
            {
                "metrics": st.dictionaries(
                    _names,
                    _obj({"description": _text, "value": _text}, {"unit": _text}),
                    max_size=1,
                )
            },
        )
    inference = _obj(
        {},
        {
            "preset": _preset(beta),
            "template": st.just({"spec": {"containers": [{"name": "c", "image": "i"}]}}),
            "config": _names,
            "adapters": st.lists(
                _obj({}, {"source": _source, "strength": st.sampled_from(["0", "0.5", "1.0"])}),
                max_size=3,
            ),
        },
    )
    tuning = _obj(
        {},
        {
            "preset": _preset(beta),
            "method": st.sampled_from(["lora", "qlora"]),
            "config": _names,
            "input": _source,
            "output": _obj({}, {"image": _text, "imagePushSecret": _text, "volumeSource": _volume}),
        },
    )
    metadata = _obj(
        {"name": _names},
        {
            "namespace": _names,
            "labels": st.dictionaries(_names, _names, max_size=2),
            "annotations": st.dictionaries(_names, _text, max_size=2),
            "generation": st.integers(1, 5),
            "creationTimestamp": _timestamp,
            "resourceVersion": st.integers(1, 999).map(str),
        },
    )
    version = "kaito.sh/v1beta1" if beta else "kaito.sh/v1alpha1"
    return _obj(
        {"apiVersion": st.just(version), "kind": st.just("Workspace"), "metadata": metadata},
        {
            "resource": _obj({}, resource),
            "inference": inference,
            "tuning": tuning,
            "status": _obj({}, status),
        },
    )


_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_workspace(beta=True))
def test_property_v1beta1_to_v1alpha1_and_back_is_lossless(beta: dict[str, Any]) -> None:
    alpha = convert(beta, "v1alpha1")
    assert convert(alpha, "v1beta1") == beta
    workspace = Workspace.from_dict(beta)
    assert workspace.to_dict() == beta
    assert workspace.to_dict("v1alpha1") == alpha
    assert Workspace.from_dict(alpha) == workspace


@_SETTINGS
@given(_workspace(beta=False))
def test_property_v1alpha1_to_v1beta1_and_back_is_lossless(alpha: dict[str, Any]) -> None:
    beta = convert(alpha, "v1beta1")
    assert convert(beta, "v1alpha1") == alpha
    assert Workspace.from_dict(alpha).to_dict("v1alpha1") == alpha
