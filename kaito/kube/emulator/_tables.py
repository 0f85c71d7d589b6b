"""Server-side printing: `meta.k8s.io/v1` Table responses, which is what `kubectl get` shows.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` and prints the column
definitions and cells it gets back; it does not format objects itself. So the columns of
`kubectl get workspace` (INSTANCE, RESOURCEREADY, ...) come from the CRD's
additionalPrinterColumns, evaluated here with the kubectl JSONPath dialect, and built-in kinds
get the familiar columns (pods: READY STATUS RESTARTS AGE). Dates are shown as ages with the
same rounding as kube-apiserver (`5m10s`, `3h`, `2d4h`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kaito.kube.emulator._errors import bad_request
from kaito.kube.emulator._resources import Resource

JsonObj = dict[str, Any]

# --- JSONPath (the subset kubectl and printer columns use) -----------------------------------

_Step = tuple[str, Any]


def _parse_filter(text: str) -> tuple[list[str], str | None, Any]:
    m = re.fullmatch(r"\s*@((?:\.[\w\-/\\.]+?)*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*", text)
    if m is None:
        raise bad_request(f"unrecognized filter: {text}")
    path = [p.replace("\\.", ".") for p in re.split(r"(?<!\\)\.", m.group(1)) if p]
    op = m.group(2)
    literal: Any = None
    if op is not None:
        raw = m.group(3).strip()
        if raw[:1] in ("'", '"') and raw[-1:] == raw[:1]:
            literal = raw[1:-1]
        elif raw in ("true", "false"):
            literal = raw == "true"
        else:
            try:
                literal = float(raw) if "." in raw else int(raw)
            except ValueError:
                raise bad_request(f"unrecognized filter literal: {raw}") from None
    return path, op, literal


def parse_jsonpath(expr: str) -> list[_Step]:
    """Parse `.a.b[0]`, `.a[*].b`, `.a[?(@.type=="Ready")].status`, `.metadata.labels.x\\.y`."""
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    steps: list[_Step] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == ".":
            i += 1
            start = i
            name: list[str] = []
            while i < len(text) and text[i] not in ".[":
                if text[i] == "\\" and i + 1 < len(text):
                    name.append(text[i + 1])
                    i += 2
                    continue
                name.append(text[i])
                i += 1
            if i == start:
                continue
            steps.append(("field", "".join(name)))
        elif ch == "[":
            end = _matching_bracket(text, i)
            inner = text[i + 1 : end].strip()
            i = end + 1
            if inner == "*":
                steps.append(("all", None))
            elif inner.startswith("?(") and inner.endswith(")"):
                steps.append(("filter", _parse_filter(inner[2:-1])))
            elif inner[:1] in ("'", '"'):
                steps.append(("field", inner[1:-1]))
            elif ":" in inner:
                lo, _, hi = inner.partition(":")
                steps.append(("slice", (int(lo) if lo else None, int(hi) if hi else None)))
            else:
                try:
                    steps.append(("index", int(inner)))
                except ValueError:
                    raise bad_request(f"invalid array index {inner!r} in {expr}") from None
        elif ch == "$" or ch.isspace():
            i += 1
        else:
            raise bad_request(f"unrecognized character in JSONPath {expr!r} at {i}")
    return steps


def _matching_bracket(text: str, start: int) -> int:
    depth = 0
    quote = ""
    for j in range(start, len(text)):
        c = text[j]
        if quote:
            if c == quote:
                quote = ""
            continue
        if c in ("'", '"'):
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return j
    raise bad_request(f"unclosed bracket in JSONPath {text!r}")


def _dig(value: Any, path: list[str]) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _compare(have: Any, op: str, want: Any) -> bool:
    if op == "==":
        return bool(have == want) or str(have) == str(want)
    if op == "!=":
        return not (have == want or str(have) == str(want))
    try:
        a, b = float(have), float(want)
    except (TypeError, ValueError):
        return False
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def evaluate_jsonpath(steps: list[_Step], obj: Any) -> list[Any]:
    """Every value the path selects, in document order."""
    current = [obj]
    for kind, arg in steps:
        nxt: list[Any] = []
        for value in current:
            if kind == "field":
                if isinstance(value, Mapping) and arg in value:
                    nxt.append(value[arg])
            elif kind == "index":
                if isinstance(value, list) and -len(value) <= arg < len(value):
                    nxt.append(value[arg])
            elif kind == "slice":
                if isinstance(value, list):
                    nxt.extend(value[arg[0] : arg[1]])
            elif kind == "all":
                if isinstance(value, list):
                    nxt.extend(value)
                elif isinstance(value, Mapping):
                    nxt.extend(value.values())
            elif kind == "filter" and isinstance(value, list):
                path, op, literal = arg
                for item in value:
                    found, have = _dig(item, path)
                    if found and (op is None or _compare(have, op, literal)):
                        nxt.append(item)
        current = nxt
    return current


# --- ages ------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """A duration rounded the way kubectl's AGE column shows it."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def age(value: Any, now: datetime) -> str:
    when = _parse_time(value)
    if when is None:
        return "<unknown>"
    return human_duration((now - when).total_seconds())


# --- columns ---------------------------------------------------------------------------------

Cell = Callable[[JsonObj, datetime], Any]


def _column(
    name: str, ctype: str = "string", *, priority: int = 0, fmt: str = "", description: str = ""
) -> JsonObj:
    return {
        "name": name,
        "type": ctype,
        "format": fmt,
        "description": description or name,
        "priority": priority,
    }


NAME_COLUMN = _column("Name", fmt="name", description="Name must be unique within a namespace.")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _age(obj: JsonObj, now: datetime) -> str:
    return age(_meta(obj).get("creationTimestamp"), now)


def _name(obj: JsonObj, now: datetime) -> str:
    return str(_meta(obj).get("name", ""))


def _get(*path: str, default: Any = "<none>") -> Cell:
    def cell(obj: JsonObj, now: datetime) -> Any:
        value: Any = obj
        for p in path:
            if not isinstance(value, Mapping) or p not in value:
                return default
            value = value[p]
        return value if value not in (None, "") else default

    return cell


def _pod_ready(obj: JsonObj, now: datetime) -> str:
    total = len((obj.get("spec") or {}).get("containers") or ())
    statuses = (obj.get("status") or {}).get("containerStatuses") or ()
    ready = sum(1 for c in statuses if c.get("ready"))
    return f"{ready}/{total}"


def _pod_status(obj: JsonObj, now: datetime) -> str:
    status = obj.get("status") or {}
    reason = str(status.get("reason") or status.get("phase") or "Unknown")
    for c in status.get("containerStatuses") or ():
        waiting = (c.get("state") or {}).get("waiting") or {}
        terminated = (c.get("state") or {}).get("terminated") or {}
        if waiting.get("reason"):
            reason = str(waiting["reason"])
        elif terminated.get("reason"):
            reason = str(terminated["reason"])
    if _meta(obj).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_restarts(obj: JsonObj, now: datetime) -> int:
    statuses = (obj.get("status") or {}).get("containerStatuses") or ()
    return sum(int(c.get("restartCount") or 0) for c in statuses)


def _node_status(obj: JsonObj, now: datetime) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or ()
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    state = (
        "Unknown" if ready is None else ("Ready" if ready.get("status") == "True" else "NotReady")
    )
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    return state


def _node_roles(obj: JsonObj, now: datetime) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(
        k[len(prefix) :] for k in (_meta(obj).get("labels") or {}) if k.startswith(prefix)
    )
    return ",".join(r for r in roles if r) or "<none>"


def _replicas_ready(obj: JsonObj, now: datetime) -> str:
    status = obj.get("status") or {}
    desired = (obj.get("spec") or {}).get("replicas", 1)
    return f"{int(status.get('readyReplicas') or 0)}/{desired}"


def _service_ports(obj: JsonObj, now: datetime) -> str:
    ports = (obj.get("spec") or {}).get("ports") or ()
    parts = []
    for p in ports:
        text = str(p.get("port"))
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        parts.append(f"{text}/{p.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _job_status(obj: JsonObj, now: datetime) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or ()
    for ctype, shown in (
        ("Complete", "Complete"),
        ("Failed", "Failed"),
        ("Suspended", "Suspended"),
    ):
        if any(c.get("type") == ctype and c.get("status") == "True" for c in conditions):
            return shown
    return "Running"


def _job_completions(obj: JsonObj, now: datetime) -> str:
    spec = obj.get("spec") or {}
    done = int((obj.get("status") or {}).get("succeeded") or 0)
    return f"{done}/{spec.get('completions', 1)}"


def _data_count(obj: JsonObj, now: datetime) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def _created_at(obj: JsonObj, now: datetime) -> str:
    return str(_meta(obj).get("creationTimestamp", ""))


_AGE = (
    _column(
        "Age",
        description="CreationTimestamp is the server time when this object was created.",
    ),
    _age,
)

_BUILTIN: dict[tuple[str, str], list[tuple[JsonObj, Cell]]] = {
    ("", "pods"): [
        (_column("Ready"), _pod_ready),
        (_column("Status"), _pod_status),
        (_column("Restarts", "string"), _pod_restarts),
        _AGE,
        (_column("IP", priority=1), _get("status", "podIP")),
        (_column("Node", priority=1), _get("spec", "nodeName")),
    ],
    ("", "nodes"): [
        (_column("Status"), _node_status),
        (_column("Roles"), _node_roles),
        _AGE,
        (_column("Version"), _get("status", "nodeInfo", "kubeletVersion", default="")),
    ],
    ("", "namespaces"): [(_column("Status"), _get("status", "phase", default="")), _AGE],
    ("", "services"): [
        (_column("Type"), _get("spec", "type", default="ClusterIP")),
        (_column("Cluster-IP"), _get("spec", "clusterIP")),
        (_column("External-IP"), _get("spec", "externalName")),
        (_column("Port(s)"), _service_ports),
        _AGE,
    ],
    ("", "configmaps"): [(_column("Data", "integer"), _data_count), _AGE],
    ("", "secrets"): [
        (_column("Type"), _get("type", default="Opaque")),
        (_column("Data", "integer"), _data_count),
        _AGE,
    ],
    ("apps", "deployments"): [
        (_column("Ready"), _replicas_ready),
        (_column("Up-to-date", "integer"), _get("status", "updatedReplicas", default=0)),
        (_column("Available", "integer"), _get("status", "availableReplicas", default=0)),
        _AGE,
    ],
    ("apps", "statefulsets"): [(_column("Ready"), _replicas_ready), _AGE],
    ("batch", "jobs"): [
        (_column("Status"), _job_status),
        (_column("Completions"), _job_completions),
        _AGE,
    ],
    ("apiextensions.k8s.io", "customresourcedefinitions"): [
        (_column("Created At", "date"), _created_at)
    ],
}


def _custom_columns(res: Resource, version: str) -> list[tuple[JsonObj, Cell]]:
    specs = res.printer_columns.get(version)
    if not specs:
        return [_AGE]
    out: list[tuple[JsonObj, Cell]] = []
    for spec in specs:
        ctype = str(spec.get("type") or "string")
        column = _column(
            str(spec.get("name")),
            ctype,
            priority=int(spec.get("priority") or 0),
            fmt=str(spec.get("format") or ""),
            description=str(spec.get("description") or spec.get("name")),
        )
        out.append((column, _path_cell(parse_jsonpath(str(spec.get("jsonPath", ""))), ctype)))
    return out


def _path_cell(steps: list[_Step], ctype: str) -> Cell:
    def cell(obj: JsonObj, now: datetime) -> Any:
        found = evaluate_jsonpath(steps, obj)
        if not found or found[0] is None:
            return None
        value = found[0]
        if ctype == "date":
            return age(value, now) if _parse_time(value) else "<invalid>"
        if ctype == "integer":
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        if ctype == "number":
            return value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if ctype == "boolean":
            return value if isinstance(value, bool) else None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict | list):
            return json.dumps(value, separators=(",", ":"))
        return str(value)

    return cell


def _partial(obj: JsonObj) -> JsonObj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(_meta(obj)),
    }


def build_table(
    res: Resource,
    version: str,
    objects: list[JsonObj],
    *,
    include_object: str = "Metadata",
    resource_version: str = "",
    continue_token: str = "",
    columns: bool = True,
    now: datetime | None = None,
) -> JsonObj:
    """A Table of `objects`; `include_object` is None, Metadata or Object as in the API."""
    when = now or datetime.now(UTC)
    specs = _custom_columns(res, version) if res.custom else _BUILTIN.get(res.key, [_AGE])
    rows = []
    for obj in objects:
        row: JsonObj = {"cells": [_name(obj, when)] + [cell(obj, when) for _, cell in specs]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _partial(obj)
        rows.append(row)
    meta: JsonObj = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    table: JsonObj = {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta}
    if columns:
        table["columnDefinitions"] = [NAME_COLUMN] + [c for c, _ in specs]
    table["rows"] = rows
    return table
