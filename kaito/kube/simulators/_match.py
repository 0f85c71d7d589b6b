"""Selecting objects: label requirements, field paths with globs, and `Match`.

A stage applies to the objects its `Match` selects, the way KWOK stages carry a selector: by
kind (the stage's), namespace, name, labels, annotations and field values. Failure injection is
nothing more than a stage whose match picks a few objects out of many ("pods whose image ends
in `:missing`", "NodeClaims carrying this annotation"), so matching must be cheap, total and
predictable: a missing field never raises, it just does not match.

`Requirement` is the Kubernetes set-based requirement (`In`, `NotIn`, `Exists`,
`DoesNotExist`, and `Gt`/`Lt` as node affinity has them). The same class evaluates label
selectors here and required node affinity in the scheduler, so both agree on the details
(`NotIn` and `DoesNotExist` match an absent key; `Gt`/`Lt` need an integer value).

Field paths are dotted (`spec.nodeName`); a list in the way is searched element by element
(`spec.containers.image` yields every container's image), `[type=Ready]` keeps the list
elements whose field has that value, and `['example.com/key']` names a key containing dots.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"})


def _as_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


@attrs.frozen
class Requirement:
    """`key <operator> values` over a string map (labels, or a node's labels)."""

    key: str
    operator: str
    values: tuple[str, ...] = attrs.field(default=(), converter=_strings)

    def __attrs_post_init__(self) -> None:
        if self.operator not in OPERATORS:
            raise ValueError(f"unknown operator {self.operator!r} (known: {sorted(OPERATORS)})")
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"operator {self.operator} needs at least one value ({self.key})")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"operator {self.operator} takes no values ({self.key})")
        if self.operator in ("Gt", "Lt") and (
            len(self.values) != 1 or _as_int(self.values[0]) is None
        ):
            raise ValueError(f"operator {self.operator} needs one integer value ({self.key})")

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Requirement:
        """From the API shape `{key, operator, values}` (label selectors, node affinity)."""
        return cls(
            key=str(raw.get("key", "")),
            operator=str(raw.get("operator", "")),
            values=tuple(str(v) for v in raw.get("values") or ()),
        )

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.operator == "In":
            return present and value in self.values
        if self.operator == "NotIn":
            return not present or value not in self.values
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        number = _as_int(value) if present else None
        if number is None:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == "Gt" else number < bound


_SET_REQUIREMENT = re.compile(
    r"^\s*(?P<key>[^\s!=,()]+)\s+(?P<op>in|notin)\s*\((?P<vals>[^)]*)\)\s*$"
)
_EQUALITY = re.compile(r"^\s*(?P<key>[^\s!=,()]+)\s*(?P<op>==|=|!=)\s*(?P<val>[^\s!=,()]*)\s*$")
_EXISTS = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=,()]+)\s*$")


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def parse_label_selector(text: str) -> tuple[Requirement, ...]:
    """The requirements of a label selector in its wire form (`app=x,tier!=db,gpu,!spot,
    zone in (a,b)`). Raises ValueError for text that is not a selector."""
    requirements: list[Requirement] = []
    for part in _split_top_level(text):
        if match := _SET_REQUIREMENT.match(part):
            values = tuple(v.strip() for v in match["vals"].split(",") if v.strip())
            op = "In" if match["op"] == "in" else "NotIn"
            requirements.append(Requirement(match["key"], op, values))
        elif match := _EQUALITY.match(part):
            op = "NotIn" if match["op"] == "!=" else "In"
            requirements.append(Requirement(match["key"], op, (match["val"],)))
        elif match := _EXISTS.match(part):
            op = "DoesNotExist" if match["neg"] else "Exists"
            requirements.append(Requirement(match["key"], op))
        else:
            raise ValueError(f"not a label selector requirement: {part.strip()!r}")
    return tuple(requirements)


def selector_requirements(
    selector: str | Mapping[str, Any] | Iterable[Requirement] | None,
) -> tuple[Requirement, ...]:
    """Requirements from any way of writing a label selector: the wire string, equalities as
    a mapping, the API's `{matchLabels, matchExpressions}` object, or requirements."""
    if selector is None:
        return ()
    if isinstance(selector, str):
        return parse_label_selector(selector)
    if isinstance(selector, Mapping):
        if "matchLabels" in selector or "matchExpressions" in selector:
            labels = selector.get("matchLabels") or {}
            expressions = selector.get("matchExpressions") or ()
            return tuple(Requirement(str(k), "In", (str(v),)) for k, v in labels.items()) + tuple(
                Requirement.from_wire(e) for e in expressions
            )
        return tuple(Requirement(str(k), "In", (str(v),)) for k, v in selector.items())
    return tuple(selector)


def labels_match(requirements: Sequence[Requirement], labels: Mapping[str, str]) -> bool:
    return all(r.matches(labels) for r in requirements)


# -- field paths ------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\[(?P<fkey>[^=\]'"]+)=(?P<fval>[^\]]*)\]   # [field=value] keeps matching list elements
      | \['(?P<sq>[^']*)'\] | \["(?P<dq>[^"]*)"\]  # ['key.with.dots']
      | (?P<name>[^.\[\]]+)                         # a plain key
      | \.                                          # separator
    """,
    re.VERBOSE,
)


@attrs.frozen
class _Step:
    key: str | None = None
    filter: tuple[str, str] | None = None


def _parse_path(path: str) -> tuple[_Step, ...]:
    steps: list[_Step] = []
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"cannot parse field path {path!r} at {path[pos:]!r}")
        pos = match.end()
        if match["fkey"] is not None:
            steps.append(_Step(filter=(match["fkey"].strip(), match["fval"].strip())))
        elif match["sq"] is not None or match["dq"] is not None:
            steps.append(_Step(key=match["sq"] if match["sq"] is not None else match["dq"]))
        elif match["name"] is not None:
            steps.append(_Step(key=match["name"]))
    return tuple(steps)


def _walk(node: Any, steps: Sequence[_Step]) -> Iterator[Any]:
    if not steps:
        if isinstance(node, list):
            yield from node
        elif node is not None:
            yield node
        return
    step, rest = steps[0], steps[1:]
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, steps)
        return
    if not isinstance(node, Mapping):
        return
    if step.filter is not None:
        # A filter on a mapping that is not in a list: keep it when its field matches.
        field, wanted = step.filter
        if str(node.get(field)) == wanted:
            yield from _walk(node, rest)
        return
    if step.key in node:
        child = node[step.key]
        if rest and rest[0].filter is not None and isinstance(child, list):
            field, wanted = rest[0].filter
            for item in child:
                if isinstance(item, Mapping) and str(item.get(field)) == wanted:
                    yield from _walk(item, rest[1:])
            return
        yield from _walk(child, rest)


def field_values(obj: Mapping[str, Any], path: str) -> list[Any]:
    """Every value at `path` in `obj` (lists along the way are searched element-wise)."""
    return list(_walk(obj, _parse_path(path)))


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- Match ------------------------------------------------------------------------------------


def _requirements(value: Any) -> tuple[Requirement, ...]:
    return selector_requirements(value)


def _check_fields(_: Any, __: Any, value: Mapping[str, str | None]) -> None:
    for path in value:
        _parse_path(path)


@attrs.frozen
class Match:
    """Which objects a stage applies to; every given criterion must hold (empty: all).

    - `labels`: a label selector (wire string, mapping of equalities, the API's
      `{matchLabels, matchExpressions}`, or `Requirement`s);
    - `annotations`: annotation key -> glob that the value must match (`*` for any value);
    - `fields`: field path -> glob that some value at the path must match, or None for
      "the path holds nothing" (e.g. `{"spec.containers.image": "*:missing"}`);
    - `namespace`, `name`: exact namespace, glob over the name;
    - `predicate`: any further test on the raw object.
    """

    labels: tuple[Requirement, ...] = attrs.field(default=(), converter=_requirements)
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    fields: Mapping[str, str | None] = attrs.field(factory=dict, validator=_check_fields)
    namespace: str | None = None
    name: str | None = None
    predicate: Callable[[Mapping[str, Any]], bool] | None = attrs.field(default=None, eq=False)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and not fnmatch.fnmatchcase(str(meta.get("name", "")), self.name):
            return False
        if self.labels and not labels_match(self.labels, meta.get("labels") or {}):
            return False
        annotations = meta.get("annotations") or {}
        for key, pattern in self.annotations.items():
            if key not in annotations or not fnmatch.fnmatchcase(str(annotations[key]), pattern):
                return False
        for path, field_pattern in self.fields.items():
            values = field_values(obj, path)
            if field_pattern is None:
                if values:
                    return False
            elif not any(fnmatch.fnmatchcase(_scalar(v), field_pattern) for v in values):
                return False
        return self.predicate is None or bool(self.predicate(obj))


ALL = Match()
"""The match that selects every object."""
