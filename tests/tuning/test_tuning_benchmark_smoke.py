"""Smoke test of the tuning benchmark (benchmarks/tuning/run.py) at a tiny size.

The benchmark is run by hand; this runs its command line for two steps, one pair, no warm-up,
so that a change that breaks it shows up here. It checks the report's shape and that both sides
did the same work, not speed: the machines are shared.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "tuning" / "run.py"


def test_the_benchmark_compares_both_sides_on_the_same_work(
    tmp_path: Path, model_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("tuning_benchmark", RUN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tuning_benchmark"] = module
    spec.loader.exec_module(module)
    out = tmp_path / "tuning.json"
    argv = ["--steps", "2", "--repeats", "1", "--rows", "8", "--no-warmup"]
    assert module.main([*argv, "--out", str(out), "--cache", str(model_cache)]) == 0
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"kaito", "plain"}
    kaito, plain = report["runs"]["kaito"], report["runs"]["plain"]
    assert kaito["steps"] == plain["steps"] == 2
    assert kaito["samples"] == plain["samples"] == 8
    assert kaito["loop_seconds"] > 0
    assert plain["loop_seconds"] > 0
    assert report["target_overhead"] == 0.10
    assert isinstance(report["met"], bool)
    assert "kaito overhead on the training loop" in capsys.readouterr().out
