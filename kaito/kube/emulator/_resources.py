"""What the store serves: one `Resource` per (group, plural), built in or from a CRD.

kube-apiserver stores each resource once, at its storage version, and serves it at every
served version; for CRDs with `conversion.strategy: None` converting is just rewriting
`apiVersion`. A `Resource` carries what every layer needs about one resource: scope, the
`ResourceKind` of each served version (the URL coordinates, shared with the client through
`kaito.kube._kinds`), merge facts for patches, and for custom resources the schema, printer
columns and selectable fields of each version.

This module also turns a CustomResourceDefinition object into a `Resource`, validating the CRD
the way the apiextensions server does for the fields that decide how the CRD is served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from kaito.kube._kinds import BUILTIN_KINDS, ResourceKind
from kaito.kube.emulator._errors import (
    FIELD_INVALID,
    FIELD_NOT_SUPPORTED,
    FIELD_REQUIRED,
    FieldError,
)
from kaito.kube.emulator._schema import compile_rules
from kaito.kube.emulator._shapes import Shape, builtin_shape, shape_from_schema

JsonObj = dict[str, Any]

CRD_CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"


@attrs.define(eq=False)
class Resource:
    """One stored resource and the versions it is served at."""

    group: str
    plural: str
    kind: str
    namespaced: bool
    storage_version: str
    versions: dict[str, ResourceKind]
    has_status: bool
    custom: bool = False
    shape: Shape = attrs.field(factory=Shape)
    schemas: dict[str, Mapping[str, Any]] = attrs.field(factory=dict)
    printer_columns: dict[str, list[JsonObj]] = attrs.field(factory=dict)
    selectable_fields: tuple[str, ...] = ()
    scale: JsonObj | None = None
    crd_name: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def storage_kind(self) -> ResourceKind:
        return self.versions[self.storage_version]

    @property
    def tracks_generation(self) -> bool:
        return self.custom or self.has_status

    def api_version(self, version: str | None = None) -> str:
        v = version or self.storage_version
        return f"{self.group}/{v}" if self.group else v

    def schema(self, version: str) -> Mapping[str, Any] | None:
        return self.schemas.get(version)

    def describe(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def builtin_resources() -> list[Resource]:
    out: list[Resource] = []
    for kind in BUILTIN_KINDS:
        scale = None
        if "scale" in kind.subresources:
            scale = {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector",
            }
        out.append(
            Resource(
                group=kind.group,
                plural=kind.plural,
                kind=kind.kind,
                namespaced=kind.namespaced,
                storage_version=kind.version,
                versions={kind.version: kind},
                has_status=kind.has_status,
                shape=builtin_shape(kind.group, kind.plural),
                scale=scale,
            )
        )
    return out


def _version_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        return [
            FieldError(
                FIELD_REQUIRED,
                "spec.versions",
                "must have exactly one version marked as storage version",
            )
        ]
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if len(storage) != 1:
        errors.append(
            FieldError(
                FIELD_INVALID,
                "spec.versions",
                "must have exactly one version marked as storage version",
                "array",
            )
        )
    seen: set[str] = set()
    for i, v in enumerate(versions):
        if not isinstance(v, dict) or not v.get("name"):
            errors.append(FieldError(FIELD_REQUIRED, f"spec.versions[{i}].name"))
            continue
        if v["name"] in seen:
            errors.append(
                FieldError("FieldValueDuplicate", f"spec.versions[{i}].name", "", v["name"])
            )
        seen.add(str(v["name"]))
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            errors.append(
                FieldError(
                    FIELD_REQUIRED,
                    f"spec.versions[{i}].schema.openAPIV3Schema",
                    "schemas are required",
                )
            )
        else:
            for err in compile_rules(schema):
                errors.append(
                    attrs.evolve(
                        err,
                        field=err.field.replace(
                            "spec.validation.openAPIV3Schema",
                            f"spec.versions[{i}].schema.openAPIV3Schema",
                        ),
                    )
                )
    return errors


def validate_crd(crd: Mapping[str, Any]) -> list[FieldError]:
    """The CRD errors that would stop it from being served (422 on create/update)."""
    errors: list[FieldError] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [FieldError(FIELD_REQUIRED, "spec")]
    group = spec.get("group")
    names = spec.get("names") or {}
    if not group:
        errors.append(FieldError(FIELD_REQUIRED, "spec.group"))
    elif "." not in str(group):
        errors.append(
            FieldError(
                FIELD_INVALID, "spec.group", "should be a domain with at least one dot", group
            )
        )
    for field in ("plural", "kind"):
        if not names.get(field):
            errors.append(FieldError(FIELD_REQUIRED, f"spec.names.{field}"))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        errors.append(
            FieldError(
                FIELD_NOT_SUPPORTED,
                "spec.scope",
                'supported values: "Cluster", "Namespaced"',
                scope if scope is not None else "",
            )
        )
    name = (crd.get("metadata") or {}).get("name")
    if group and names.get("plural") and name != f"{names['plural']}.{group}":
        errors.append(
            FieldError(
                FIELD_INVALID,
                "metadata.name",
                'must be spec.names.plural+"."+spec.group',
                name or "",
            )
        )
    errors.extend(_version_errors(spec))
    return errors


def resource_from_crd(crd: Mapping[str, Any]) -> Resource:
    """The served resource a (valid) CRD defines."""
    spec = crd["spec"]
    names = spec["names"]
    group = str(spec["group"])
    plural = str(names["plural"])
    kind_name = str(names["kind"])
    singular = str(names.get("singular") or kind_name.lower())
    namespaced = spec.get("scope") == "Namespaced"
    versions: dict[str, ResourceKind] = {}
    schemas: dict[str, Mapping[str, Any]] = {}
    columns: dict[str, list[JsonObj]] = {}
    storage = ""
    has_status = False
    scale: JsonObj | None = None
    selectable: list[str] = []
    shape: Shape | None = None
    for v in spec["versions"]:
        subresources = v.get("subresources") or {}
        if v.get("storage"):
            storage = str(v["name"])
            shape = shape_from_schema((v.get("schema") or {}).get("openAPIV3Schema"))
        if "status" in subresources:
            has_status = True
        if "scale" in subresources:
            scale = dict(subresources["scale"])
        selectable.extend(
            str(f.get("jsonPath", "")).lstrip(".") for f in v.get("selectableFields") or ()
        )
        if not v.get("served", True):
            continue
        subs = tuple(s for s in ("status", "scale") if s in subresources)
        versions[str(v["name"])] = ResourceKind(
            group=group,
            version=str(v["name"]),
            kind=kind_name,
            plural=plural,
            namespaced=namespaced,
            singular=singular,
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            subresources=subs,
        )
        schemas[str(v["name"])] = (v.get("schema") or {}).get("openAPIV3Schema") or {}
        columns[str(v["name"])] = list(v.get("additionalPrinterColumns") or ())
    return Resource(
        group=group,
        plural=plural,
        kind=kind_name,
        namespaced=namespaced,
        storage_version=storage,
        versions=versions,
        has_status=has_status,
        custom=True,
        shape=shape or Shape(),
        schemas=schemas,
        printer_columns=columns,
        selectable_fields=tuple(selectable),
        scale=scale,
        crd_name=str(crd["metadata"]["name"]),
    )


def crd_status(crd: Mapping[str, Any], now: str, previous: Mapping[str, Any] | None) -> JsonObj:
    """The status the apiextensions controllers give an accepted CRD."""
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", str(names["kind"]).lower())
    names.setdefault("listKind", f"{names['kind']}List")
    old_conditions = {
        c.get("type"): c for c in ((previous or {}).get("conditions") or ()) if isinstance(c, dict)
    }

    def condition(ctype: str, reason: str, message: str) -> JsonObj:
        old = old_conditions.get(ctype)
        since = old.get("lastTransitionTime", now) if old and old.get("status") == "True" else now
        return {
            "type": ctype,
            "status": "True",
            "lastTransitionTime": since,
            "reason": reason,
            "message": message,
        }

    stored = list((previous or {}).get("storedVersions") or ())
    storage = next(str(v["name"]) for v in spec["versions"] if v.get("storage"))
    if storage not in stored:
        stored.append(storage)
    return {
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition(
                "Established", "InitialNamesAccepted", "the initial names have been accepted"
            ),
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    }
