"""kaito.api's facade exports exactly the intended names, and they resolve to kaito objects."""

from __future__ import annotations

import kaito.api

EXPECTED = {
    "API_GROUP",
    "BYPASS_RESOURCE_CHECKS_ANNOTATION",
    "CONVERSION_ANNOTATION",
    "MAX_ADAPTERS",
    "SERVED_VERSIONS",
    "STORAGE_VERSION",
    "AdapterSpec",
    "Condition",
    "ConditionType",
    "DataDestination",
    "DataSource",
    "FieldError",
    "InferenceSpec",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Metric",
    "ObjectMeta",
    "OwnerReference",
    "PartitionMode",
    "PartitionSpec",
    "Performance",
    "PresetOptions",
    "PresetSpec",
    "ResourceSpec",
    "TuningMethod",
    "TuningSpec",
    "Workspace",
    "WorkspaceInvalid",
    "WorkspaceState",
    "WorkspaceStatus",
    "bypasses_resource_checks",
    "convert",
    "format_timestamp",
    "parse_timestamp",
    "printer_columns",
    "validate_create",
    "validate_update",
    "workspace_crd",
    "workspace_schema",
}


def test_exported_names_are_exactly_the_intended_ones() -> None:
    assert set(kaito.api.__all__) == EXPECTED
    assert len(kaito.api.__all__) == len(EXPECTED)


def test_exported_names_resolve() -> None:
    for name in kaito.api.__all__:
        value = getattr(kaito.api, name)
        module = getattr(value, "__module__", "kaito.api")
        if isinstance(value, type) or callable(value):
            assert module.startswith("kaito.api"), f"{name} comes from {module}"


def test_constants() -> None:
    assert kaito.api.API_GROUP == "kaito.sh"
    assert kaito.api.STORAGE_VERSION == "v1beta1"
    assert kaito.api.SERVED_VERSIONS == ("v1alpha1", "v1beta1")
    assert kaito.api.BYPASS_RESOURCE_CHECKS_ANNOTATION == "kaito.sh/bypass-resource-checks"
    assert kaito.api.MAX_ADAPTERS == 10
