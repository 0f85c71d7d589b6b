"""The public facade of `kaito.reconcile`: exactly the intended names, all defined in kaito."""

from __future__ import annotations

import kaito.reconcile
from kaito.reconcile import Reconciler, WorkspaceReconciler

EXPECTED = {
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
}


def test_exported_names_are_exactly_the_intended_ones() -> None:
    assert set(kaito.reconcile.__all__) == EXPECTED
    assert len(kaito.reconcile.__all__) == len(EXPECTED)
    for name in kaito.reconcile.__all__:
        value = getattr(kaito.reconcile, name)
        assert getattr(value, "__module__", "kaito").startswith("kaito"), name


def test_the_workspace_reconciler_fits_the_reconciler_protocol() -> None:
    assert issubclass(WorkspaceReconciler, Reconciler)
