"""Workspace models: loading the seed documents, exact round trips, structural error paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError
from workspace_helpers import SEED_DIR, SEEDS, edited, inference_doc, load_seed, tuning_doc

from kaito.api import (
    AdapterSpec,
    Condition,
    ConditionType,
    DataSource,
    FieldError,
    InferenceSpec,
    LabelSelector,
    ObjectMeta,
    PresetSpec,
    ResourceSpec,
    TuningMethod,
    Workspace,
    WorkspaceInvalid,
    WorkspaceStatus,
    format_timestamp,
    parse_timestamp,
)

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("name", SEEDS)
def test_seed_documents_load_and_round_trip_in_v1alpha1(name: str) -> None:
    document = load_seed(name)
    assert document["apiVersion"] == "kaito.sh/v1alpha1"
    workspace = Workspace.from_dict(document)
    assert workspace.api_version == "kaito.sh/v1beta1"
    assert workspace.to_dict("v1alpha1") == document


@pytest.mark.parametrize("name", SEEDS)
def test_seed_documents_round_trip_in_v1beta1(name: str) -> None:
    document = {**load_seed(name), "apiVersion": "kaito.sh/v1beta1"}
    assert Workspace.from_dict(document).to_dict() == document


def test_seed_files_are_the_seed_documents_verbatim() -> None:
    seed_text = (SEED_DIR.parents[2].parent / "shared" / "seeds").glob("000_*.txt")
    documents = [p.read_text(encoding="utf-8") for p in seed_text]
    for name in SEEDS:
        text = (SEED_DIR / name).read_text(encoding="utf-8")
        if documents:  # the shared seed is outside the repository; compare when it is there
            assert any(text in d for d in documents), name
    assert "# Note: This configuration also works" in (SEED_DIR / SEEDS[0]).read_text()
    assert "# Tuning Output ACR Path" in (SEED_DIR / SEEDS[1]).read_text()


def test_seed_fields_are_typed() -> None:
    tuning = Workspace.from_dict(load_seed("phi-3-tuning.yaml"))
    assert tuning.tuning is not None
    assert tuning.tuning.output is not None
    assert tuning.tuning.method is TuningMethod.QLORA
    assert tuning.tuning.output.image_push_secret == "ACR_REGISTRY_SECRET_HERE"
    adapters = Workspace.from_dict(load_seed("phi-3-adapters.yaml"))
    assert adapters.inference is not None
    assert adapters.inference.adapters
    assert adapters.inference.adapters[0].strength == "1.0"
    assert adapters.inference.adapters[0].strength_value == 1.0
    assert adapters.resource is not None
    assert adapters.resource.label_selector is not None
    assert adapters.resource.label_selector.as_map() == {"apps": "phi-3-adapter"}


def test_workspace_built_in_code_writes_only_what_was_set() -> None:
    workspace = Workspace(
        metadata=ObjectMeta(name="ws", namespace="ns"),
        resource=ResourceSpec(
            instance_type="Standard_NC6s_v3",
            label_selector=LabelSelector(match_labels={"apps": "x"}),
        ),
        inference=InferenceSpec(
            preset=PresetSpec(name="phi-3-mini-4k-instruct"),
            adapters=[AdapterSpec(source=DataSource(name="a", image="r.example/a:1"))],
        ),
    )
    assert workspace.to_dict() == {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws", "namespace": "ns"},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": "x"}},
        },
        "inference": {
            "preset": {"name": "phi-3-mini-4k-instruct"},
            "adapters": [{"source": {"name": "a", "image": "r.example/a:1"}}],
        },
    }
    assert workspace.key == "ns/ws"
    assert Workspace(metadata=ObjectMeta(name="solo")).key == "default/solo"


def test_server_metadata_and_status_round_trip_exactly() -> None:
    document = edited(
        inference_doc(),
        lambda d: d.update(
            metadata={
                "name": "ws",
                "namespace": "ns",
                "uid": "0b5c1f7e-1111-2222-3333-444455556666",
                "resourceVersion": "12345",
                "generation": 3,
                "creationTimestamp": "2024-05-01T12:00:00Z",
                "deletionTimestamp": "2024-05-02T08:30:00.123456+02:00",
                "finalizers": ["workspace.finalizer.kaito.sh"],
                "labels": {"team": "a"},
                "annotations": {"note": "x"},
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "o",
                        "uid": "u",
                        "controller": True,
                    }
                ],
                "managedFields": [
                    {"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}
                ],
                "selfLink": "/apis/kaito.sh/v1beta1/namespaces/ns/workspaces/ws",
            },
            status={
                "workerNodes": ["node-1"],
                "state": "Ready",
                "targetNodeCount": 1,
                "conditions": [
                    {
                        "type": "WorkspaceReady",
                        "status": "True",
                        "reason": "WorkspaceReady",
                        "message": "ready",
                        "lastTransitionTime": "2024-05-01T12:10:00Z",
                        "observedGeneration": 3,
                    }
                ],
                "performance": {
                    "metrics": {
                        "peakTokensPerMinute": {
                            "description": "stress/high-concurrency",
                            "value": "1200",
                            "unit": "tokens/min",
                            "config": {"concurrency": "64"},
                        }
                    }
                },
            },
        ),
    )
    workspace = Workspace.from_dict(document)
    assert workspace.to_dict() == document
    assert workspace.metadata.extra_fields()["managedFields"][0]["manager"] == "kubectl"
    assert workspace.metadata.deletion_timestamp == "2024-05-02T08:30:00.123456+02:00"
    ready = workspace.condition(ConditionType.WORKSPACE_READY)
    assert ready is not None
    assert ready.status == "True"
    assert ready.observed_generation == 3
    assert workspace.condition("InferenceReady") is None
    assert Workspace.from_dict(inference_doc()).condition("WorkspaceReady") is None


def test_condition_types_are_the_documented_names() -> None:
    assert [c.value for c in ConditionType] == [
        "ResourceReady",
        "NodeClaimReady",
        "NodesReady",
        "InferenceReady",
        "JobStarted",
        "WorkspaceSucceeded",
        "WorkspaceReady",
    ]


def test_timestamps_format_and_parse_like_the_api_server() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, 900000, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2024-05-01T12:00:00Z"
    assert parse_timestamp("2024-05-01T12:00:00Z") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_timestamp("yesterday")
    condition = Condition(
        type="ResourceReady",
        status="False",
        reason="NodeClaimNotReady",
        message="waiting",
        last_transition_time=format_timestamp(moment),
    )
    assert WorkspaceStatus(conditions=[condition]).model_dump(
        by_alias=True, exclude_unset=True
    ) == {
        "conditions": [
            {
                "type": "ResourceReady",
                "status": "False",
                "reason": "NodeClaimNotReady",
                "message": "waiting",
                "lastTransitionTime": "2024-05-01T12:00:00Z",
            }
        ]
    }


def _alpha(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "apiVersion": "kaito.sh/v1alpha1"}


STRUCTURAL_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "unknown-field",
        edited(inference_doc(), lambda d: d["inference"]["preset"].update(nmae="x")),
        "inference.preset.nmae",
        "valid fields here are: accessMode, name, presetOptions",
    ),
    (
        "unknown-top-level-block",
        edited(inference_doc(), lambda d: d.update(spec={})),
        "spec",
        "unknown field",
    ),
    (
        "count-as-string",
        edited(inference_doc(), lambda d: d["resource"].update(count="2")),
        "resource.count",
        "valid integer",
    ),
    (
        "count-as-bool",
        edited(inference_doc(), lambda d: d["resource"].update(count=True)),
        "resource.count",
        "valid integer",
    ),
    (
        "strength-as-number",
        edited(inference_doc(), lambda d: d["inference"]["adapters"][0].update(strength=0.5)),
        "inference.adapters[0].strength",
        "valid string",
    ),
    (
        "label-value-not-string",
        edited(
            inference_doc(), lambda d: d["resource"]["labelSelector"]["matchLabels"].update(apps=3)
        ),
        "resource.labelSelector.matchLabels[apps]",
        "valid string",
    ),
    (
        "unknown-method",
        edited(tuning_doc(), lambda d: d["tuning"].update(method="sft")),
        "tuning.method",
        "'lora' or 'qlora'",
    ),
    (
        "unknown-field-in-adapter-source",
        edited(inference_doc(), lambda d: d["inference"]["adapters"][0]["source"].update(url="x")),
        "inference.adapters[0].source.url",
        "imagePullSecrets, name, urls, volumeSource",
    ),
    (
        "preset-name-missing",
        edited(inference_doc(), lambda d: d["inference"]["preset"].pop("name")),
        "inference.preset.name",
        "required",
    ),
    (
        "bad-access-mode",
        edited(inference_doc(), lambda d: d["inference"]["preset"].update(accessMode="secret")),
        "inference.preset.accessMode",
        "'public' or 'private'",
    ),
    (
        "bad-timestamp",
        edited(inference_doc(), lambda d: d["metadata"].update(creationTimestamp="May 1st")),
        "metadata.creationTimestamp",
        "RFC 3339",
    ),
    (
        "condition-status",
        edited(
            inference_doc(),
            lambda d: d.update(
                status={
                    "conditions": [
                        {
                            "type": "WorkspaceReady",
                            "status": "yes",
                            "reason": "R",
                            "message": "",
                            "lastTransitionTime": "2024-05-01T12:00:00Z",
                        }
                    ]
                }
            ),
        ),
        "status.conditions[0].status",
        "'True', 'False' or 'Unknown'",
    ),
    (
        "condition-without-time",
        edited(
            inference_doc(),
            lambda d: d.update(
                status={
                    "conditions": [{"type": "X", "status": "True", "reason": "R", "message": ""}]
                }
            ),
        ),
        "status.conditions[0].lastTransitionTime",
        "required",
    ),
    (
        "missing-api-version",
        edited(inference_doc(), lambda d: d.pop("apiVersion")),
        "apiVersion",
        "kaito.sh/v1alpha1, kaito.sh/v1beta1",
    ),
    (
        "unknown-api-version",
        edited(inference_doc(), lambda d: d.update(apiVersion="kaito.sh/v2")),
        "apiVersion",
        "not one of",
    ),
    (
        "missing-kind",
        edited(inference_doc(), lambda d: d.pop("kind")),
        "kind",
        "required",
    ),
    (
        "wrong-kind",
        edited(inference_doc(), lambda d: d.update(kind="RAGEngine")),
        "kind",
        "'Workspace'",
    ),
    (
        "v1beta1-field-in-v1alpha1",
        _alpha(
            edited(
                inference_doc(),
                lambda d: d["inference"]["preset"].update(
                    presetOptions={"modelAccessSecret": "hf"}
                ),
            )
        ),
        "inference.preset.presetOptions.modelAccessSecret",
        "unknown field in kaito.sh/v1alpha1",
    ),
    (
        "v1beta1-status-in-v1alpha1",
        _alpha(edited(inference_doc(), lambda d: d.update(status={"state": "Ready"}))),
        "status.state",
        "exists in kaito.sh/v1beta1",
    ),
    (
        "preset-not-an-object",
        edited(inference_doc(), lambda d: d["inference"].update(preset="phi-3")),
        "inference.preset",
        "valid dictionary",
    ),
]


@pytest.mark.parametrize(
    ("document", "path", "fragment"),
    [case[1:] for case in STRUCTURAL_CASES],
    ids=[case[0] for case in STRUCTURAL_CASES],
)
def test_structural_errors_name_the_field(
    document: dict[str, Any], path: str, fragment: str
) -> None:
    with pytest.raises(WorkspaceInvalid) as caught:
        Workspace.from_dict(document)
    matching = [e for e in caught.value.errors if e.path == path]
    assert matching, f"no error at {path}: {caught.value.errors}"
    assert any(fragment in e.message for e in matching), matching
    assert path in str(caught.value)


def test_structural_errors_are_all_reported_together() -> None:
    document = edited(
        inference_doc(),
        lambda d: (
            d.pop("kind"),
            d["resource"].update(count="1", colour="red"),
            d["inference"]["preset"].update(nmae="x"),
        ),
    )
    with pytest.raises(WorkspaceInvalid) as caught:
        Workspace.from_dict(document)
    assert {e.path for e in caught.value.errors} == {
        "kind",
        "resource.count",
        "resource.colour",
        "inference.preset.nmae",
    }
    assert "4 errors" in str(caught.value)


def test_non_mapping_document_is_invalid() -> None:
    with pytest.raises(WorkspaceInvalid) as caught:
        Workspace.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]
    assert caught.value.errors[0].path == "(root)"


def test_field_error_renders_as_path_and_message_and_is_frozen() -> None:
    error = FieldError("inference.adapters[1].source.name", "required")
    assert str(error) == "inference.adapters[1].source.name: required"
    with pytest.raises(AttributeError):
        error.path = "x"  # type: ignore[misc]
    assert isinstance(WorkspaceInvalid([error]), ValueError)


def test_assignment_is_validated_strictly() -> None:
    workspace = Workspace.from_dict(inference_doc())
    assert workspace.resource is not None
    with pytest.raises(ValidationError):
        workspace.resource.count = "2"  # type: ignore[assignment]
    workspace.resource.count = 2
    assert workspace.to_dict()["resource"]["count"] == 2


def test_model_fields_populate_by_name_and_by_alias() -> None:
    by_alias = ResourceSpec.model_validate(
        {"instanceType": "A", "labelSelector": {"matchLabels": {}}}
    )
    by_name = ResourceSpec(instance_type="A", label_selector=LabelSelector(match_labels={}))
    assert by_alias == by_name


def test_label_selector_as_map_accepts_only_single_valued_in() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"a": "1"},
            "matchExpressions": [{"key": "b", "operator": "In", "values": ["2"]}],
        }
    )
    assert selector.as_map() == {"a": "1", "b": "2"}
    for expression in (
        {"key": "b", "operator": "In", "values": ["2", "3"]},
        {"key": "b", "operator": "Exists"},
        {"key": "b", "operator": "NotIn", "values": ["2"]},
    ):
        assert LabelSelector.model_validate({"matchExpressions": [expression]}).as_map() is None
