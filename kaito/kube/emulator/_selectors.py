"""Label and field selectors: parsing and matching with the grammar and rules of the real server.

Label selectors follow apimachinery's `labels.Parse`: comma-separated requirements (all must
hold) of the forms `k`, `!k`, `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k>N`, `k<N`.
`!=` and `notin` also match objects that lack the key, as upstream. Keys and values are checked
for the label syntax so that a malformed selector is a 400, not an empty list.

Field selectors accept `=`, `==` and `!=` over a per-kind set of fields; any other field is
rejected with "field label not supported", which is what clients see from kube-apiserver. A
parsed selector is an immutable value, so the watch code can keep it per watcher.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from kaito.kube.emulator._errors import bad_request

_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_PREFIX_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _check_key(key: str) -> None:
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _PREFIX_RE.match(prefix)):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r}: bad prefix")
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        raise bad_request(
            f"unable to parse requirement: invalid label key {key!r}: name part must be 63 "
            "characters or less, alphanumeric at both ends, with '-', '_' or '.' between"
        )


def _check_value(value: str) -> None:
    if len(value) > 63 or not _NAME_RE.match(value):
        raise bad_request(
            f"unable to parse requirement: invalid label value {value!r}: must be 63 characters "
            "or less, empty or alphanumeric at both ends, with '-', '_' or '.' between"
        )


@attrs.frozen
class Requirement:
    key: str
    op: str  # exists, !, =, !=, in, notin, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if not present:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        limit = int(self.values[0])
        return have > limit if self.op == "gt" else have < limit


@attrs.frozen
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_TOKEN_RE = re.compile(r"\s*(!=|==|=|!|\(|\)|,|>|<|[^\s!=(),<>]+)")


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            break
        if m.group(1):
            tokens.append(m.group(1))
        pos = m.end()
        if not text[pos:].strip():
            break
    return tokens


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the `labelSelector` query string; raises a 400 ApiError when malformed."""
    if text is None or not text.strip():
        return LabelSelector()
    tokens = _tokenize(text)
    reqs: list[Requirement] = []
    i = 0

    def expect_value(idx: int) -> str:
        if idx >= len(tokens) or tokens[idx] in ("=", "==", "!=", "!", "(", ")", ",", "<", ">"):
            found = tokens[idx] if idx < len(tokens) else ""
            raise bad_request(f"unable to parse requirement: found '{found}', expected: value")
        return tokens[idx]

    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            i += 1
            if i >= len(tokens) or tokens[i] in ("=", "==", "!=", "(", ")", ",", "!"):
                raise bad_request("unable to parse requirement: found '', expected: identifier")
            _check_key(tokens[i])
            reqs.append(Requirement(tokens[i], "!"))
            i += 1
        elif tok in ("=", "==", "!=", "(", ")", ",", "<", ">"):
            raise bad_request(f"unable to parse requirement: found '{tok}', expected: identifier")
        else:
            key = tok
            _check_key(key)
            i += 1
            nxt = tokens[i] if i < len(tokens) else ","
            if nxt == ",":
                reqs.append(Requirement(key, "exists"))
            elif nxt in ("=", "==", "!="):
                value = "" if i + 1 >= len(tokens) or tokens[i + 1] == "," else None
                if value is None:
                    value = expect_value(i + 1)
                    i += 1
                _check_value(value)
                reqs.append(Requirement(key, "=" if nxt != "!=" else "!=", (value,)))
                i += 1
            elif nxt in (">", "<"):
                value = expect_value(i + 1)
                try:
                    int(value)
                except ValueError:
                    raise bad_request(
                        f"unable to parse requirement: for 'gt', 'lt' operators, the value must "
                        f"be an integer, got {value!r}"
                    ) from None
                reqs.append(Requirement(key, "gt" if nxt == ">" else "lt", (value,)))
                i += 2
            elif nxt in ("in", "notin"):
                i += 1
                if i >= len(tokens) or tokens[i] != "(":
                    raise bad_request("unable to parse requirement: found '', expected: '('")
                i += 1
                values: list[str] = []
                while True:
                    if i >= len(tokens):
                        raise bad_request("unable to parse requirement: found '', expected: ')'")
                    t = tokens[i]
                    if t == ")":
                        i += 1
                        break
                    if t == ",":
                        i += 1
                        continue
                    _check_value(t)
                    values.append(t)
                    i += 1
                if nxt == "in" and not values:
                    raise bad_request(
                        "unable to parse requirement: for 'in', 'notin' operators, values set "
                        "can't be empty"
                    )
                reqs.append(Requirement(key, nxt, tuple(values)))
            else:
                raise bad_request(
                    f"unable to parse requirement: found '{nxt}', expected: in, notin, =, ==, "
                    "!=, gt, lt"
                )
        if i < len(tokens):
            if tokens[i] != ",":
                raise bad_request(
                    f"unable to parse requirement: found '{tokens[i]}', expected: ','"
                )
            i += 1
            if i >= len(tokens):
                raise bad_request("unable to parse requirement: found '', expected: identifier")
    return LabelSelector(tuple(reqs))


def label_selector_from_dict(selector: Mapping[str, Any] | None) -> LabelSelector:
    """Turn a `metav1.LabelSelector` object (matchLabels, matchExpressions) into a selector."""
    if not selector:
        return LabelSelector()
    reqs = [Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")))
        if op is None:
            raise bad_request(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(str(expr["key"]), op, tuple(expr.get("values") or ())))
    return LabelSelector(tuple(reqs))


# --- field selectors -------------------------------------------------------------------------

FieldGetter = Callable[[Mapping[str, Any]], str]


def _path_getter(*path: str) -> FieldGetter:
    def get(obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for part in path:
            if not isinstance(cur, Mapping):
                return ""
            cur = cur.get(part)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return get


_COMMON_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": _path_getter("metadata", "name"),
    "metadata.namespace": _path_getter("metadata", "namespace"),
}

# Extra fields each built-in resource indexes, keyed by (group, plural).
_KIND_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    ("", "namespaces"): ("status.phase",),
    ("", "nodes"): ("spec.unschedulable",),
    ("", "secrets"): ("type",),
    ("", "events"): (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    ("batch", "jobs"): ("status.successful",),
}


def _event_source(obj: Mapping[str, Any]) -> str:
    source = obj.get("source") or {}
    return str(source.get("component") or obj.get("reportingComponent") or "")


def supported_fields(
    group: str, plural: str, extra: tuple[str, ...] = ()
) -> dict[str, FieldGetter]:
    """The field-selector fields a resource supports; `extra` are a CRD's selectableFields."""
    fields = dict(_COMMON_FIELDS)
    for name in (*_KIND_FIELDS.get((group, plural), ()), *extra):
        path = name.lstrip(".").split(".")
        fields[name.lstrip(".")] = _path_getter(*path)
    if (group, plural) == ("", "events"):
        fields["source"] = _event_source
    if (group, plural) == ("", "pods"):
        # spec.hostNetwork defaults to false when absent.
        host = _path_getter("spec", "hostNetwork")
        fields["spec.hostNetwork"] = lambda o: host(o) or "false"
    return fields


@attrs.frozen
class FieldRequirement:
    field: str
    equal: bool
    value: str
    getter: FieldGetter = attrs.field(eq=False, repr=False)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (self.getter(obj) == self.value) == self.equal


@attrs.frozen
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def exact(self, field: str) -> str | None:
        """The value a `field=value` term pins, to narrow a scan to one name or namespace."""
        for r in self.requirements:
            if r.field == field and r.equal:
                return r.value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            if nxt not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{nxt}")
            out.append(nxt)
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def parse_field_selector(text: str | None, fields: Mapping[str, FieldGetter]) -> FieldSelector:
    """Parse `fieldSelector`; unsupported fields give the real server's 400."""
    if text is None or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for term in _split_unescaped(text, ","):
        if not term.strip():
            continue
        m = re.match(r"^\s*([^=!\s]+)\s*(==|!=|=)(.*)$", term, re.DOTALL)
        if m is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        name, op, raw = m.group(1), m.group(2), m.group(3)
        getter = fields.get(name)
        if getter is None:
            raise bad_request(f"field label not supported: {name}")
        reqs.append(FieldRequirement(name, op != "!=", _unescape(raw.strip()), getter))
    return FieldSelector(tuple(reqs))
