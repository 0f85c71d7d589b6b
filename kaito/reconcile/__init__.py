"""The reconciler: from a Workspace to nodes, workloads and status."""

from kaito.reconcile._protocol import Reconciler, Result, TerminalError

__all__ = ["Reconciler", "Result", "TerminalError"]
