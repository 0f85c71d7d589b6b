"""The reconciler contract, in the manner of controller-runtime's `reconcile.Reconciler`.

Reconciliation is level-based, not event-based: `reconcile` is handed only the key of a
workspace, never the event that woke it, and must bring the cluster in line with what it reads
now. Whatever happened in between (one change, ten changes, a restart of the operator) the same
observed state gives the same writes, and a workspace that already matches costs no writes.

Failures come in two kinds. An ordinary exception means "try again later" and the caller backs
off per key. A `TerminalError` means retrying cannot help until the workspace itself changes
(for example a spec that the planner cannot fit on the instance type); the caller records it and
does not retry.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs


@attrs.frozen
class Result:
    """The outcome of one pass. `requeue_after` (seconds) asks to be called again even if no
    watch event arrives, for things that are polled (a cloud operation in flight)."""

    requeue_after: float | None = None


class TerminalError(Exception):
    """A failure that retrying will not fix; reported on the workspace, not retried."""


@runtime_checkable
class Reconciler(Protocol):
    """Brings one workspace's children and status in line with its spec."""

    async def reconcile(self, key: str) -> Result:
        """Reconcile the workspace `namespace/name`. Level-triggered and idempotent."""
        ...
