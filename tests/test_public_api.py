"""The public facade: exactly the intended names, and a light import."""

from __future__ import annotations

import subprocess
import sys

import kaito

EXPECTED = {
    "ConditionType",
    "FieldError",
    "GpuSku",
    "Plan",
    "PlanError",
    "PlanOptions",
    "PluginError",
    "PluginNotFound",
    "Preset",
    "Reconciler",
    "Registry",
    "Result",
    "TerminalError",
    "Workspace",
    "WorkspaceInvalid",
    "__version__",
    "builtin_presets",
    "builtin_skus",
    "default_registry",
    "plan",
    "rank_skus",
    "validate_create",
    "validate_update",
}


def test_exported_names_are_exactly_the_intended_ones() -> None:
    assert set(kaito.__all__) == EXPECTED
    assert len(kaito.__all__) == len(EXPECTED), "no name listed twice"


def test_every_exported_name_resolves_and_is_defined_in_kaito() -> None:
    for name in kaito.__all__:
        value = getattr(kaito, name)
        module = getattr(value, "__module__", "kaito")
        assert module.startswith("kaito"), f"{name} comes from {module}"


def test_import_kaito_does_not_pull_heavy_dependencies() -> None:
    code = (
        "import sys, kaito; heavy = [m for m in ('torch', 'transformers', 'peft', 'accelerate', "
        "'azure', 'boto3', 'text_generation', 'tritonclient') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
