"""What every command shares: errors that end a command cleanly, YAML files, and tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


class CliError(Exception):
    """A problem the user can fix; printed as `kaito: error: ...` with exit code `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def load_documents(path: str) -> list[dict[str, Any]]:
    """Read every YAML document (each a mapping) from `path`, or `-` for standard input.

    Missing files, malformed YAML, empty files and documents that are not mappings are
    `CliError`s that name the file and, for syntax errors, the line and column (for a document
    that is not a mapping, its number).
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory, not a file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: cannot read: {exc}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise CliError(f"{path}{where}: malformed YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: malformed YAML: {exc}") from None
    if not docs:
        raise CliError(f"{path}: the file holds no YAML document")
    for number, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            where = f" (document {number})" if len(docs) > 1 else ""
            raise CliError(
                f"{path}{where}: expected a mapping (a Kubernetes object), got {type(doc).__name__}"
            )
    return docs


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print rows as kubectl does: upper-case headers, columns padded, three spaces apart."""
    cells = [[str(h).upper() for h in headers], *[[_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        line = "   ".join(value.ljust(widths[i]) for i, value in enumerate(row))
        print(line.rstrip())


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def _cell(value: object) -> str:
    if value is None:
        return "<none>"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "<none>"
    return str(value)


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f}Gi"
