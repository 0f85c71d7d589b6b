"""The public names of `kaito.kube.simulators` are exactly the intended ones."""

from __future__ import annotations

import kaito.kube.simulators as simulators

EXPECTED = {
    "NOW",
    "TERMINATION_FINALIZER",
    "Clock",
    "Decision",
    "Delay",
    "Delays",
    "Delete",
    "Effect",
    "InstanceType",
    "ManualClock",
    "Match",
    "Patch",
    "PendingStage",
    "RealClock",
    "Requirement",
    "SimulatorConfig",
    "Simulators",
    "Stage",
    "StageContext",
    "builtin_instance_types",
    "crash_loop",
    "field_values",
    "image_pull_error",
    "insufficient_capacity",
    "never_registers",
    "parse_label_selector",
    "pod_failure",
    "schedule",
    "unschedulable_message",
}


def test_exported_names() -> None:
    assert set(simulators.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(simulators, name) is not None


def test_clocks_fit_the_protocol() -> None:
    assert isinstance(simulators.ManualClock(), simulators.Clock)
    assert isinstance(simulators.RealClock(), simulators.Clock)
