"""kaito.api: the Workspace resource — models, versions, validation and the CRD.

Everything here is pure (no I/O): the reconciler, the admission webhook, the emulator and the
CLI all build on it. `Workspace` is the storage version (`kaito.sh/v1beta1`); documents in
`kaito.sh/v1alpha1` are accepted by `Workspace.from_dict` and produced by
`Workspace.to_dict("v1alpha1")`, losslessly in both directions.
"""

from kaito.api._constants import (
    API_GROUP,
    BYPASS_RESOURCE_CHECKS_ANNOTATION,
    SERVED_VERSIONS,
    STORAGE_VERSION,
)
from kaito.api._conversion import CONVERSION_ANNOTATION, convert
from kaito.api._crd import printer_columns, workspace_crd, workspace_schema
from kaito.api._errors import FieldError, WorkspaceInvalid
from kaito.api._meta import ObjectMeta, OwnerReference, format_timestamp, parse_timestamp
from kaito.api._validation import (
    MAX_ADAPTERS,
    bypasses_resource_checks,
    validate_create,
    validate_update,
)
from kaito.api._workspace import (
    AdapterSpec,
    Condition,
    ConditionType,
    DataDestination,
    DataSource,
    InferenceSpec,
    LabelSelector,
    LabelSelectorRequirement,
    Metric,
    PartitionMode,
    PartitionSpec,
    Performance,
    PresetOptions,
    PresetSpec,
    ResourceSpec,
    TuningMethod,
    TuningSpec,
    Workspace,
    WorkspaceState,
    WorkspaceStatus,
)

__all__ = [
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
]
