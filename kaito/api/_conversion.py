"""Conversion between the served versions, `kaito.sh/v1alpha1` and `kaito.sh/v1beta1`.

The two versions have the same shape; v1beta1 adds fields that v1alpha1 lacks
(`resource.partition`, `presetOptions.modelAccessSecret`, and `status.state`,
`status.targetNodeCount`, `status.performance`). Converting up is a relabel. Converting down
must not lose those fields, because a client that reads a workspace as v1alpha1 and writes it
back would otherwise erase them. The usual Kubernetes answer, used here, is to park the
v1beta1-only fields in an annotation on the v1alpha1 object and restore them on the way up.
The annotation holds canonical JSON (sorted keys, no spaces), so the round trip
v1alpha1 -> v1beta1 -> v1alpha1 reproduces it byte for byte.

Everything works on plain dicts, so the emulator and a conversion webhook can use it without
building models. `upgrade_document` is the entry point for `Workspace.from_dict`: it also
reports what a v1alpha1 document must not contain.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from kaito.api._constants import API_GROUP, KIND, SERVED_VERSIONS, STORAGE_VERSION
from kaito.api._errors import FieldError, join_path

CONVERSION_ANNOTATION = f"{API_GROUP}/v1beta1-fields"
"""Holds, on a v1alpha1 object, the v1beta1-only fields it was converted down from."""

V1BETA1_ONLY_FIELDS: tuple[tuple[str, ...], ...] = (
    ("resource", "partition"),
    ("inference", "preset", "presetOptions", "modelAccessSecret"),
    ("tuning", "preset", "presetOptions", "modelAccessSecret"),
    ("status", "state"),
    ("status", "targetNodeCount"),
    ("status", "performance"),
)
"""Paths of the fields that exist in v1beta1 but not in v1alpha1."""


def api_version_of(version: str) -> str:
    return f"{API_GROUP}/{version}"


def convert(obj: Mapping[str, Any], to_version: str) -> dict[str, Any]:
    """Convert a Workspace document to `to_version` ("v1alpha1" or "v1beta1"), losslessly.

    The input is not modified. Raises ValueError for an unknown version or a document that is
    not a kaito Workspace, and for a corrupt conversion annotation.
    """
    if to_version not in SERVED_VERSIONS:
        raise ValueError(f"unknown version {to_version!r}; served versions: {SERVED_VERSIONS}")
    source = _version_of(obj)
    if source is None:
        raise ValueError(
            f"not a kaito Workspace document: apiVersion {obj.get('apiVersion')!r}, "
            f"kind {obj.get('kind')!r}"
        )
    result = copy.deepcopy(dict(obj))
    if source == to_version:
        return result
    if to_version == "v1alpha1":
        _park_v1beta1_fields(result)
    else:
        _restore_v1beta1_fields(result)
    result["apiVersion"] = api_version_of(to_version)
    return result


def upgrade_document(data: object) -> tuple[dict[str, Any], list[FieldError]]:
    """Check the type header, convert to the hub version, and list what is structurally wrong.

    The returned document is always labelled v1beta1 so that model validation can still report
    problems in the body when the header is wrong.
    """
    if not isinstance(data, Mapping):
        return {}, [FieldError("(root)", f"expected an object, got {type(data).__name__}")]
    errors: list[FieldError] = []
    valid_versions = ", ".join(api_version_of(v) for v in SERVED_VERSIONS)
    api_version = data.get("apiVersion")
    if api_version is None:
        errors.append(FieldError("apiVersion", f"required; use one of {valid_versions}"))
    elif api_version not in [api_version_of(v) for v in SERVED_VERSIONS]:
        errors.append(FieldError("apiVersion", f"{api_version!r} is not one of {valid_versions}"))
    kind = data.get("kind")
    if kind is None:
        errors.append(FieldError("kind", f"required; use {KIND!r}"))
    elif kind != KIND:
        errors.append(FieldError("kind", f"{kind!r} is not {KIND!r}"))

    document = dict(data)
    if api_version == api_version_of("v1alpha1") and kind == KIND:
        for path in V1BETA1_ONLY_FIELDS:
            if _lookup(data, path) is not _MISSING:
                errors.append(
                    FieldError(
                        ".".join(path),
                        f"unknown field in {api_version_of('v1alpha1')}; it exists in "
                        f"{api_version_of(STORAGE_VERSION)}",
                    )
                )
        try:
            document = convert(data, STORAGE_VERSION)
        except ValueError as exc:
            where = f"metadata.annotations[{CONVERSION_ANNOTATION}]"
            errors.append(FieldError(where, str(exc)))
            document = dict(data)
    document["apiVersion"] = api_version_of(STORAGE_VERSION)
    document["kind"] = KIND
    return document, errors


# ---------------------------------------------------------------------------------------------

_MISSING = object()


def _version_of(obj: Mapping[str, Any]) -> str | None:
    if obj.get("kind") != KIND:
        return None
    for version in SERVED_VERSIONS:
        if obj.get("apiVersion") == api_version_of(version):
            return version
    return None


def _lookup(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = obj
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return _MISSING
        current = current[key]
    return current


def _park_v1beta1_fields(doc: dict[str, Any]) -> None:
    parked: dict[str, Any] = {}
    for path in V1BETA1_ONLY_FIELDS:
        value = _lookup(doc, path)
        if value is _MISSING:
            continue
        parent = _lookup(doc, path[:-1])
        del parent[path[-1]]
        target = parked
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    if not parked:
        return
    # Remember which containers exist only to carry the annotation, so the way back can
    # remove them again and reproduce the v1beta1 document exactly.
    created: list[str] = []
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        metadata = doc["metadata"] = {}
        created.append("metadata")
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict):
        annotations = metadata["annotations"] = {}
        created.append("annotations")
    payload = {"fields": parked, "created": created}
    annotations[CONVERSION_ANNOTATION] = json.dumps(payload, sort_keys=True, separators=(",", ":"))


def _restore_v1beta1_fields(doc: dict[str, Any]) -> None:
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        return
    annotations = metadata.get("annotations")
    if not isinstance(annotations, dict) or CONVERSION_ANNOTATION not in annotations:
        return
    raw = annotations.pop(CONVERSION_ANNOTATION)
    try:
        payload = json.loads(raw)
        fields = payload["fields"]
        created = payload.get("created", [])
        if not isinstance(fields, dict) or not isinstance(created, list):
            raise TypeError("fields must be an object and created a list")
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"corrupt conversion annotation {CONVERSION_ANNOTATION}: {exc}") from None
    _merge(doc, fields, "")
    if "annotations" in created and not annotations:
        del metadata["annotations"]
    if "metadata" in created and not metadata:
        del doc["metadata"]


def _merge(target: dict[str, Any], overlay: Mapping[str, Any], path: str) -> None:
    for key, value in overlay.items():
        here = join_path(path, key)
        if isinstance(value, Mapping) and not _is_leaf(here):
            child = target.get(key)
            if child is None:
                child = target[key] = {}
            if not isinstance(child, dict):
                raise ValueError(f"cannot restore {here}: the document has a non-object there")
            _merge(child, value, here)
        else:
            target[key] = copy.deepcopy(value)


def _is_leaf(path: str) -> bool:
    return any(".".join(p) == path for p in V1BETA1_ONLY_FIELDS)
