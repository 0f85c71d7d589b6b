"""Field ownership: field sets, the FieldsV1 wire format, and server-side apply.

A field set is a set of paths; a path is a tuple of elements, each `("f", name)` for a map or
struct field, `("k", '{"name":"c"}')` for an item of a keyed list, `("v", '"x"')` for a member of
a set list, or `("i", "0")` for a list index. This is the model of structured-merge-diff, and it
serialises to FieldsV1 (`{"f:spec": {"f:replicas": {}}}`), where `"."` marks a node that is owned
itself as well as having owned children.

`apply` is server-side apply as far as clients can observe it: the applied configuration is
merged into the live object (keyed lists merge by their keys, sets union, the rest replaces);
fields another manager owns with a different value are conflicts (409 unless `force`, which
takes them over); fields the manager applied before but no longer applies are removed unless
someone else still owns them. `track_update` records ownership for ordinary writes (create,
update, patch): the writer takes every field it changed from whoever owned it.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

from kaito.kube.emulator._errors import ApiError
from kaito.kube.emulator._shapes import Shape

PathElem = tuple[str, str]
Path = tuple[PathElem, ...]
JsonObj = dict[str, Any]

# Fields nobody owns: identity and server-maintained metadata.
_IGNORED_TOP = frozenset({"apiVersion", "kind"})
_IGNORED_META = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


def _key_of(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    return json.dumps({k: item.get(k) for k in sorted(keys)}, separators=(",", ":"))


def _value_key(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def leaves(obj: Any, shape: Shape, prefix: Path = ()) -> dict[Path, Any]:
    """Every owned path of `obj` with the value found there (items and sets map to None)."""
    out: dict[Path, Any] = {}
    _walk(obj, shape, prefix, out)
    return out


def _walk(value: Any, shape: Shape, prefix: Path, out: dict[Path, Any]) -> None:
    if isinstance(value, dict) and not shape.atomic_map:
        if not value and prefix:
            out[prefix] = {}
            return
        for k, v in value.items():
            path = (*prefix, ("f", k))
            child = shape.child(k)
            if isinstance(v, dict) and v and not child.atomic_map:
                _walk(v, child, path, out)
            elif isinstance(v, list) and child.list_type == "map" and child.keys and v:
                for item in v:
                    if not isinstance(item, dict):
                        out[path] = copy.deepcopy(v)
                        break
                    ipath = (*path, ("k", _key_of(item, child.keys)))
                    out[ipath] = None
                    _walk(item, child.item(), ipath, out)
            elif isinstance(v, list) and child.list_type == "set" and v:
                for item in v:
                    out[(*path, ("v", _value_key(item)))] = None
            else:
                out[path] = v
        return
    out[prefix] = value


def object_leaves(obj: Mapping[str, Any], shape: Shape, scope: str) -> dict[Path, Any]:
    """Owned paths of a whole object, restricted to `scope` ("main", "status" or "all")."""
    trimmed: JsonObj = {}
    for k, v in obj.items():
        if k in _IGNORED_TOP:
            continue
        if k == "metadata" and isinstance(v, dict):
            meta = {mk: mv for mk, mv in v.items() if mk not in _IGNORED_META}
            if meta:
                trimmed[k] = meta
            continue
        if scope == "main" and k == "status":
            continue
        trimmed[k] = v
    if scope == "status":
        trimmed = {"status": obj["status"]} if "status" in obj else {}
    return leaves(trimmed, shape) if trimmed else {}


# --- FieldsV1 --------------------------------------------------------------------------------


def encode(paths: set[Path]) -> JsonObj:
    """A FieldsV1 document for a set of paths."""
    root: JsonObj = {}
    for path in sorted(paths):
        node = root
        for kind, name in path:
            node = node.setdefault(f"{kind}:{name}", {})
    # A node that is itself in the set and also has children carries ".".
    for path in paths:
        node = root
        for kind, name in path:
            node = node[f"{kind}:{name}"]
        if node and "." not in node:
            node["."] = {}
    return root


def decode(doc: Mapping[str, Any] | None) -> set[Path]:
    """The set of paths a FieldsV1 document names."""
    out: set[Path] = set()

    def visit(node: Mapping[str, Any], prefix: Path) -> None:
        for key, child in node.items():
            if key == ".":
                out.add(prefix)
                continue
            kind, _, name = key.partition(":")
            path = (*prefix, (kind, name))
            if isinstance(child, Mapping) and child:
                visit(child, path)
            else:
                out.add(path)

    visit(doc or {}, ())
    return out


def render_path(path: Path) -> str:
    """A path as kube-apiserver prints it in conflict messages (`.spec.containers[name="c"]`)."""
    parts: list[str] = []
    for kind, name in path:
        if kind == "f":
            parts.append(f".{name}")
        elif kind == "k":
            fields = json.loads(name)
            parts.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in fields.items()) + "]")
        elif kind == "v":
            parts.append(f"[{name}]")
        else:
            parts.append(f"[{name}]")
    return "".join(parts)


# --- managedFields entries -------------------------------------------------------------------


class Managers:
    """The managedFields of one object as a mutable working copy."""

    def __init__(self, entries: list[JsonObj] | None) -> None:
        self.entries: list[tuple[JsonObj, set[Path]]] = []
        for entry in entries or []:
            if not isinstance(entry, dict) or not entry.get("manager"):
                continue
            meta = {k: v for k, v in entry.items() if k != "fieldsV1"}
            self.entries.append((meta, decode(entry.get("fieldsV1"))))

    def find(self, manager: str, operation: str, subresource: str) -> set[Path] | None:
        for meta, paths in self.entries:
            if (
                meta.get("manager") == manager
                and meta.get("operation") == operation
                and meta.get("subresource", "") == subresource
            ):
                return paths
        return None

    def others(
        self, manager: str, operation: str, subresource: str
    ) -> Iterator[tuple[JsonObj, set[Path]]]:
        for meta, paths in self.entries:
            if (
                meta.get("manager") == manager
                and meta.get("operation") == operation
                and meta.get("subresource", "") == subresource
            ):
                continue
            yield meta, paths

    def set(
        self,
        manager: str,
        operation: str,
        subresource: str,
        api_version: str,
        now: str,
        paths: set[Path],
    ) -> None:
        meta: JsonObj = {
            "manager": manager,
            "operation": operation,
            "apiVersion": api_version,
            "time": now,
            "fieldsType": "FieldsV1",
        }
        if subresource:
            meta["subresource"] = subresource
        for i, (old, _) in enumerate(self.entries):
            if (
                old.get("manager") == manager
                and old.get("operation") == operation
                and old.get("subresource", "") == subresource
            ):
                self.entries[i] = (meta, paths)
                return
        self.entries.append((meta, paths))

    def render(self) -> list[JsonObj]:
        out: list[JsonObj] = []
        for meta, paths in self.entries:
            if not paths:
                continue
            entry = dict(meta)
            entry["fieldsV1"] = encode(paths)
            out.append(entry)
        return out


def _covers(owned: set[Path], path: Path) -> bool:
    """Whether `owned` holds `path` or anything below it."""
    n = len(path)
    return any(p[:n] == path for p in owned)


def track_update(
    managers: Managers,
    manager: str,
    subresource: str,
    api_version: str,
    now: str,
    old: dict[Path, Any],
    new: dict[Path, Any],
) -> None:
    """Record an ordinary write: `manager` takes the fields it changed; removed fields go."""
    changed = {p for p, v in new.items() if p not in old or old[p] != v}
    removed = {p for p in old if p not in new}
    for _, paths in managers.entries:
        paths.difference_update(changed)
        paths.difference_update(removed)
        if removed:
            paths.difference_update({p for p in paths if any(p[: len(r)] == r for r in removed)})
    mine = managers.find(manager, "Update", subresource)
    if changed or mine:
        managers.set(manager, "Update", subresource, api_version, now, (mine or set()) | changed)


# --- server-side apply -----------------------------------------------------------------------


def apply_merge(live: Any, config: Any, shape: Shape) -> Any:
    """Merge an applied configuration into the live value (structured merge)."""
    if isinstance(config, dict) and isinstance(live, dict) and not shape.atomic_map:
        out = dict(live)
        for k, v in config.items():
            out[k] = apply_merge(live.get(k), v, shape.child(k))
        return out
    if isinstance(config, list) and isinstance(live, list):
        if shape.list_type == "map" and shape.keys and all(isinstance(i, dict) for i in config):
            merged = list(live)
            for item in config:
                key = _key_of(item, shape.keys)
                pos = next(
                    (
                        i
                        for i, cur in enumerate(merged)
                        if isinstance(cur, dict) and _key_of(cur, shape.keys) == key
                    ),
                    None,
                )
                if pos is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[pos] = apply_merge(merged[pos], item, shape.item())
            return merged
        if shape.list_type == "set":
            merged = list(live)
            for item in config:
                if item not in merged:
                    merged.append(copy.deepcopy(item))
            return merged
    return copy.deepcopy(config)


def _lookup(obj: Any, path: Path, shape: Shape) -> tuple[bool, Any]:
    cur = obj
    sh = shape
    for kind, name in path:
        if kind == "f":
            if not isinstance(cur, dict) or name not in cur:
                return False, None
            cur, sh = cur[name], sh.child(name)
        elif kind == "k":
            if not isinstance(cur, list):
                return False, None
            found = next(
                (i for i in cur if isinstance(i, dict) and _key_of(i, sh.keys) == name), None
            )
            if found is None:
                return False, None
            cur, sh = found, sh.item()
        elif kind == "v":
            if not isinstance(cur, list) or not any(_value_key(i) == name for i in cur):
                return False, None
            return True, None
        else:
            if not isinstance(cur, list) or int(name) >= len(cur):
                return False, None
            cur, sh = cur[int(name)], sh.item()
    return True, cur


def remove_path(obj: Any, path: Path, shape: Shape) -> None:
    """Delete the field, list item or set member at `path` from `obj` in place."""
    if not path:
        return
    parent_path, (kind, name) = path[:-1], path[-1]
    found, parent = _lookup(obj, parent_path, shape)
    if not found:
        return
    sh = shape
    for k, n in parent_path:
        sh = sh.child(n) if k == "f" else sh.item()
    if kind == "f" and isinstance(parent, dict):
        parent.pop(name, None)
    elif kind == "k" and isinstance(parent, list):
        parent[:] = [i for i in parent if not (isinstance(i, dict) and _key_of(i, sh.keys) == name)]
    elif kind == "v" and isinstance(parent, list):
        parent[:] = [i for i in parent if _value_key(i) != name]


def _prune_empty(obj: Any, path: Path, shape: Shape) -> None:
    """After a removal, drop maps that the removal left empty (as structured merge does)."""
    for depth in range(len(path) - 1, 0, -1):
        sub = path[:depth]
        found, value = _lookup(obj, sub, shape)
        if found and isinstance(value, dict | list) and not value and sub[-1][0] == "f":
            remove_path(obj, sub, shape)
        else:
            break


class ApplyConflict(ApiError):
    """A 409 from server-side apply naming every conflicting field and its manager."""

    def __init__(self, conflicts: list[tuple[str, str, Path]]) -> None:
        n = len(conflicts)
        by_manager: dict[tuple[str, str], list[Path]] = {}
        for manager, api_version, path in conflicts:
            by_manager.setdefault((manager, api_version), []).append(path)
        if n == 1:
            manager, api_version, path = conflicts[0]
            message = (
                f'Apply failed with 1 conflict: conflict with "{manager}" using {api_version}: '
                f"{render_path(path)}"
            )
        else:
            chunks = []
            for (manager, api_version), paths in by_manager.items():
                lines = "\n".join(f"- {render_path(p)}" for p in sorted(paths))
                chunks.append(f'conflicts with "{manager}" using {api_version}:\n{lines}')
            message = f"Apply failed with {n} conflicts: " + "\n".join(chunks)
        causes = [
            {
                "reason": "FieldManagerConflict",
                "message": f'conflict with "{manager}" using {api_version}',
                "field": render_path(path),
            }
            for manager, api_version, path in conflicts
        ]
        super().__init__(409, "Conflict", message, {"causes": causes})


def server_side_apply(
    live: JsonObj,
    config: JsonObj,
    shape: Shape,
    managers: Managers,
    manager: str,
    subresource: str,
    api_version: str,
    now: str,
    *,
    force: bool,
    scope: str,
) -> JsonObj:
    """Apply `config` as `manager` onto `live`; returns the new object, updates `managers`."""
    applied = object_leaves(config, shape, scope)
    applied_paths = set(applied)
    conflicts: list[tuple[str, str, Path]] = []
    for meta, owned in managers.others(manager, "Apply", subresource):
        if meta.get("manager") == manager:
            continue
        for path in applied_paths & owned:
            found, current = _lookup(live, path, shape)
            if found and current != applied[path] and path[-1][0] not in ("k", "v"):
                conflicts.append((str(meta["manager"]), str(meta.get("apiVersion", "")), path))
    if conflicts and not force:
        raise ApplyConflict(sorted(conflicts, key=lambda c: (c[0], c[2])))
    taken = {c[2] for c in conflicts}
    for _, owned in managers.others(manager, "Apply", subresource):
        owned.difference_update(taken)

    scoped_config = dict(config)
    if scope == "main":
        scoped_config.pop("status", None)
    elif scope == "status":
        scoped_config = {"status": config["status"]} if "status" in config else {}
    meta_cfg = scoped_config.get("metadata")
    if isinstance(meta_cfg, dict):
        scoped_config["metadata"] = {
            k: v
            for k, v in meta_cfg.items()
            if k not in _IGNORED_META or k in ("name", "namespace")
        }
    result = apply_merge(live, scoped_config, shape)
    assert isinstance(result, dict)
    result = copy.deepcopy(result)

    previous = managers.find(manager, "Apply", subresource) or set()
    others_owned: set[Path] = set()
    for _, owned in managers.others(manager, "Apply", subresource):
        others_owned |= owned
    dropped = sorted(previous - applied_paths, key=len, reverse=True)
    for path in dropped:
        if _covers(others_owned, path) or _covers(applied_paths, path):
            continue
        remove_path(result, path, shape)
        _prune_empty(result, path, shape)
    managers.set(manager, "Apply", subresource, api_version, now, applied_paths)
    return result
