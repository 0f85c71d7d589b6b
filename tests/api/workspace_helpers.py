"""Shared helpers for the kaito.api tests: seed documents, base documents, and a CEL checker.

The CEL checker walks a CRD schema alongside an object (and, for updates, the old object) and
evaluates every `x-kubernetes-validations` rule where the API server would: at each node that
is present, with `oldSelf` rules only where an old value exists at the same place. It uses the
`cel` package (common-expression-language) when installed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

SEED_DIR = Path(__file__).resolve().parent.parent / "data" / "seed"
SEEDS = ("phi-3-inference.yaml", "phi-3-tuning.yaml", "phi-3-adapters.yaml")


def load_seed(name: str) -> dict[str, Any]:
    data = yaml.safe_load((SEED_DIR / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def inference_doc() -> dict[str, Any]:
    """A valid v1beta1 inference workspace with one adapter."""
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws-infer", "namespace": "team-a"},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": "phi-3"}},
        },
        "inference": {
            "preset": {"name": "phi-3-mini-4k-instruct"},
            "adapters": [
                {
                    "source": {"name": "adapter-a", "image": "registry.example/adapters/a:1"},
                    "strength": "0.5",
                }
            ],
        },
    }


def tuning_doc() -> dict[str, Any]:
    """A valid v1beta1 tuning workspace."""
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": "ws-tune", "namespace": "team-a"},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": "phi-3"}},
        },
        "tuning": {
            "preset": {"name": "phi-3-mini-4k-instruct"},
            "method": "qlora",
            "input": {"name": "dolly", "urls": ["https://data.example.com/train.parquet"]},
            "output": {"image": "registry.example/out/phi-3:1", "imagePushSecret": "push-creds"},
        },
    }


def edited(doc: dict[str, Any], edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    result = copy.deepcopy(doc)
    edit(result)
    return result


# ---------------------------------------------------------------------------------------------
# CEL


def cel_violations(
    schema: dict[str, Any], obj: Any, old: Any = None, path: str = ""
) -> list[tuple[str, str]]:
    """Every (path, message) of a CEL rule that does not hold for `obj` (given `old`)."""
    import cel

    found: list[tuple[str, str]] = []
    for rule in schema.get("x-kubernetes-validations", []):
        expression = rule["rule"]
        if "oldSelf" in expression:
            if old is None:
                continue
            context = {"self": obj, "oldSelf": old}
        else:
            context = {"self": obj}
        try:
            ok = cel.evaluate(expression, context)
        except Exception as exc:  # an evaluation error rejects the object, as in the API server
            ok = f"error: {exc}"
        if ok is not True:
            found.append((path or "(root)", rule["message"]))
    if isinstance(obj, dict) and "properties" in schema:
        for key, value in obj.items():
            child = schema["properties"].get(key)
            if child is not None:
                old_value = old.get(key) if isinstance(old, dict) else None
                found += cel_violations(child, value, old_value, f"{path}.{key}" if path else key)
    elif isinstance(obj, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in obj.items():
            old_value = old.get(key) if isinstance(old, dict) else None
            found += cel_violations(
                schema["additionalProperties"], value, old_value, f"{path}[{key}]"
            )
    elif isinstance(obj, list) and "items" in schema:
        # Only map-type lists correlate old and new items; others run no transition rules.
        for index, value in enumerate(obj):
            found += cel_violations(schema["items"], value, None, f"{path}[{index}]")
    return found


# ---------------------------------------------------------------------------------------------
# kubectl-style printing


_FILTER = re.compile(r'^\.status\.conditions\[\?\(@\.type=="(?P<type>[A-Za-z]+)"\)\]\.status$')


def column_value(obj: dict[str, Any], json_path: str) -> str:
    """Evaluate the JSONPath forms used by the printer columns (field chains and one filter)."""
    match = _FILTER.match(json_path)
    if match:
        for condition in obj.get("status", {}).get("conditions", []):
            if condition.get("type") == match["type"]:
                return str(condition.get("status", ""))
        return ""
    value: Any = obj
    for part in json_path.strip(".").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


# ---------------------------------------------------------------------------------------------
# Schema conformance (the OpenAPI keywords the CRD uses), for when jsonschema is not installed

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def schema_errors(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """What in `value` breaks the schema's type, enum, required, pattern and bound keywords."""
    where = path or "(root)"
    kind = schema.get("type")
    if kind and not _JSON_TYPES[kind](value):
        return [f"{where}: expected {kind}, got {type(value).__name__}"]
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) > schema.get("maxLength", len(value)):
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
    if isinstance(value, int) and "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{where}: below {schema['minimum']}")
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{where}: more than {schema['maxItems']} items")
        for index, item in enumerate(value):
            errors += schema_errors(schema.get("items", {}), item, f"{path}[{index}]")
    if isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing required {key}")
        properties = schema.get("properties", {})
        for key, child in value.items():
            here = f"{path}.{key}" if path else key
            if key in properties:
                errors += schema_errors(properties[key], child, here)
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += schema_errors(schema["additionalProperties"], child, f"{path}[{key}]")
    return errors
