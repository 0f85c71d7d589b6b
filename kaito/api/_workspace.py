"""The Workspace resource (`kaito.sh/v1beta1`, the hub version) as pydantic models.

A workspace says what to run (`inference`: a preset or a pod template, plus LoRA adapters; or
`tuning`: a preset, a method and data) and on which GPU nodes (`resource`). The spec blocks sit
at the top level of the object, not under `spec`, because that is the shape users already have
in their YAML files; kaito must load those unchanged.

The models mirror the wire format field by field and add nothing: every optional field defaults
to "not set", and `to_dict` writes back only what was set. That makes the round trip exact, and
keeps the question "what did the user ask for" separate from "what does kaito default it to"
(defaults live in the reconciler and the CRD schema, not here).

Structural problems (unknown fields, wrong types, an invalid enum value) are found while
building the model and raised together as `WorkspaceInvalid`; semantic rules (exactly one of
inference/tuning, known presets, immutability, ...) are in `_validation`, which returns a list.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel, Field, Strict, ValidationError

from kaito.api._constants import STORAGE_VERSION
from kaito.api._conversion import convert, upgrade_document
from kaito.api._errors import FieldError, WorkspaceInvalid
from kaito.api._meta import KaitoModel, ObjectMeta, Timestamp


class ConditionType(StrEnum):
    """Status condition types a workspace reports."""

    RESOURCE_READY = "ResourceReady"
    NODE_CLAIM_READY = "NodeClaimReady"
    NODES_READY = "NodesReady"
    INFERENCE_READY = "InferenceReady"
    JOB_STARTED = "JobStarted"
    WORKSPACE_SUCCEEDED = "WorkspaceSucceeded"
    WORKSPACE_READY = "WorkspaceReady"


class TuningMethod(StrEnum):
    """Parameter-efficient fine-tuning methods."""

    LORA = "lora"
    QLORA = "qlora"


class WorkspaceState(StrEnum):
    """The one-word summary in `status.state`."""

    PENDING = "Pending"
    READY = "Ready"
    NOT_READY = "NotReady"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class PartitionMode(StrEnum):
    """How a workload gets a share of a GPU node (`resource.partition.mode`)."""

    MIG = "mig"
    ACCELERATOR = "accelerator"


# Enum fields accept their string values (strict mode alone would demand enum instances).
_Lax = Strict(False)


class LabelSelectorRequirement(KaitoModel):
    """One expression of a label selector: `key operator values`."""

    key: str = Field(description="The label key the selector applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values."
    )
    values: list[str] | None = Field(default=None, description="Values for In and NotIn.")


class LabelSelector(KaitoModel):
    """A Kubernetes label selector."""

    match_labels: dict[str, str] | None = Field(
        default=None, description="Labels a node must carry, as key/value pairs."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, description="Label requirements; kaito supports only In with one value."
    )

    def as_map(self) -> dict[str, str] | None:
        """The selector as plain key/value pairs, or None if it uses anything but
        matchLabels and single-valued `In` expressions (the only forms kaito can put on a node).
        """
        result = dict(self.match_labels or {})
        for requirement in self.match_expressions or []:
            if requirement.operator != "In" or len(requirement.values or []) != 1:
                return None
            result[requirement.key] = (requirement.values or [""])[0]
        return result


class PartitionSpec(KaitoModel):
    """A share of a GPU node: a MIG slice or a number of whole GPUs (v1beta1 only)."""

    mode: Annotated[PartitionMode, _Lax] = Field(description="mig or accelerator.")
    profile: str | None = Field(default=None, description="MIG profile, e.g. '1g.10gb'.")
    count: int | None = Field(default=None, description="Whole GPUs, for accelerator mode.")


class ResourceSpec(KaitoModel):
    """The GPU nodes a workload runs on."""

    count: int | None = Field(
        default=None, description="Number of GPU nodes (deprecated in v1beta1; defaults to 1)."
    )
    instance_type: str | None = Field(
        default=None,
        description=(
            "The GPU node SKU. Required when nodes are auto-provisioned; "
            "must be empty when bringing your own nodes."
        ),
    )
    label_selector: LabelSelector | None = Field(
        default=None, description="Labels the GPU nodes carry (and provisioned nodes get)."
    )
    preferred_nodes: list[str] | None = Field(
        default=None, description="Existing nodes to use first (deprecated in v1beta1)."
    )
    partition: PartitionSpec | None = Field(
        default=None, description="Run on a GPU partition instead of whole nodes (BYO only)."
    )


class PresetOptions(KaitoModel):
    """Options for loading a preset model."""

    image: str | None = Field(default=None, description="Model image (deprecated).")
    image_pull_secrets: list[str] | None = Field(
        default=None, description="Secrets for pulling the model image (deprecated)."
    )
    model_access_secret: str | None = Field(
        default=None, description="Secret holding the model hub access token (HF_TOKEN)."
    )


class PresetSpec(KaitoModel):
    """A model from the preset catalog."""

    name: str = Field(description="Name of a preset in the catalog, e.g. 'phi-3-mini-4k-instruct'.")
    access_mode: Literal["public", "private"] | None = Field(
        default=None, description="Whether the model image is public or private (deprecated)."
    )
    preset_options: PresetOptions | None = Field(default=None, description="Loading options.")


class DataSource(KaitoModel):
    """Where data comes from: URLs, an image, or a volume."""

    name: str | None = Field(
        default=None, description="Name of the data set; used as a container name."
    )
    urls: list[str] | None = Field(default=None, description="Public http(s) URLs of the data.")
    volume_source: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes volume source that holds the data."
    )
    image: str | None = Field(
        default=None, description="An image with the data in its /data directory."
    )
    image_pull_secrets: list[str] | None = Field(
        default=None, description="Secrets for pulling the data image."
    )


class DataDestination(KaitoModel):
    """Where tuning output goes: an image pushed to a registry, or a volume."""

    volume_source: dict[str, Any] | None = Field(
        default=None, description="A Kubernetes volume source to write the output to."
    )
    image: str | None = Field(default=None, description="Image to push the output to.")
    image_push_secret: str | None = Field(
        default=None, description="Secret with the registry credentials for the push."
    )


class AdapterSpec(KaitoModel):
    """A LoRA adapter loaded on top of the base model."""

    source: DataSource | None = Field(default=None, description="Where the adapter comes from.")
    strength: str | None = Field(
        default=None, description="Multiplier for the adapter weights, a decimal string in [0, 1]."
    )

    @property
    def strength_value(self) -> float:
        """The strength as a number; 1.0 when unset. Call only on a validated workspace."""
        return 1.0 if self.strength is None else float(self.strength)


class InferenceSpec(KaitoModel):
    """Serve a model: a preset or a custom pod template, with optional adapters."""

    preset: PresetSpec | None = Field(default=None, description="The preset model to serve.")
    template: dict[str, Any] | None = Field(
        default=None, description="A custom pod template, instead of a preset."
    )
    config: str | None = Field(
        default=None, description="ConfigMap with inference arguments, in the same namespace."
    )
    adapters: list[AdapterSpec] | None = Field(
        default=None, description="LoRA adapters to load with the base model."
    )


class TuningSpec(KaitoModel):
    """Fine-tune a preset model with a PEFT method."""

    preset: PresetSpec | None = Field(default=None, description="The preset model to tune.")
    method: Annotated[TuningMethod, _Lax] | None = Field(default=None, description="lora or qlora.")
    config: str | None = Field(
        default=None, description="ConfigMap with tuning arguments, in the same namespace."
    )
    input: DataSource | None = Field(default=None, description="The training data.")
    output: DataDestination | None = Field(default=None, description="Where the adapter goes.")


class Condition(KaitoModel):
    """A status condition, as `metav1.Condition`."""

    type: str = Field(description="Condition type, e.g. 'WorkspaceReady'.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="A CamelCase reason for the last transition.")
    message: str = Field(description="A human-readable explanation.")
    last_transition_time: Timestamp = Field(description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the condition was computed from."
    )


class Metric(KaitoModel):
    """One benchmark measurement."""

    description: str = Field(description="What was measured, e.g. 'stress/high-concurrency'.")
    value: str = Field(description="The measured value.")
    unit: str | None = Field(default=None, description="Unit, e.g. 'tokens/min'.")
    config: dict[str, str] | None = Field(default=None, description="Benchmark parameters.")


class Performance(KaitoModel):
    """Results of the post-load inference benchmark."""

    metrics: dict[str, Metric] | None = Field(default=None, description="Metrics by name.")


class WorkspaceStatus(KaitoModel):
    """Observed state, written by the controller through the status subresource."""

    worker_nodes: list[str] | None = Field(
        default=None, description="Nodes chosen to run the workload."
    )
    state: Annotated[WorkspaceState, _Lax] | None = Field(
        default=None, description="One-word summary of the workspace."
    )
    conditions: list[Condition] | None = Field(default=None, description="Current conditions.")
    target_node_count: int | None = Field(
        default=None, description="Number of GPU nodes the sizing planner asked for."
    )
    performance: Performance | None = Field(
        default=None, description="Post-load benchmark results."
    )


class Workspace(KaitoModel):
    """A kaito workspace, in the storage version `kaito.sh/v1beta1`.

    Build one from a document with `from_dict` (either served version) and write it with
    `to_dict`; construct one in code with field names (`Workspace(metadata=ObjectMeta(...),
    resource=ResourceSpec(instance_type=...), inference=...)`).
    """

    api_version: Literal["kaito.sh/v1beta1"] = "kaito.sh/v1beta1"
    kind: Literal["Workspace"] = "Workspace"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    resource: ResourceSpec | None = Field(default=None, description="The GPU nodes to run on.")
    inference: InferenceSpec | None = Field(default=None, description="Serve a model.")
    tuning: TuningSpec | None = Field(default=None, description="Fine-tune a model.")
    status: WorkspaceStatus | None = Field(default=None, description="Observed state.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workspace:
        """Build a workspace from a document of any served version.

        v1alpha1 documents are converted to v1beta1 first. Raises `WorkspaceInvalid` with every
        structural problem (unknown fields, wrong types, missing apiVersion/kind) and its path.
        """
        document, errors = upgrade_document(data)
        try:
            workspace = cls.model_validate(document)
        except ValidationError as exc:
            raise WorkspaceInvalid([*errors, *errors_from_pydantic(exc, cls)]) from None
        if errors:
            raise WorkspaceInvalid(errors)
        return workspace

    def to_dict(self, version: str = STORAGE_VERSION) -> dict[str, Any]:
        """The document in the given served version, with exactly the fields that are set."""
        document: dict[str, Any] = {"apiVersion": self.api_version, "kind": self.kind}
        document.update(self.model_dump(mode="json", by_alias=True, exclude_unset=True))
        document["apiVersion"] = self.api_version
        document["kind"] = self.kind
        if version != STORAGE_VERSION:
            document = convert(document, version)
        return document

    @property
    def key(self) -> str:
        """`namespace/name`, the work-queue key; an unset namespace counts as `default`."""
        return f"{self.metadata.namespace or 'default'}/{self.metadata.name or ''}"

    def condition(self, type: str) -> Condition | None:
        """The status condition of this type, if the controller has written one."""
        if self.status is None:
            return None
        for condition in self.status.conditions or []:
            if condition.type == type:
                return condition
        return None


# ---------------------------------------------------------------------------------------------
# Turning pydantic's errors into field paths.


def errors_from_pydantic(exc: ValidationError, model: type[BaseModel]) -> list[FieldError]:
    """Rewrite pydantic errors as `FieldError`s with Kubernetes paths and helpful messages."""
    result: list[FieldError] = []
    for error in exc.errors(include_url=False):
        path, owner = _render_loc(model, error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            if owner is not None:
                known = ", ".join(sorted(_wire_names(owner)))
                message = f"unknown field; valid fields here are: {known}"
            else:
                message = "unknown field"
        elif kind == "missing":
            message = "required field is missing"
        elif kind == "value_error":
            message = str(error.get("ctx", {}).get("error", error["msg"]))
        else:
            message = f"{error['msg']} (got {_short(error.get('input'))})"
        result.append(FieldError(path or "(root)", message))
    return result


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wire_names(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _field_by_wire_name(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (info.alias, name):
            return info.annotation
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Optional / Annotated down to the type that decides how a path continues."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        args = get_args(annotation)
        if origin is not None and type(None) in args:
            rest = [a for a in args if a is not type(None)]
            if len(rest) == 1:
                annotation = rest[0]
                continue
        return annotation


def _render_loc(
    model: type[BaseModel], loc: tuple[int | str, ...]
) -> tuple[str, type[BaseModel] | None]:
    """Render a pydantic location as `a.b[1].c` / `m[key]`, following the model's types.

    Returns the path and the model that owns the last element (for listing valid field names).
    """
    path = ""
    current: Any = model
    owner: type[BaseModel] | None = None
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            owner = current
            path = f"{path}.{part}" if path else str(part)
            current = _field_by_wire_name(current, str(part))
            continue
        origin = get_origin(current)
        if origin is list:
            path += f"[{part}]"
            current = get_args(current)[0]
        elif origin is dict:
            path += f"[{part}]"
            current = get_args(current)[1]
        else:
            path = f"{path}.{part}" if path else str(part)
            current = None
    return path, owner
