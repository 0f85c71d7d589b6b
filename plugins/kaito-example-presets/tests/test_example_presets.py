"""The example preset pack, installed as a distribution, reaches kaito through its entry point."""

from __future__ import annotations

import subprocess
import sys

from kaito import PlanOptions, Registry, builtin_skus, default_registry, plan


def test_entry_point_adds_the_preset_next_to_the_builtins() -> None:
    registry = Registry(builtin_catalog=False).load_entry_points()
    assert "smollm2-135m-instruct" in registry.presets
    assert "phi-3-mini-4k-instruct" in registry.presets  # the built-ins come the same way
    assert default_registry().presets["smollm2-135m-instruct"].kv_heads == 3


def test_the_preset_plans_on_one_small_gpu() -> None:
    preset = default_registry().presets["smollm2-135m-instruct"]
    result = plan(preset, builtin_skus()["Standard_NC6s_v3"], PlanOptions())
    assert (result.node_count, result.gpus_per_node) == (1, 1)


def test_cli_shows_the_plugin_preset() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kaito", "presets", "show", "smollm2-135m-instruct", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"huggingFaceId": "HuggingFaceTB/SmolLM2-135M-Instruct"' in out
