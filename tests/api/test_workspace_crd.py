"""The generated CRD: identity, printer columns, structural schema, CEL rules, seed validity."""

from __future__ import annotations

import copy
import importlib.util
import json
from typing import Any

import pytest
import yaml
from workspace_helpers import (
    SEEDS,
    cel_violations,
    column_value,
    edited,
    inference_doc,
    load_seed,
    schema_errors,
    tuning_doc,
)

from kaito.api import (
    SERVED_VERSIONS,
    STORAGE_VERSION,
    Workspace,
    convert,
    printer_columns,
    workspace_crd,
    workspace_schema,
)

pytestmark = pytest.mark.timeout(30)

needs_cel = pytest.mark.skipif(
    importlib.util.find_spec("cel") is None,
    reason="the CEL evaluator (package common-expression-language) is not installed",
)


def _version(crd: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in crd["spec"]["versions"] if v["name"] == name)


def test_crd_identity_and_versions() -> None:
    crd = workspace_crd()
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "workspaces.kaito.sh"
    spec = crd["spec"]
    assert spec["group"] == "kaito.sh"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "Workspace",
        "listKind": "WorkspaceList",
        "plural": "workspaces",
        "singular": "workspace",
        "shortNames": ["wk", "wks"],
        "categories": ["workspace"],
    }
    assert [v["name"] for v in spec["versions"]] == ["v1alpha1", "v1beta1"]
    assert [v["name"] for v in spec["versions"] if v["storage"]] == [STORAGE_VERSION]
    assert all(v["served"] and v["subresources"] == {"status": {}} for v in spec["versions"])
    json.dumps(crd)  # plain data all the way down
    assert yaml.safe_load(yaml.safe_dump(crd)) == crd


def test_each_call_returns_an_independent_crd() -> None:
    first = workspace_crd()
    first["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"].clear()
    _version(first, "v1beta1")["additionalPrinterColumns"].clear()
    assert workspace_crd() != first
    alpha = _version(workspace_crd(), "v1alpha1")["schema"]["openAPIV3Schema"]
    beta = _version(workspace_crd(), "v1beta1")["schema"]["openAPIV3Schema"]
    alpha["properties"]["inference"]["properties"]["adapters"]["x-kubernetes-validations"].clear()
    assert beta["properties"]["inference"]["properties"]["adapters"]["x-kubernetes-validations"]


@pytest.mark.parametrize("version", SERVED_VERSIONS)
def test_default_printer_columns_reproduce_kubectl_get_workspace(version: str) -> None:
    columns = _version(workspace_crd(), version)["additionalPrinterColumns"]
    assert columns == printer_columns(version)
    default = [c for c in columns if c.get("priority", 0) == 0]
    assert [c["name"].upper() for c in default] == [
        "INSTANCE",
        "RESOURCEREADY",
        "INFERENCEREADY",
        "WORKSPACEREADY",
        "AGE",
    ]
    by_name = {c["name"]: c for c in columns}
    assert by_name["Instance"]["jsonPath"] == ".resource.instanceType"
    assert (
        by_name["WorkspaceReady"]["jsonPath"]
        == '.status.conditions[?(@.type=="WorkspaceReady")].status'
    )
    assert by_name["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    for wide in ("JobStarted", "WorkspaceSucceeded"):
        assert by_name[wide]["priority"] == 1
        assert by_name[wide]["jsonPath"] == f'.status.conditions[?(@.type=="{wide}")].status'

    # Render the seed's row the way kubectl would, from a workspace with ready conditions.
    workspace = load_seed("phi-3-inference.yaml")
    workspace["status"] = {
        "conditions": [
            {
                "type": t,
                "status": "True",
                "reason": "Ready",
                "message": "",
                "lastTransitionTime": "2024-05-01T12:00:00Z",
            }
            for t in ("ResourceReady", "InferenceReady", "WorkspaceReady")
        ]
    }
    row = [column_value(workspace, c["jsonPath"]) for c in default[:-1]]
    assert row == ["Standard_NC6s_v3", "True", "True", "True"]


def test_v1beta1_has_the_extra_status_columns() -> None:
    names = [c["name"] for c in printer_columns("v1beta1")]
    assert {"TargetNodeCount", "State"} <= set(names)
    assert not {"TargetNodeCount", "State"} & {c["name"] for c in printer_columns("v1alpha1")}


# ---------------------------------------------------------------------------------------------
# Structural schema

_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
_FORBIDDEN = {
    "$ref",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "definitions",
    "$defs",
    "patternProperties",
    "additionalItems",
    "dependencies",
    "default",
    "nullable",
}


def _walk(node: dict[str, Any], path: str, problems: list[str]) -> None:
    if node.get("type") not in _TYPES:
        problems.append(f"{path}: no valid type ({node.get('type')!r})")
    for key in _FORBIDDEN & set(node):
        problems.append(f"{path}: {key} is not allowed here")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        if node.get("type") != "object" or "properties" in node:
            problems.append(f"{path}: preserve-unknown-fields only on free-form objects")
        return
    if node.get("type") == "object":
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
        if (
            "properties" not in node
            and not isinstance(node.get("additionalProperties"), dict)
            and path != ".metadata"
        ):
            problems.append(f"{path}: object without properties")
        for key, child in node.get("properties", {}).items():
            _walk(child, f"{path}.{key}", problems)
        for key in node.get("required", []):
            if key not in node.get("properties", {}):
                problems.append(f"{path}: required {key} is not a property")
        if isinstance(node.get("additionalProperties"), dict):
            _walk(node["additionalProperties"], f"{path}{{}}", problems)
    if node.get("type") == "array":
        if "items" not in node:
            problems.append(f"{path}: array without items")
        else:
            _walk(node["items"], f"{path}[]", problems)
    for rule in node.get("x-kubernetes-validations", []):
        if set(rule) != {"rule", "message"} or not rule["message"]:
            problems.append(f"{path}: rule without message: {rule}")


@pytest.mark.parametrize("version", SERVED_VERSIONS)
def test_schema_is_structural(version: str) -> None:
    schema = workspace_schema(version)
    problems: list[str] = []
    _walk(schema, "", problems)
    assert problems == []
    assert schema["properties"]["metadata"] == {"type": "object"}
    preserved = []

    def collect(node: dict[str, Any], path: str) -> None:
        if node.get("x-kubernetes-preserve-unknown-fields"):
            preserved.append(path)
        for key, child in node.get("properties", {}).items():
            collect(child, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                collect(node[key], f"{path}[]")

    collect(schema, "")
    assert sorted(preserved) == [
        ".inference.adapters[].source.volumeSource",
        ".inference.template",
        ".tuning.input.volumeSource",
        ".tuning.output.volumeSource",
    ]


def test_v1alpha1_schema_lacks_the_v1beta1_only_fields() -> None:
    alpha, beta = workspace_schema("v1alpha1"), workspace_schema("v1beta1")
    for schema, present in ((alpha, False), (beta, True)):
        props = schema["properties"]
        assert ("partition" in props["resource"]["properties"]) is present
        assert (
            "modelAccessSecret"
            in props["inference"]["properties"]["preset"]["properties"]["presetOptions"][
                "properties"
            ]
        ) is present
        assert ("state" in props["status"]["properties"]) is present
        assert ("targetNodeCount" in props["status"]["properties"]) is present
    with pytest.raises(ValueError, match="unknown version"):
        workspace_schema("v1")


def _pruned(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Paths in `value` that the API server would prune (not described by the schema)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        for key, child in value.items():
            here = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                found += _pruned(properties[key], child, here)
            elif isinstance(schema.get("additionalProperties"), dict):
                found += _pruned(schema["additionalProperties"], child, here)
            elif not (path == "metadata" and schema == {"type": "object"}):
                found.append(here)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _pruned(schema.get("items", {}), item, f"{path}[{index}]")
    return found


def test_schema_describes_every_field_the_model_writes() -> None:
    beta = edited(
        inference_doc(),
        lambda d: d["inference"]["preset"].update(
            presetOptions={"modelAccessSecret": "s", "image": "i", "imagePullSecrets": ["p"]},
            accessMode="public",
        ),
    )
    beta["resource"]["partition"] = {"mode": "mig", "profile": "1g.10gb"}
    beta["status"] = {
        "state": "Ready",
        "targetNodeCount": 1,
        "workerNodes": ["n"],
        "conditions": [
            {
                "type": "WorkspaceReady",
                "status": "True",
                "reason": "Ready",
                "message": "",
                "lastTransitionTime": "2024-05-01T12:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "performance": {
            "metrics": {"m": {"description": "d", "value": "1", "unit": "u", "config": {"k": "v"}}}
        },
    }
    schema = workspace_schema("v1beta1")
    for document in (beta, tuning_doc()):
        assert _pruned(schema, Workspace.from_dict(document).to_dict()) == []
    assert _pruned(schema, {"resource": {"colour": "red"}}) == ["resource.colour"]
    alpha = convert(beta, "v1alpha1")
    assert _pruned(workspace_schema("v1alpha1"), alpha) == []


# ---------------------------------------------------------------------------------------------
# CEL rules


def _rules(node: dict[str, Any]) -> list[str]:
    found = [r["rule"] for r in node.get("x-kubernetes-validations", [])]
    for child in node.get("properties", {}).values():
        found += _rules(child)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            found += _rules(node[key])
    return found


@needs_cel
@pytest.mark.parametrize("version", SERVED_VERSIONS)
def test_every_cel_rule_compiles(version: str) -> None:
    rules = _rules(workspace_schema(version))
    assert len(rules) >= 20
    import cel

    for rule in rules:
        cel.compile(rule)


@needs_cel
@pytest.mark.parametrize("name", SEEDS)
def test_seeds_pass_the_cel_rules_in_both_versions(name: str) -> None:
    alpha = load_seed(name)
    assert cel_violations(workspace_schema("v1alpha1"), alpha) == []
    beta = convert(alpha, "v1beta1")
    assert cel_violations(workspace_schema("v1beta1"), beta) == []
    assert cel_violations(workspace_schema("v1beta1"), beta, old=beta) == []


def _set(path: str, value: Any) -> Any:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is None:
            target.pop(last)
        else:
            target[last] = value

    return edit


def _adapter(name: str) -> dict[str, Any]:
    return {"source": {"name": name, "image": f"r.example/{name}:1"}}


CEL_CREATE_CASES = [
    (
        "neither",
        inference_doc,
        _set("inference", None),
        "(root)",
        "exactly one of inference or tuning",
    ),
    (
        "both",
        inference_doc,
        lambda d: d.update(tuning=tuning_doc()["tuning"]),
        "(root)",
        "exactly one of inference or tuning",
    ),
    ("tuning-count", tuning_doc, _set("resource.count", 2), "(root)", "single node"),
    ("name", inference_doc, _set("metadata.name", "Bad_Name"), "(root)", "DNS-1123 label"),
    (
        "empty-selector",
        inference_doc,
        _set("resource.labelSelector", {}),
        "resource.labelSelector",
        "at least one label",
    ),
    (
        "selector-exists",
        inference_doc,
        _set("resource.labelSelector", {"matchExpressions": [{"key": "a", "operator": "Exists"}]}),
        "resource.labelSelector.matchExpressions[0]",
        "'In' expressions",
    ),
    (
        "preset-and-template",
        inference_doc,
        _set("inference.template", {}),
        "inference",
        "preset or inference.template",
    ),
    (
        "duplicate-adapters",
        inference_doc,
        _set("inference.adapters", [_adapter("a"), _adapter("a")]),
        "inference.adapters",
        "must be unique",
    ),
    (
        "adapter-source",
        inference_doc,
        _set("inference.adapters", [{"strength": "1"}]),
        "inference.adapters[0]",
        "source is required",
    ),
    (
        "adapter-name",
        inference_doc,
        _set("inference.adapters.0.source.name", None),
        "inference.adapters[0].source",
        "name is required",
    ),
    (
        "adapter-urls",
        inference_doc,
        _set("inference.adapters.0.source.urls", ["https://x"]),
        "inference.adapters[0].source",
        "URLs are not supported",
    ),
    (
        "adapter-no-image",
        inference_doc,
        _set("inference.adapters.0.source.image", None),
        "inference.adapters[0].source",
        "exactly one of image",
    ),
    (
        "strength-high",
        inference_doc,
        _set("inference.adapters.0.strength", "1.01"),
        "inference.adapters[0].strength",
        "between 0 and 1",
    ),
    (
        "strength-word",
        inference_doc,
        _set("inference.adapters.0.strength", "full"),
        "inference.adapters[0].strength",
        "between 0 and 1",
    ),
    (
        "input-kinds",
        tuning_doc,
        _set("tuning.input.image", "r.example/d:1"),
        "tuning.input",
        "exactly one of urls",
    ),
    (
        "input-scheme",
        tuning_doc,
        _set("tuning.input.urls", ["ftp://x/y"]),
        "tuning.input.urls[0]",
        "http or https",
    ),
    (
        "output-kinds",
        tuning_doc,
        _set("tuning.output", {}),
        "tuning.output",
        "exactly one of image",
    ),
    (
        "push-secret",
        tuning_doc,
        _set("tuning.output.imagePushSecret", None),
        "tuning.output",
        "needs imagePushSecret",
    ),
    (
        "mig-count",
        inference_doc,
        _set("resource.partition", {"mode": "mig", "profile": "1g.10gb", "count": 1}),
        "resource.partition",
        "mig partitions",
    ),
    (
        "accelerator-no-count",
        inference_doc,
        _set("resource.partition", {"mode": "accelerator"}),
        "resource.partition",
        "accelerator partitions",
    ),
]


@needs_cel
@pytest.mark.parametrize(
    ("base", "edit", "path", "fragment"),
    [c[1:] for c in CEL_CREATE_CASES],
    ids=[c[0] for c in CEL_CREATE_CASES],
)
def test_cel_rules_reject_what_the_webhook_rejects(
    base: Any, edit: Any, path: str, fragment: str
) -> None:
    document = edited(base(), edit)
    violations = cel_violations(workspace_schema("v1beta1"), document)
    assert any(p == path and fragment in m for p, m in violations), violations


CEL_UPDATE_CASES = [
    ("count", inference_doc, _set("resource.count", 3), "resource", "count is immutable"),
    (
        "instance-type",
        inference_doc,
        _set("resource.instanceType", "Standard_NC12s_v3"),
        "resource",
        "instanceType cannot be changed",
    ),
    (
        "selector",
        inference_doc,
        _set("resource.labelSelector", {"matchLabels": {"apps": "x"}}),
        "resource.labelSelector",
        "immutable",
    ),
    (
        "partition-added",
        inference_doc,
        _set("resource.partition", {"mode": "mig", "profile": "1g.10gb"}),
        "resource",
        "partition cannot be added",
    ),
    (
        "preset",
        inference_doc,
        _set("inference.preset.name", "phi-3-mini-128k-instruct"),
        "inference.preset",
        "immutable",
    ),
    (
        "template-added",
        inference_doc,
        lambda d: d.update(inference={"template": {}}),
        "inference",
        "template cannot be added",
    ),
    (
        "toggle",
        inference_doc,
        lambda d: (d.pop("inference"), d.update(tuning=tuning_doc()["tuning"])),
        "(root)",
        "cannot be added or removed",
    ),
    (
        "tuning-preset",
        tuning_doc,
        _set("tuning.preset.name", "phi-3-mini-128k-instruct"),
        "tuning.preset",
        "immutable",
    ),
    ("method", tuning_doc, _set("tuning.method", "lora"), "tuning.method", "immutable"),
    (
        "input-name",
        tuning_doc,
        _set("tuning.input.name", "other"),
        "tuning.input",
        "name is immutable",
    ),
]


@needs_cel
@pytest.mark.parametrize(
    ("base", "edit", "path", "fragment"),
    [c[1:] for c in CEL_UPDATE_CASES],
    ids=[c[0] for c in CEL_UPDATE_CASES],
)
def test_cel_transition_rules_keep_fields_immutable(
    base: Any, edit: Any, path: str, fragment: str
) -> None:
    old = base()
    new = edited(old, edit)
    schema = workspace_schema("v1beta1")
    assert not any(fragment in m for _, m in cel_violations(schema, new))  # fine on create
    violations = cel_violations(schema, new, old=old)
    assert any(p == path and fragment in m for p, m in violations), violations


@needs_cel
def test_cel_allows_mutable_updates() -> None:
    old = inference_doc()
    new = edited(
        old,
        lambda d: (
            d["inference"].update(adapters=[_adapter("b")], config="cfg"),
            d["resource"].update(count=1),
        ),
    )
    assert cel_violations(workspace_schema("v1beta1"), new, old=copy.deepcopy(old)) == []


# ---------------------------------------------------------------------------------------------
# Schema validation of the seeds


@pytest.mark.parametrize("name", SEEDS)
def test_seeds_conform_to_the_schema_keywords(name: str) -> None:
    alpha = load_seed(name)
    assert schema_errors(workspace_schema("v1alpha1"), alpha) == []
    assert schema_errors(workspace_schema("v1beta1"), convert(alpha, "v1beta1")) == []


SCHEMA_VIOLATIONS = [
    ("count-type", _set("resource.count", "two"), "resource.count: expected integer"),
    ("count-minimum", _set("resource.count", 0), "resource.count: below 1"),
    ("method-enum", _set("tuning.method", "sft"), "tuning.method: 'sft' not in"),
    (
        "config-pattern",
        _set("tuning.config", "Bad_Name"),
        "tuning.config: 'Bad_Name' does not match",
    ),
    (
        "selector-required",
        _set("resource.labelSelector", None),
        "resource: missing required labelSelector",
    ),
    ("preset-required", _set("tuning.preset", None), "tuning: missing required preset"),
    ("input-required", _set("tuning.input", None), "tuning: missing required input"),
    ("resource-required", _set("resource", None), "(root): missing required resource"),
]


@pytest.mark.parametrize(
    ("edit", "expected"), [c[1:] for c in SCHEMA_VIOLATIONS], ids=[c[0] for c in SCHEMA_VIOLATIONS]
)
def test_schema_keywords_reject_bad_values(edit: Any, expected: str) -> None:
    errors = schema_errors(workspace_schema("v1beta1"), edited(tuning_doc(), edit))
    assert any(e.startswith(expected) for e in errors), errors


def test_schema_bounds_adapters_and_condition_reasons() -> None:
    many = edited(
        inference_doc(), _set("inference.adapters", [_adapter(f"a{i}") for i in range(11)])
    )
    assert schema_errors(workspace_schema("v1beta1"), many) == [
        "inference.adapters: more than 10 items"
    ]
    condition = {
        "type": "X",
        "status": "Maybe",
        "reason": "",
        "message": "",
        "lastTransitionTime": "now",
    }
    errors = schema_errors(
        workspace_schema("v1beta1"), {**inference_doc(), "status": {"conditions": [condition]}}
    )
    assert {e.split(":")[0] for e in errors} == {
        "status.conditions[0].status",
        "status.conditions[0].reason",
        "status.conditions[0].lastTransitionTime",
    }


# ---------------------------------------------------------------------------------------------
# JSON Schema validation of the seeds


@pytest.mark.parametrize("name", SEEDS)
def test_seeds_validate_against_the_schema_with_jsonschema(name: str) -> None:
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is not a dev dependency yet (requested in the report)"
    )
    alpha = load_seed(name)
    jsonschema.validate(alpha, workspace_schema("v1alpha1"))
    jsonschema.validate(convert(alpha, "v1beta1"), workspace_schema("v1beta1"))
    bad = edited(alpha, lambda d: d["resource"].update(count="two"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, workspace_schema("v1alpha1"))
