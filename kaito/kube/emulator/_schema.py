"""Custom resources against their CRD's openAPIV3Schema: pruning, defaulting, validation, CEL.

The order is the apiextensions-apiserver's: unknown fields are pruned (except under
`x-kubernetes-preserve-unknown-fields` and inside embedded resources' metadata), `null` in a
non-nullable field is dropped, defaults fill absent fields, then the value is validated. Every
violation becomes a `FieldError` with the field path kube-apiserver prints (`spec.items[0].name`),
so the 422 a client gets lists the same causes a real cluster would give.

`x-kubernetes-validations` rules are Common Expression Language programs evaluated with `self`
bound to the value at the node and, for transition rules (rules that mention `oldSelf`), the
previous value at the same path on updates; a transition rule is skipped when there is no old
value, as upstream does. CEL comes from the `common-expression-language` distribution (module
`cel`, compiled Rust); it is imported when the first rule is evaluated so the emulator itself
imports without it.
"""

from __future__ import annotations

import base64
import copy
import functools
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kaito.kube.emulator._errors import (
    FIELD_INVALID,
    FIELD_NOT_SUPPORTED,
    FIELD_REQUIRED,
    FIELD_TOO_LONG,
    FIELD_TOO_MANY,
    FieldError,
)

JsonObj = dict[str, Any]
Schema = Mapping[str, Any]

_OLD_SELF = re.compile(r"\boldSelf\b")
_MISSING = object()


def _child_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


# --- pruning and defaulting ------------------------------------------------------------------


def prune(value: Any, schema: Schema | None, *, root: bool = False) -> Any:
    """Drop fields the schema does not declare and nulls it does not allow (returns a copy)."""
    if schema is None:
        return copy.deepcopy(value)
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource")) or root
        out: JsonObj = {}
        for key, sub in value.items():
            if embedded and key in ("apiVersion", "kind", "metadata"):
                out[key] = copy.deepcopy(sub)
                continue
            if isinstance(props, Mapping) and key in props:
                sub_schema = props[key]
            elif isinstance(additional, Mapping):
                sub_schema = additional
            elif additional is True or preserve or schema.get("x-kubernetes-int-or-string"):
                out[key] = copy.deepcopy(sub)
                continue
            else:
                continue
            if sub is None and not sub_schema.get("nullable"):
                continue
            out[key] = prune(sub, sub_schema)
        return out
    if isinstance(value, list):
        items = schema.get("items")
        return [prune(v, items if isinstance(items, Mapping) else None) for v in value]
    return copy.deepcopy(value)


def apply_defaults(value: Any, schema: Schema | None) -> Any:
    """Fill absent fields that declare a `default`, depth first (mutates and returns `value`)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        if isinstance(props, Mapping):
            for key, sub in props.items():
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
        for key, sub_value in value.items():
            if isinstance(props, Mapping) and key in props:
                apply_defaults(sub_value, props[key])
            elif isinstance(schema.get("additionalProperties"), Mapping):
                apply_defaults(sub_value, schema["additionalProperties"])
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for item in value:
                apply_defaults(item, items)
    return value


# --- validation ------------------------------------------------------------------------------

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_IPV4 = re.compile(r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt == "date-time":
            return bool(_DATE_TIME.match(value))
        if fmt == "date":
            datetime.strptime(value, "%Y-%m-%d")
            return True
        if fmt == "uuid":
            uuid.UUID(value)
            return True
        if fmt == "byte":
            base64.b64decode(value, validate=True)
            return True
        if fmt == "ipv4":
            return bool(_IPV4.match(value))
        if fmt == "duration":
            return value == "0" or bool(_DURATION.match(value))
    except ValueError:
        return False
    return True


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "object":
        return isinstance(value, dict)
    if expected == "array":
        return isinstance(value, list)
    if expected == "string":
        return isinstance(value, str)
    if expected == "boolean":
        return isinstance(value, bool)
    if expected == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return True


def _render(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def validate(value: Any, schema: Schema | None, path: str = "") -> list[FieldError]:
    """Structural validation of `value`; returns every violation found."""
    errors: list[FieldError] = []
    if schema is not None:
        _validate(value, schema, path, errors)
    return errors


def _validate(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    shown = path or "<root>"
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            errors.append(
                FieldError(
                    FIELD_INVALID,
                    path,
                    f'{shown} in body must be of type {schema["type"]}: "null"',
                    "null",
                )
            )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))):
            errors.append(
                FieldError(
                    FIELD_INVALID,
                    path,
                    f'{shown} in body must be of type integer,string: "{_type_name(value)}"',
                    _type_name(value),
                )
            )
            return
    elif schema.get("type") and not _type_ok(str(schema["type"]), value):
        errors.append(
            FieldError(
                FIELD_INVALID,
                path,
                f'{shown} in body must be of type {schema["type"]}: "{_type_name(value)}"',
                _type_name(value),
            )
        )
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and value not in enum:
        supported = ", ".join(_render(v) for v in enum)
        errors.append(
            FieldError(FIELD_NOT_SUPPORTED, path, f"supported values: {supported}", value)
        )
    if isinstance(value, str):
        _validate_string(value, schema, path, shown, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, path, shown, errors)
    elif isinstance(value, list):
        _validate_array(value, schema, path, shown, errors)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, shown, errors)
    _validate_combinators(value, schema, path, shown, errors)


def _validate_string(
    value: str, schema: Schema, path: str, shown: str, errors: list[FieldError]
) -> None:
    max_len = schema.get("maxLength")
    if isinstance(max_len, int) and len(value) > max_len:
        errors.append(FieldError(FIELD_TOO_LONG, path, f"may not be more than {max_len} bytes"))
    min_len = schema.get("minLength")
    if isinstance(min_len, int) and len(value) < min_len:
        errors.append(
            FieldError(
                FIELD_INVALID,
                path,
                f"{shown} in body should be at least {min_len} chars long",
                value,
            )
        )
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and not _compiled(pattern).search(value):
        errors.append(
            FieldError(FIELD_INVALID, path, f"{shown} in body should match '{pattern}'", value)
        )
    fmt = schema.get("format")
    if isinstance(fmt, str) and not _format_ok(fmt, value):
        errors.append(
            FieldError(
                FIELD_INVALID,
                path,
                f"{shown} in body must be of type {fmt}: {_render(value)}",
                value,
            )
        )


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _validate_number(
    value: float, schema: Schema, path: str, shown: str, errors: list[FieldError]
) -> None:
    maximum = schema.get("maximum")
    if isinstance(maximum, int | float):
        if schema.get("exclusiveMaximum") and value >= maximum:
            errors.append(
                FieldError(
                    FIELD_INVALID, path, f"{shown} in body should be less than {maximum}", value
                )
            )
        elif value > maximum:
            errors.append(
                FieldError(
                    FIELD_INVALID,
                    path,
                    f"{shown} in body should be less than or equal to {maximum}",
                    value,
                )
            )
    minimum = schema.get("minimum")
    if isinstance(minimum, int | float):
        if schema.get("exclusiveMinimum") and value <= minimum:
            errors.append(
                FieldError(
                    FIELD_INVALID, path, f"{shown} in body should be greater than {minimum}", value
                )
            )
        elif value < minimum:
            errors.append(
                FieldError(
                    FIELD_INVALID,
                    path,
                    f"{shown} in body should be greater than or equal to {minimum}",
                    value,
                )
            )
    multiple = schema.get("multipleOf")
    if isinstance(multiple, int | float) and multiple and value % multiple:
        errors.append(
            FieldError(
                FIELD_INVALID, path, f"{shown} in body should be a multiple of {multiple}", value
            )
        )


def _validate_array(
    value: list[Any], schema: Schema, path: str, shown: str, errors: list[FieldError]
) -> None:
    max_items = schema.get("maxItems")
    if isinstance(max_items, int) and len(value) > max_items:
        errors.append(
            FieldError(FIELD_TOO_MANY, path, f"{len(value)}: must have at most {max_items} items")
        )
    min_items = schema.get("minItems")
    if isinstance(min_items, int) and len(value) < min_items:
        errors.append(
            FieldError(
                FIELD_INVALID,
                path,
                f"{shown} in body should have at least {min_items} items",
                _type_name(value),
            )
        )
    items = schema.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            _validate(item, items, f"{path}[{i}]", errors)
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or ()
        seen: set[tuple[Any, ...]] = set()
        for i, item in enumerate(value):
            if isinstance(item, dict):
                key = tuple(str(item.get(k)) for k in keys)
                if key in seen:
                    errors.append(FieldError("FieldValueDuplicate", f"{path}[{i}]", "", dict(item)))
                seen.add(key)


def _validate_object(
    value: JsonObj, schema: Schema, path: str, shown: str, errors: list[FieldError]
) -> None:
    for name in schema.get("required") or ():
        if name not in value:
            errors.append(FieldError(FIELD_REQUIRED, _child_path(path, name)))
    props = schema.get("properties")
    additional = schema.get("additionalProperties")
    for key, sub in value.items():
        if not path and key in ("apiVersion", "kind", "metadata"):
            continue
        if isinstance(props, Mapping) and key in props:
            _validate(sub, props[key], _child_path(path, key), errors)
        elif isinstance(additional, Mapping):
            _validate(sub, additional, f"{path}[{key}]" if path else key, errors)
    max_props = schema.get("maxProperties")
    if isinstance(max_props, int) and len(value) > max_props:
        errors.append(
            FieldError(FIELD_TOO_MANY, path, f"{len(value)}: must have at most {max_props} items")
        )
    min_props = schema.get("minProperties")
    if isinstance(min_props, int) and len(value) < min_props:
        errors.append(
            FieldError(
                FIELD_INVALID,
                path,
                f"{shown} in body should have at least {min_props} properties",
                "object",
            )
        )


def _validate_combinators(
    value: Any, schema: Schema, path: str, shown: str, errors: list[FieldError]
) -> None:
    for sub in schema.get("allOf") or ():
        _validate(value, sub, path, errors)
    any_of = schema.get("anyOf")
    if any_of and not any(not validate(value, s, path) for s in any_of):
        errors.append(
            FieldError(
                FIELD_INVALID,
                path,
                f"{shown} in body must match at least one schema in anyOf",
                _type_name(value),
            )
        )
    one_of = schema.get("oneOf")
    if one_of and sum(1 for s in one_of if not validate(value, s, path)) != 1:
        errors.append(
            FieldError(
                FIELD_INVALID,
                path,
                f"{shown} in body must match exactly one schema in oneOf",
                _type_name(value),
            )
        )
    negated = schema.get("not")
    if isinstance(negated, Mapping) and not validate(value, negated, path):
        errors.append(
            FieldError(
                FIELD_INVALID,
                path,
                f"{shown} in body must not match the schema in not",
                _type_name(value),
            )
        )


# --- CEL rules -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _program(rule: str) -> Any:
    import cel  # deferred: only CRDs with x-kubernetes-validations need it

    return cel.compile(rule)


def compile_rules(schema: Schema | None) -> list[FieldError]:
    """Compile every rule of a CRD schema; a rule that does not compile makes the CRD invalid."""
    errors: list[FieldError] = []

    def visit(node: Any, path: str) -> None:
        if not isinstance(node, Mapping):
            return
        for i, rule in enumerate(node.get("x-kubernetes-validations") or ()):
            text = rule.get("rule") if isinstance(rule, Mapping) else None
            where = f"{path}.x-kubernetes-validations[{i}].rule"
            if not isinstance(text, str) or not text:
                errors.append(FieldError(FIELD_REQUIRED, where))
                continue
            try:
                _program(text)
            except Exception as err:
                errors.append(FieldError(FIELD_INVALID, where, f"compilation failed: {err}", text))
        for key, sub in (node.get("properties") or {}).items():
            visit(sub, f"{path}.properties[{key}]")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), Mapping):
                visit(node[key], f"{path}.{key}")

    visit(schema, "spec.validation.openAPIV3Schema")
    return errors


def check_rules(value: Any, schema: Schema | None, *, old: Any = _MISSING) -> list[FieldError]:
    """Evaluate every `x-kubernetes-validations` rule that applies to `value`.

    `old` is the previous object on updates; without it transition rules are skipped.
    """
    errors: list[FieldError] = []
    if schema is not None:
        _check(value, old, schema, "", errors)
    return errors


def _check(value: Any, old: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if value is None:
        return
    for rule in schema.get("x-kubernetes-validations") or ():
        _evaluate(rule, value, old, schema, path, errors)
    props = schema.get("properties")
    if isinstance(value, dict):
        additional = schema.get("additionalProperties")
        for key, sub in value.items():
            old_sub = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
            if isinstance(props, Mapping) and key in props:
                _check(sub, old_sub, props[key], _child_path(path, key), errors)
            elif isinstance(additional, Mapping):
                _check(sub, old_sub, additional, f"{path}[{key}]" if path else key, errors)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        items = schema["items"]
        keys = schema.get("x-kubernetes-list-map-keys") or ()
        for i, item in enumerate(value):
            _check(item, _old_item(item, old, schema, keys), items, f"{path}[{i}]", errors)


def _old_item(item: Any, old: Any, schema: Schema, keys: Any) -> Any:
    """The previous version of a list item, correlated by map keys (other lists: none)."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old, list) or not keys:
        return _MISSING
    if not isinstance(item, dict):
        return _MISSING
    for candidate in old:
        if isinstance(candidate, dict) and all(candidate.get(k) == item.get(k) for k in keys):
            return candidate
    return _MISSING


def _evaluate(
    rule: Mapping[str, Any],
    value: Any,
    old: Any,
    schema: Schema,
    path: str,
    errors: list[FieldError],
) -> None:
    text = str(rule.get("rule", ""))
    transition = bool(_OLD_SELF.search(text))
    if transition and old is _MISSING:
        return
    context: JsonObj = {"self": value}
    if transition:
        context["oldSelf"] = old
    field_path = str(rule.get("fieldPath") or "")
    where = path + field_path if field_path.startswith((".", "[")) else path
    reason = str(rule.get("reason") or FIELD_INVALID)
    shown = str(schema.get("type") or _type_name(value))
    try:
        ok = _program(text).execute(context)
    except Exception as err:
        errors.append(FieldError(reason, where, f"{_describe(err)} evaluating rule: {text}", shown))
        return
    if ok is True:
        return
    message = str(rule.get("message") or f"failed rule: {text}")
    expression = rule.get("messageExpression")
    if isinstance(expression, str) and expression:
        try:
            produced = _program(expression).execute(context)
            if isinstance(produced, str) and produced.strip():
                message = produced
        except Exception:
            pass
    errors.append(FieldError(reason, where, message, shown))


def _describe(err: Exception) -> str:
    if isinstance(err, KeyError):
        return f"no such key: {err.args[0] if err.args else ''}"
    return str(err) or type(err).__name__
