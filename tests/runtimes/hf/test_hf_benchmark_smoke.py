"""The serving benchmark's harness runs end to end (in process, a handful of tiny requests):
the three systems answer, the table prints and the JSON report has every row."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[3] / "benchmarks" / "serving" / "run.py"


@pytest.mark.timeout(90)
def test_the_benchmark_harness_runs_with_tiny_counts(
    model_cache: Path,
    phi3_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location("kaito_serving_benchmark", RUN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    out = tmp_path / "report.json"
    report = module.main(
        [
            "--size",
            "tiny",
            "--in-process",
            "--concurrency",
            "1",
            "2",
            "--requests",
            "2",
            "--max-tokens",
            "3",
            "--repeat",
            "1",
            "--cache-dir",
            str(model_cache),
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == report
    rows = report["results"]
    assert [(r["system"], r["concurrency"]) for r in rows] == [
        ("limit", 1),
        ("naive", 1),
        ("kaito", 1),
        ("limit", 2),
        ("naive", 2),
        ("kaito", 2),
    ]
    for row in rows:
        assert row["requests"] == 2
        assert row["tokens"] == 6, row
        assert row["tokens_per_s"] > 0
    assert set(report["targets"]) == {"limit_fraction_at_1"}
    printed = capsys.readouterr().out
    assert "tok/s" in printed
    assert "kaito / limit tokens/s at concurrency 1" in printed
