"""The three classic patch formats: JSON merge patch, JSON patch, strategic merge patch.

All three are pure functions from (current object, patch) to a new object; they never mutate
their inputs, so the store can apply them to its stored snapshot inside one atomic write.
Errors carry the status code kube-apiserver answers with: a malformed patch document is a 400,
a JSON patch that does not apply to this object (a failed `test`, a missing path) is a 422.

Strategic merge patch needs the merge facts of the kind (`Shape`); it implements the directives
clients actually send: `$patch: delete|replace|merge`, `$retainKeys`,
`$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` (order is accepted and the
order of the patch list is honoured where the list is merged).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kaito.kube.emulator._errors import bad_request, unprocessable
from kaito.kube.emulator._shapes import Shape

JsonObj = dict[str, Any]


# --- RFC 7386 merge patch --------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch; `null` deletes, objects merge, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JsonObj = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 JSON patch ---------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise bad_request(f"invalid JSON patch path {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f'JSON pointer must be empty or start with a "/": {path!r}')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(token: str, size: int, *, allow_end: bool, path: str) -> int:
    if token == "-" and allow_end:
        return size
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise unprocessable(f"invalid array index {token!r} in {path}")
    idx = int(token)
    if idx > size or (idx == size and not allow_end):
        raise unprocessable(f"index {idx} out of bounds in {path}")
    return idx


def _parent(doc: Any, parts: list[str], path: str, op: str) -> Any:
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, dict):
            if part not in cur:
                raise unprocessable(f'{op} operation does not apply: doc is missing path: "{path}"')
            cur = cur[part]
        elif isinstance(cur, list):
            cur = cur[_index(part, len(cur), allow_end=False, path=path)]
        else:
            raise unprocessable(f'{op} operation does not apply: doc is missing path: "{path}"')
    return cur


def _get(doc: Any, parts: list[str], path: str, op: str) -> Any:
    if not parts:
        return doc
    parent = _parent(doc, parts, path, op)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(f"{op} operation does not apply: doc is missing key: {path}")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(last, len(parent), allow_end=False, path=path)]
    raise unprocessable(f"{op} operation does not apply: doc is missing key: {path}")


def _add(doc: Any, parts: list[str], value: Any, path: str, op: str = "add") -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts, path, op)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), allow_end=True, path=path), value)
    else:
        raise unprocessable(f'{op} operation does not apply: doc is missing path: "{path}"')
    return doc


def _remove(doc: Any, parts: list[str], path: str, op: str = "remove") -> Any:
    if not parts:
        raise unprocessable(f"{op} operation does not apply: cannot remove the whole document")
    parent = _parent(doc, parts, path, op)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise unprocessable(f"unable to remove nonexistent key: {last}: missing value")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(last, len(parent), allow_end=False, path=path)]
    else:
        raise unprocessable(f"{op} operation does not apply: doc is missing path: {path}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """Apply an RFC 6902 patch to a deep copy of `target`."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    if len(operations) > 10000:
        raise bad_request(
            f"The allowed maximum operations in a JSON patch is 10000, got {len(operations)}"
        )
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op:
            raise bad_request("invalid JSON patch operation: missing 'op'")
        kind = op["op"]
        path = op.get("path")
        parts = _pointer(path)
        if kind == "add":
            if "value" not in op:
                raise unprocessable("add operation has no value")
            doc = _add(doc, parts, copy.deepcopy(op["value"]), str(path))
        elif kind == "remove":
            doc = _remove(doc, parts, str(path))
        elif kind == "replace":
            if "value" not in op:
                raise unprocessable("replace operation has no value")
            _get(doc, parts, str(path), "replace")
            if parts:
                parent = _parent(doc, parts, str(path), "replace")
                if isinstance(parent, list):
                    parent[_index(parts[-1], len(parent), allow_end=False, path=str(path))] = (
                        copy.deepcopy(op["value"])
                    )
                else:
                    parent[parts[-1]] = copy.deepcopy(op["value"])
            else:
                doc = copy.deepcopy(op["value"])
        elif kind in ("move", "copy"):
            src_path = op.get("from")
            src = _pointer(src_path)
            value = copy.deepcopy(_get(doc, src, str(src_path), kind))
            if kind == "move":
                doc = _remove(doc, src, str(src_path), "move")
            doc = _add(doc, parts, value, str(path), kind)
        elif kind == "test":
            try:
                have = _get(doc, parts, str(path), "test")
            except Exception:
                raise unprocessable(f"testing value {path} failed: test failed") from None
            want = op.get("value")
            same = have == want and (
                type(have) is type(want) or (_is_number(have) and _is_number(want))
            )
            if not same:
                raise unprocessable(f"testing value {path} failed: test failed")
        else:
            raise bad_request(f"Unexpected kind: {kind}")
    return doc


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# --- strategic merge patch -------------------------------------------------------------------

_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_ELEMENT_ORDER = "$setElementOrder/"


def strategic_merge_patch(target: JsonObj, patch: Any, shape: Shape) -> JsonObj:
    """Apply a strategic merge patch to `target` (never mutated) using the kind's merge facts."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    result = _smp_map(target, patch, shape)
    if result is None:
        raise bad_request("a strategic merge patch cannot delete the whole object")
    return result


def _strip(value: Any) -> Any:
    """A patch value with its directives removed, for places where it replaces outright."""
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if k not in (_DIRECTIVE, _RETAIN)
            and not k.startswith(_DELETE_PRIMITIVE)
            and not k.startswith(_ELEMENT_ORDER)
        }
    if isinstance(value, list):
        return [_strip(v) for v in value if not (isinstance(v, dict) and _DIRECTIVE in v)]
    return copy.deepcopy(value)


def _smp_map(original: Any, patch: JsonObj, shape: Shape) -> JsonObj | None:
    directive = patch.get(_DIRECTIVE)
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip(patch)  # type: ignore[no-any-return]
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive}")
    result: JsonObj = dict(original) if isinstance(original, dict) else {}
    if shape.atomic_map:
        return _strip(patch)  # type: ignore[no-any-return]
    deletes: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN) or key.startswith(_ELEMENT_ORDER):
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            if not isinstance(value, list):
                raise bad_request(f"{key} must be a list")
            deletes[key[len(_DELETE_PRIMITIVE) :]] = value
            continue
        child = shape.child(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _smp_map(result.get(key), value, child)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _smp_list(result.get(key), value, child, key)
        else:
            result[key] = copy.deepcopy(value)
    for key, values in deletes.items():
        current = result.get(key)
        if isinstance(current, list):
            result[key] = [v for v in current if v not in values]
    retain = patch.get(_RETAIN)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(original: Any, patch: list[Any], shape: Shape, name: str) -> list[Any]:
    current = original if isinstance(original, list) else []
    if shape.merge_key is not None and shape.list_type == "map":
        return _merge_keyed(current, patch, shape, name)
    if shape.merge_primitives:
        if any(isinstance(v, dict) and v.get(_DIRECTIVE) == "replace" for v in patch):
            return [copy.deepcopy(v) for v in patch if not isinstance(v, dict)]
        out = list(current)
        for v in patch:
            if v not in out:
                out.append(copy.deepcopy(v))
        return out
    return _strip(patch)  # type: ignore[no-any-return]


def _merge_keyed(current: list[Any], patch: list[Any], shape: Shape, name: str) -> list[Any]:
    key = shape.merge_key
    assert key is not None
    if any(isinstance(v, dict) and v.get(_DIRECTIVE) == "replace" and len(v) == 1 for v in patch):
        return [_strip(v) for v in patch if not (isinstance(v, dict) and _DIRECTIVE in v)]
    out = [copy.deepcopy(v) for v in current]
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"{name}: list items must be objects to merge on key {key!r}")
        if key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        pos = next(
            (i for i, v in enumerate(out) if isinstance(v, dict) and v.get(key) == item[key]),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            out = [v for v in out if not (isinstance(v, dict) and v.get(key) == item[key])]
            continue
        if pos is None:
            merged = _smp_map({}, item, shape.item())
            if merged is not None:
                out.append(merged)
        else:
            merged = _smp_map(out[pos], item, shape.item())
            if merged is None:
                del out[pos]
            else:
                out[pos] = merged
    return out


def parse_json(body: bytes) -> Any:
    """Decode a JSON request body, with the server's 400 for malformed input."""
    try:
        return json.loads(body or b"null")
    except ValueError as err:
        raise bad_request(f"error decoding JSON: {err}") from None
