"""The reconciler: from a Workspace to nodes, workloads and status.

`WorkspaceReconciler` is the level-triggered controller logic the operator drives (one call per
workspace key); the `desired_*` builders compute a workspace's objects without a cluster, for
library users who render or apply them themselves (`desired_tuning_job` for a tuning
workspace's Job).
"""

from kaito.reconcile._constants import (
    FIELD_MANAGER,
    FINALIZER,
    REVISION_ANNOTATION,
    SERVICE_TYPE_ANNOTATION,
    SPEC_HASH_ANNOTATION,
)
from kaito.reconcile._desired import (
    DEFAULT_INFERENCE_CONFIG,
    desired_config_map,
    desired_headless_service,
    desired_service,
    desired_statefulset,
    inference_request,
    node_request,
)
from kaito.reconcile._protocol import Reconciler, Result, TerminalError
from kaito.reconcile._reconciler import WorkspaceReconciler
from kaito.reconcile._settings import ReconcilerSettings
from kaito.reconcile._tuning import (
    TUNING_CONFIG_KEY,
    desired_tuning_config_map,
    desired_tuning_job,
)

__all__ = [
    "DEFAULT_INFERENCE_CONFIG",
    "FIELD_MANAGER",
    "FINALIZER",
    "REVISION_ANNOTATION",
    "SERVICE_TYPE_ANNOTATION",
    "SPEC_HASH_ANNOTATION",
    "TUNING_CONFIG_KEY",
    "Reconciler",
    "ReconcilerSettings",
    "Result",
    "TerminalError",
    "WorkspaceReconciler",
    "desired_config_map",
    "desired_headless_service",
    "desired_service",
    "desired_statefulset",
    "desired_tuning_config_map",
    "desired_tuning_job",
    "inference_request",
    "node_request",
]
