"""Field errors: what is wrong with a workspace, and where.

Validation never stops at the first problem. A user who fixes one field and resubmits, only to
be told about the next one, has been served badly; so every check appends a `FieldError` and
the caller gets the whole list. Each error carries a Kubernetes-style field path
(`inference.adapters[1].source.name`), so the same text works in a webhook denial, a CLI
message and a test assertion.

`WorkspaceInvalid` is raised only where an object cannot be represented at all (unknown fields,
wrong types, an unknown apiVersion). Semantic checks return lists instead of raising, because
the admission path wants to report them, not crash on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field. `path` is Kubernetes style: `a.b[2].c`, `m[key]`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class WorkspaceInvalid(ValueError):
    """A workspace document that cannot be turned into a `Workspace` (or failed validation).

    `errors` holds every problem found, each with its field path.
    """

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__(_summary(self.errors))


def _summary(errors: Sequence[FieldError]) -> str:
    if not errors:
        return "invalid workspace"
    if len(errors) == 1:
        return f"invalid workspace: {errors[0]}"
    lines = "\n".join(f"  - {e}" for e in errors)
    return f"invalid workspace ({len(errors)} errors):\n{lines}"


def join_path(base: str, field: str) -> str:
    """`join_path("inference", "preset")` -> `inference.preset`; indexes attach without a dot."""
    if not base:
        return field
    if field.startswith("["):
        return base + field
    return f"{base}.{field}"
