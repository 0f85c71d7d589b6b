"""A small renderer for the subset of Go templates (and Helm's functions) the kaito chart uses.

Helm is not installable on these machines, so the chart test renders `charts/kaito` with this
instead. It follows text/template's rules for what it supports, and fails loudly on anything
else, so a template that strays outside the subset breaks the test rather than rendering
wrongly:

- text and `{{ ... }}` actions, with `{{-`/`-}}` trimming all adjacent whitespace; comments
- pipelines `a | f b`, parenthesised sub-pipelines, string/number/bool literals
- `.Field.Path` (dict look-ups; a missing key is nil), `.`, `$`, `$var`, `$var := x`, `$var = x`
- `if` / `else if` / `else` / `end`, `range $k, $v := map` (keys sorted) and over lists,
  `define` / `include`
- functions: quote, default, toYaml, nindent, indent, include, eq, ne, not, and, or, printf

Values print as Go prints them: booleans as true/false, nil as an empty string (Helm replaces
"<no value>").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)|(?P<decl>:=)|(?P<assign>=)'
    r"|(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)|(?P<field>(?:\.[A-Za-z0-9_]+)+|\.)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[(),|]))"
)


class TemplateError(Exception):
    pass


# -- parsing -----------------------------------------------------------------------------------


def _lex(source: str) -> list[tuple[str, str]]:
    """Text and action items, with the trim markers already applied to the text."""
    items: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(source):
        text = source[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        items.append(("text", text))
        items.append(("action", match.group(2).strip()))
        pos = match.end()
        if match.group(3):
            rest = source[pos:]
            pos += len(rest) - len(rest.lstrip())
    items.append(("text", source[pos:]))
    return [(k, v) for k, v in items if not (k == "text" and v == "")]


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    expr = expr.rstrip()
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"cannot parse {expr[pos:]!r}")
        kind = match.lastgroup
        assert kind is not None
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


Node = tuple[Any, ...]


def _parse(
    items: list[tuple[str, str]], pos: int, stop: tuple[str, ...]
) -> tuple[list[Node], int, str]:
    nodes: list[Node] = []
    while pos < len(items):
        kind, value = items[pos]
        pos += 1
        if kind == "text":
            nodes.append(("text", value))
            continue
        if value.startswith("/*"):
            continue
        word = value.split(None, 1)[0] if value else ""
        rest = value[len(word) :].strip()
        if word in stop or (word == "else" and "else" in stop):
            return nodes, pos, value
        if word == "if":
            nodes_, pos = _parse_if(items, pos, rest)
            nodes.append(nodes_)
        elif word == "range":
            body, pos, end = _parse(items, pos, ("end", "else"))
            alternative: list[Node] = []
            if end.startswith("else"):
                alternative, pos, _ = _parse(items, pos, ("end",))
            nodes.append(("range", rest, body, alternative))
        elif word == "define":
            body, pos, _ = _parse(items, pos, ("end",))
            nodes.append(("define", json.loads(rest), body))
        elif word in ("with", "template", "block"):
            raise TemplateError(f"{word} is outside the supported subset")
        else:
            nodes.append(("action", value))
    if stop:
        raise TemplateError(f"missing {{{{ end }}}} (wanted {stop})")
    return nodes, pos, ""


def _parse_if(items: list[tuple[str, str]], pos: int, condition: str) -> tuple[Node, int]:
    body, pos, end = _parse(items, pos, ("end", "else"))
    alternative: list[Node] = []
    if end.startswith("else"):
        tail = end[4:].strip()
        if tail.startswith("if "):
            nested, pos = _parse_if(items, pos, tail[3:].strip())
            alternative = [nested]
        else:
            alternative, pos, _ = _parse(items, pos, ("end",))
    return ("if", condition, body, alternative), pos


# -- evaluation --------------------------------------------------------------------------------


def go_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, int | float | str | list | dict | tuple):
        return bool(value)
    return True


def _to_yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=True, default_flow_style=False).rstrip("\n")


def _indent(n: Any, text: Any) -> str:
    pad = " " * int(n)
    return "\n".join(pad + line for line in go_string(text).split("\n"))


def _printf(fmt: str, *args: Any) -> str:
    return re.sub(r"%[vsd]", "%s", fmt) % tuple(go_string(a) for a in args)


class Scope:
    def __init__(self, parent: Scope | None = None) -> None:
        self.parent = parent
        self.vars: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                return scope.vars[name]
            scope = scope.parent
        raise TemplateError(f"undefined variable {name}")

    def set(self, name: str, value: Any) -> None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.vars:
                scope.vars[name] = value
                return
            scope = scope.parent
        raise TemplateError(f"assignment to undeclared variable {name}")


def _lookup(value: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


class Renderer:
    """Renders templates that share the `define`s of every file loaded."""

    def __init__(self) -> None:
        self.defines: dict[str, list[Node]] = {}
        self.functions: dict[str, Callable[..., Any]] = {
            "quote": lambda *a: " ".join(json.dumps(go_string(x)) for x in a if x is not None),
            "default": lambda d, v=None: v if truthy(v) else d,
            "toYaml": _to_yaml,
            "nindent": lambda n, t: "\n" + _indent(n, t),
            "indent": _indent,
            "eq": lambda a, *b: any(a == x for x in b),
            "ne": lambda a, b: a != b,
            "not": lambda a: not truthy(a),
            "and": lambda *a: next((x for x in a if not truthy(x)), a[-1]),
            "or": lambda *a: next((x for x in a if truthy(x)), a[-1]),
            "printf": _printf,
            "include": self._include,
        }

    def parse(self, source: str) -> list[Node]:
        nodes, _, _ = _parse(_lex(source), 0, ())
        for node in nodes:
            if node[0] == "define":
                self.defines[node[1]] = node[2]
        return [n for n in nodes if n[0] != "define"]

    def render(self, nodes: list[Node], data: Any) -> str:
        scope = Scope()
        scope.vars["$"] = data
        return self._run(nodes, data, scope)

    def _include(self, name: str, data: Any) -> str:
        if name not in self.defines:
            raise TemplateError(f"no template named {name!r}")
        return self.render(self.defines[name], data)

    def _run(self, nodes: list[Node], dot: Any, scope: Scope) -> str:
        out: list[str] = []
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                value = self._action(node[1], dot, scope)
                if value is not None:
                    out.append(go_string(value))
            elif kind == "if":
                branch = (
                    node[2] if truthy(self._pipeline(_tokens(node[1]), dot, scope)) else node[3]
                )
                out.append(self._run(branch, dot, Scope(scope)))
            elif kind == "range":
                out.append(self._range(node, dot, scope))
        return "".join(out)

    def _action(self, expr: str, dot: Any, scope: Scope) -> Any:
        tokens = _tokens(expr)
        if len(tokens) > 2 and tokens[0][0] == "var" and tokens[1][0] in ("decl", "assign"):
            value = self._pipeline(tokens[2:], dot, scope)
            if tokens[1][0] == "decl":
                scope.vars[tokens[0][1]] = value
            else:
                scope.set(tokens[0][1], value)
            return None
        return self._pipeline(tokens, dot, scope)

    def _range(self, node: Node, dot: Any, scope: Scope) -> str:
        tokens = _tokens(node[1])
        names: list[str] = []
        if any(k == "decl" for k, _ in tokens):
            split = next(i for i, (k, _) in enumerate(tokens) if k == "decl")
            names = [v for k, v in tokens[:split] if k == "var"]
            tokens = tokens[split + 1 :]
        collection = self._pipeline(tokens, dot, scope)
        if isinstance(collection, Mapping):
            pairs = [(k, collection[k]) for k in sorted(collection)]
        elif isinstance(collection, list):
            pairs = list(enumerate(collection))
        elif collection is None:
            pairs = []
        else:
            raise TemplateError(f"cannot range over {collection!r}")
        if not pairs:
            return self._run(node[3], dot, Scope(scope))
        out = []
        for key, value in pairs:
            inner = Scope(scope)
            if len(names) == 1:
                inner.vars[names[0]] = value
            elif len(names) == 2:
                inner.vars[names[0]], inner.vars[names[1]] = key, value
            out.append(self._run(node[2], value, inner))
        return "".join(out)

    def _pipeline(self, tokens: list[tuple[str, str]], dot: Any, scope: Scope) -> Any:
        commands: list[list[tuple[str, str]]] = [[]]
        depth = 0
        for token in tokens:
            if token == ("punct", "|") and depth == 0:
                commands.append([])
                continue
            if token == ("punct", "("):
                depth += 1
            elif token == ("punct", ")"):
                depth -= 1
            commands[-1].append(token)
        value: Any = None
        for n, command in enumerate(commands):
            value = self._command(command, dot, scope, piped=(value,) if n else ())
        return value

    def _command(
        self, tokens: list[tuple[str, str]], dot: Any, scope: Scope, piped: tuple[Any, ...]
    ) -> Any:
        operands = self._operands(tokens, dot, scope)
        head_kind, head = tokens[0]
        if head_kind == "ident" and head not in ("true", "false", "nil"):
            if head not in self.functions:
                raise TemplateError(f"function {head!r} is outside the supported subset")
            return self.functions[head](*operands[1:], *piped)
        if len(operands) != 1 or piped:
            raise TemplateError(f"{tokens} is not a function call")
        return operands[0]

    def _operands(self, tokens: list[tuple[str, str]], dot: Any, scope: Scope) -> list[Any]:
        values: list[Any] = []
        i = 0
        while i < len(tokens):
            kind, text = tokens[i]
            if (kind, text) == ("punct", "("):
                depth, j = 1, i + 1
                while depth:
                    depth += (
                        {"(": 1, ")": -1}.get(tokens[j][1], 0) if tokens[j][0] == "punct" else 0
                    )
                    j += 1
                values.append(self._pipeline(tokens[i + 1 : j - 1], dot, scope))
                i = j
                continue
            if kind == "str":
                values.append(json.loads(text))
            elif kind == "num":
                values.append(float(text) if "." in text else int(text))
            elif kind == "field":
                values.append(dot if text == "." else _lookup(dot, text))
            elif kind == "var":
                name, _, path = text.partition(".")
                values.append(_lookup(scope.get(name), path))
            elif kind == "ident":
                values.append({"true": True, "false": False, "nil": None}.get(text, text))
            else:
                raise TemplateError(f"unexpected {text!r}")
            i += 1
        return values


def render_chart(
    chart: Path, values: Mapping[str, Any] | None = None, namespace: str = "default"
) -> list[dict[str, Any]]:
    """The objects `helm template --namespace NS` would print for `chart` with `values`
    merged over its values.yaml (maps merge deeply, other values replace)."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    merged = _merge(yaml.safe_load((chart / "values.yaml").read_text()) or {}, values or {})
    data = {
        "Values": merged,
        "Release": {"Name": "kaito", "Namespace": namespace, "Service": "Helm"},
        "Chart": {
            "Name": meta["name"],
            "Version": meta["version"],
            "AppVersion": meta.get("appVersion"),
        },
    }
    renderer = Renderer()
    files = sorted((chart / "templates").glob("*"))
    parsed = {f.name: renderer.parse(f.read_text()) for f in files}
    objects: list[dict[str, Any]] = []
    for name, nodes in parsed.items():
        if name.startswith("_"):
            continue
        text = renderer.render(nodes, data)
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc is not None)
    return objects


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
