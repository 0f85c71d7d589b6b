"""The CustomResourceDefinition for workspaces, generated from the models.

The schema is built by walking the pydantic models' fields (so a field cannot be added to the
model and forgotten in the CRD), not by dumping pydantic's JSON schema: that one uses `$ref`
and `anyOf` for optionals, which a structural schema forbids. Every node gets an explicit type;
only the free-form parts (the pod template, volume sources) preserve unknown fields.

What the walk cannot know comes from two tables keyed by wire path (`inference.adapters[]` is
an adapter, `status.performance.metrics{}` a map value): `_EXTRAS` (patterns, bounds, enums,
required lists) and `_RULES`, the CEL `x-kubernetes-validations`. The CEL rules repeat the
validator's single-object rules (exactly one of inference/tuning, adapter limits, strength
range, ...) and its immutability rules as `oldSelf` transition rules, so a cluster that runs
without kaito's admission webhook still rejects what the webhook would. Rules and fields that
exist only in v1beta1 are left out of the v1alpha1 schema.

Printer columns reproduce `kubectl get workspace` as users know it (INSTANCE, RESOURCEREADY,
INFERENCEREADY, WORKSPACEREADY, AGE); the tuning columns have priority 1 and show with
`-o wide`.
"""

from __future__ import annotations

import copy
import inspect
from enum import Enum
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel

from kaito.api._checks import (
    DNS1123_LABEL_PATTERN,
    DNS1123_SUBDOMAIN_MAX,
    DNS1123_SUBDOMAIN_PATTERN,
    RFC3339_PATTERN,
    STRENGTH_PATTERN,
)
from kaito.api._constants import API_GROUP, KIND, SERVED_VERSIONS, STORAGE_VERSION
from kaito.api._conversion import V1BETA1_ONLY_FIELDS
from kaito.api._validation import MAX_ADAPTERS, MAX_DATA_URLS
from kaito.api._workspace import ConditionType, Workspace

PLURAL = "workspaces"
SINGULAR = "workspace"
SHORT_NAMES = ("wk", "wks")
CATEGORIES = ("workspace",)

_URL_MAX = 2048

_NAME: dict[str, Any] = {"pattern": DNS1123_SUBDOMAIN_PATTERN, "maxLength": DNS1123_SUBDOMAIN_MAX}
_FREE_FORM: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

_EXTRAS: dict[str, dict[str, Any]] = {
    "": {"required": ["resource"]},
    "resource": {"required": ["labelSelector"]},
    "resource.count": {"minimum": 1},
    "resource.labelSelector": {"x-kubernetes-map-type": "atomic"},
    "resource.labelSelector.matchExpressions": {"x-kubernetes-list-type": "atomic"},
    "resource.labelSelector.matchExpressions[].values": {"x-kubernetes-list-type": "atomic"},
    "resource.partition.count": {"minimum": 1},
    "inference.config": _NAME,
    "inference.template": _FREE_FORM,
    "inference.adapters": {"maxItems": MAX_ADAPTERS},
    "inference.adapters[].source.name": _NAME,
    "inference.adapters[].source.urls[]": {"maxLength": _URL_MAX},
    "inference.adapters[].source.volumeSource": _FREE_FORM,
    "inference.adapters[].source.imagePullSecrets[]": _NAME,
    "inference.adapters[].strength": {"maxLength": 32},
    "inference.preset.presetOptions.modelAccessSecret": _NAME,
    "inference.preset.presetOptions.imagePullSecrets[]": _NAME,
    "tuning": {"required": ["preset", "method", "input", "output"]},
    "tuning.config": _NAME,
    "tuning.preset.presetOptions.modelAccessSecret": _NAME,
    "tuning.preset.presetOptions.imagePullSecrets[]": _NAME,
    "tuning.input.name": _NAME,
    "tuning.input.urls": {"maxItems": MAX_DATA_URLS},
    "tuning.input.urls[]": {"maxLength": _URL_MAX},
    "tuning.input.volumeSource": _FREE_FORM,
    "tuning.input.imagePullSecrets[]": _NAME,
    "tuning.output.volumeSource": _FREE_FORM,
    "tuning.output.imagePushSecret": {"maxLength": DNS1123_SUBDOMAIN_MAX},
    "status.conditions": {
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    },
    "status.conditions[].type": {"maxLength": 316},
    "status.conditions[].lastTransitionTime": {"format": "date-time", "pattern": RFC3339_PATTERN},
    "status.conditions[].reason": {
        "minLength": 1,
        "maxLength": 1024,
        "pattern": r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    },
    "status.conditions[].message": {"maxLength": 32768},
    "status.conditions[].observedGeneration": {"format": "int64", "minimum": 0},
    "status.targetNodeCount": {"format": "int32", "minimum": 0},
}


def _rule(rule: str, message: str) -> dict[str, str]:
    return {"rule": rule, "message": message}


def _cel_string(text: str) -> str:
    """A CEL string literal for `text` (regular expressions need their backslashes escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_ONE_OF_IMAGE_OR_VOLUME = "[has(self.image) && self.image != '', has(self.volumeSource)]"

_RULES: dict[str, list[dict[str, str]]] = {
    "": [
        _rule(
            "has(self.inference) != has(self.tuning)",
            "exactly one of inference or tuning must be set",
        ),
        _rule(
            "has(self.inference) == has(oldSelf.inference) && "
            "has(self.tuning) == has(oldSelf.tuning)",
            "inference and tuning cannot be added or removed after creation",
        ),
        _rule(
            "!has(self.tuning) || !has(self.resource) || !has(self.resource.count) || "
            "self.resource.count <= 1",
            "tuning runs on a single node: resource.count must be 1 or unset",
        ),
        _rule(
            "!has(self.metadata.name) || (size(self.metadata.name) <= 63 && "
            f"self.metadata.name.matches({_cel_string(DNS1123_LABEL_PATTERN)}))",
            "metadata.name must be a DNS-1123 label (lower-case letters, digits, '-'; at most 63)",
        ),
    ],
    "resource": [
        _rule(
            "(has(self.count) ? self.count : 1) == (has(oldSelf.count) ? oldSelf.count : 1)",
            "resource.count is immutable",
        ),
        _rule(
            "!has(oldSelf.instanceType) || oldSelf.instanceType == '' || "
            "!has(self.instanceType) || self.instanceType == '' || "
            "self.instanceType == oldSelf.instanceType",
            "resource.instanceType cannot be changed once set",
        ),
        _rule(
            "has(self.partition) == has(oldSelf.partition)",
            "resource.partition cannot be added or removed after creation",
        ),
    ],
    "resource.labelSelector": [
        _rule("self == oldSelf", "resource.labelSelector is immutable"),
        _rule(
            "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
            "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
            "resource.labelSelector must select by at least one label",
        ),
    ],
    "resource.labelSelector.matchExpressions[]": [
        _rule(
            "self.operator == 'In' && has(self.values) && size(self.values) == 1",
            "only matchLabels or 'In' expressions with exactly one value are supported",
        ),
    ],
    "resource.partition": [
        _rule("self == oldSelf", "resource.partition is immutable"),
        _rule(
            "self.mode != 'mig' || (has(self.profile) && !has(self.count))",
            "mig partitions need a profile and no count",
        ),
        _rule(
            "self.mode != 'accelerator' || (has(self.count) && !has(self.profile))",
            "accelerator partitions need a count and no profile",
        ),
    ],
    "inference": [
        _rule(
            "has(self.preset) != has(self.template)",
            "exactly one of inference.preset or inference.template must be set",
        ),
        _rule(
            "has(self.template) == has(oldSelf.template)",
            "inference.template cannot be added or removed after creation",
        ),
    ],
    "inference.preset": [_rule("self == oldSelf", "inference.preset is immutable")],
    "inference.adapters": [
        _rule(
            "self.all(a, !has(a.source) || !has(a.source.name) || self.exists_one(b, "
            "has(b.source) && has(b.source.name) && b.source.name == a.source.name))",
            "adapter names (source.name) must be unique",
        ),
    ],
    "inference.adapters[]": [_rule("has(self.source)", "adapter source is required")],
    "inference.adapters[].source": [
        _rule("has(self.name) && self.name != ''", "adapter source.name is required"),
        _rule(
            "!has(self.urls) || size(self.urls) == 0",
            "URLs are not supported for adapters; use image or volumeSource",
        ),
        _rule(
            f"{_ONE_OF_IMAGE_OR_VOLUME}.exists_one(x, x)",
            "adapter source needs exactly one of image or volumeSource",
        ),
    ],
    "inference.adapters[].strength": [
        _rule(
            f"self.matches({_cel_string(STRENGTH_PATTERN)}) && "
            "double(self) >= 0.0 && double(self) <= 1.0",
            'strength must be a decimal number between 0 and 1, e.g. "0.5"',
        ),
    ],
    "tuning.preset": [_rule("self == oldSelf", "tuning.preset is immutable")],
    "tuning.method": [_rule("self == oldSelf", "tuning.method is immutable")],
    "tuning.input": [
        _rule(
            "[has(self.urls) && size(self.urls) > 0, has(self.image) && self.image != '', "
            "has(self.volumeSource)].exists_one(x, x)",
            "tuning.input needs exactly one of urls, image or volumeSource",
        ),
        _rule(
            "(has(self.name) ? self.name : '') == (has(oldSelf.name) ? oldSelf.name : '')",
            "tuning.input.name is immutable",
        ),
    ],
    "tuning.input.urls[]": [
        _rule("self.matches('^(?i)https?://[^/?#]+')", "data URLs must use http or https"),
    ],
    "tuning.output": [
        _rule(
            f"{_ONE_OF_IMAGE_OR_VOLUME}.exists_one(x, x)",
            "tuning.output needs exactly one of image or volumeSource",
        ),
        _rule(
            "!has(self.image) || self.image == '' || "
            "(has(self.imagePushSecret) && self.imagePushSecret != '')",
            "tuning.output.image needs imagePushSecret",
        ),
    ],
}

_ROOT_DESCRIPTION = (
    "A kaito Workspace: a model to serve (inference) or fine-tune (tuning), "
    "and the GPU nodes to run it on (resource)."
)
# Type header and metadata: the API server owns these; the schema only says what they are.
_ROOT_FIELDS: dict[str, dict[str, Any]] = {
    "apiVersion": {"type": "string", "description": "The versioned schema of this object."},
    "kind": {"type": "string", "description": "The kind of this object: Workspace."},
    "metadata": {"type": "object"},
}

# Rules that mention v1beta1-only fields; they are left out of the v1alpha1 schema.
_V1BETA1_ONLY_RULES = frozenset({"has(self.partition) == has(oldSelf.partition)"})


def workspace_crd() -> dict[str, Any]:
    """The `apiextensions.k8s.io/v1` CustomResourceDefinition for workspaces.kaito.sh."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "conversion": {"strategy": "None"},
            "versions": [_version(v) for v in SERVED_VERSIONS],
        },
    }


def workspace_schema(version: str = STORAGE_VERSION) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one served version."""
    if version not in SERVED_VERSIONS:
        raise ValueError(f"unknown version {version!r}; served versions: {SERVED_VERSIONS}")
    return _object_schema(Workspace, "", version)


def printer_columns(version: str = STORAGE_VERSION) -> list[dict[str, Any]]:
    """`additionalPrinterColumns` of one served version."""

    def condition(name: str, type_: ConditionType, priority: int = 0) -> dict[str, Any]:
        column: dict[str, Any] = {
            "name": name,
            "type": "string",
            "jsonPath": f'.status.conditions[?(@.type=="{type_.value}")].status',
        }
        if priority:
            column["priority"] = priority
        return column

    columns: list[dict[str, Any]] = [
        {"name": "Instance", "type": "string", "jsonPath": ".resource.instanceType"},
        condition("ResourceReady", ConditionType.RESOURCE_READY),
        condition("InferenceReady", ConditionType.INFERENCE_READY),
        condition("JobStarted", ConditionType.JOB_STARTED, priority=1),
        condition("WorkspaceSucceeded", ConditionType.WORKSPACE_SUCCEEDED, priority=1),
        condition("WorkspaceReady", ConditionType.WORKSPACE_READY),
    ]
    if version == "v1beta1":
        columns += [
            {
                "name": "TargetNodeCount",
                "type": "integer",
                "jsonPath": ".status.targetNodeCount",
                "priority": 1,
            },
            {"name": "State", "type": "string", "jsonPath": ".status.state", "priority": 1},
        ]
    columns.append({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
    return columns


# ---------------------------------------------------------------------------------------------


def _version(version: str) -> dict[str, Any]:
    return {
        "name": version,
        "served": True,
        "storage": version == STORAGE_VERSION,
        "subresources": {"status": {}},
        "additionalPrinterColumns": printer_columns(version),
        "schema": {"openAPIV3Schema": workspace_schema(version)},
    }


def _in_version(path: str, version: str) -> bool:
    if version == STORAGE_VERSION:
        return True
    return not any(path == ".".join(p) for p in V1BETA1_ONLY_FIELDS)


def _description(model: type[BaseModel]) -> str:
    doc = inspect.getdoc(model) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


def _object_schema(model: type[BaseModel], path: str, version: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        wire = info.alias or name
        child = f"{path}.{wire}" if path else wire
        if not _in_version(child, version):
            continue
        if not path and wire in _ROOT_FIELDS:
            properties[wire] = dict(_ROOT_FIELDS[wire])
            continue
        field_schema = _schema(info.annotation, child, version)
        if info.description:
            field_schema = {"description": info.description, **field_schema}
        properties[wire] = field_schema
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    description = _ROOT_DESCRIPTION if not path else _description(model)
    if description:
        schema = {"description": description, **schema}
    schema = _finish(schema, path, version)
    # Fields the model cannot do without are required on the wire too; the tables add the ones
    # the model keeps optional so that it can still represent (and report) incomplete objects.
    wanted = {info.alias or name for name, info in model.model_fields.items() if info.is_required()}
    wanted |= set(schema.get("required", []))
    if wanted:
        schema["required"] = [key for key in properties if key in wanted]
    return schema


def _finish(schema: dict[str, Any], path: str, version: str) -> dict[str, Any]:
    # Copies, so that the two versions' schemas share no objects with each other or the tables.
    schema.update(copy.deepcopy(_EXTRAS.get(path, {})))
    rules = [
        dict(r)
        for r in _RULES.get(path, [])
        if version == STORAGE_VERSION or r["rule"] not in _V1BETA1_ONLY_RULES
    ]
    if rules:
        schema["x-kubernetes-validations"] = rules
    return schema


def _schema(annotation: Any, path: str, version: str) -> dict[str, Any]:
    extras = _EXTRAS.get(path, {})
    if extras.get("x-kubernetes-preserve-unknown-fields"):
        return _finish({}, path, version)
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return _schema(args[0], path, version)
    if origin is not None and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{path}: unions other than Optional are not supported")
        return _schema(rest[0], path, version)
    if origin is Literal:
        return _finish({"type": "string", "enum": [str(a) for a in args]}, path, version)
    if origin is list:
        items = _schema(args[0], f"{path}[]", version)
        return _finish({"type": "array", "items": items}, path, version)
    if origin is dict:
        values = _schema(args[1], f"{path}{{}}", version)
        return _finish({"type": "object", "additionalProperties": values}, path, version)
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return _object_schema(annotation, path, version)
        if issubclass(annotation, Enum):
            members = [str(member.value) for member in annotation]
            return _finish({"type": "string", "enum": members}, path, version)
        if issubclass(annotation, bool):
            return _finish({"type": "boolean"}, path, version)
        if issubclass(annotation, int):
            return _finish({"type": "integer"}, path, version)
        if issubclass(annotation, float):
            return _finish({"type": "number"}, path, version)
        if issubclass(annotation, str):
            return _finish({"type": "string"}, path, version)
    raise TypeError(f"{path}: no schema for {annotation!r}")
