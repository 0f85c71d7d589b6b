"""Progress: sample counting, ETA and log lines on a fake clock, and the metrics endpoint."""

from __future__ import annotations

import urllib.request

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kaito.tuning import TuningMetrics
from kaito.tuning._progress import Progress, format_duration, samples_in_step


def simulated_steps(rows: int, batch: int, accumulation: int, epochs: int) -> list[int]:
    """Samples per optimizer step, by walking the epochs' micro-batches the way the Trainer
    groups them: `accumulation` at a time, the epoch's last group possibly shorter."""
    sizes = [min(batch, rows - start) for start in range(0, rows, batch)]
    steps: list[int] = []
    for _ in range(epochs):
        for first in range(0, len(sizes), accumulation):
            steps.append(sum(sizes[first : first + accumulation]))
    return steps


@given(
    rows=st.integers(1, 40),
    batch=st.integers(1, 8),
    accumulation=st.integers(1, 5),
    epochs=st.integers(1, 3),
)
def test_samples_per_step_follow_the_trainers_batching(
    rows: int, batch: int, accumulation: int, epochs: int
) -> None:
    expected = simulated_steps(rows, batch, accumulation, epochs)
    counted = [
        samples_in_step(step, rows=rows, batch_size=batch, accumulation=accumulation)
        for step in range(1, len(expected) + 1)
    ]
    assert counted == expected
    assert sum(counted) == rows * epochs


def test_processes_multiply_the_batch_and_step_zero_counts_nothing() -> None:
    assert samples_in_step(1, rows=100, batch_size=2, accumulation=1, processes=4) == 8
    assert samples_in_step(0, rows=10, batch_size=2, accumulation=1) == 0


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3725, "1h02m05s")]
)
def test_durations_read_like_a_clock(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_carry_step_loss_learning_rate_samples_and_eta() -> None:
    clock = FakeClock()
    metrics = TuningMetrics()
    progress = Progress(metrics, rows=10, batch_size=2, accumulation=1, clock=clock)
    progress.begin(total_steps=10)
    progress.step_done(1)
    assert progress.logged(1, {"loss": 2.5, "learning_rate": 1e-4, "epoch": 0.2}) == (
        "step 1/10 (10%) loss 2.5000 lr 1.00e-04 epoch 0.20 samples 2 eta ?"
    )
    for step in (2, 3):
        clock.now += 2.0
        progress.step_done(step)
    line = progress.logged(3, {"loss": 1.25, "learning_rate": 5e-5, "epoch": 0.6})
    assert line == "step 3/10 (30%) loss 1.2500 lr 5.00e-05 epoch 0.60 samples 6 eta 14s"
    assert progress.logged(3, {"train_runtime": 1.0}) is None
    assert progress.logged(3, {"eval_loss": 0.5}) == "step 3/10 eval_loss 0.5000"
    value = metrics.registry.get_sample_value
    assert value("kaito_tuning_step") == 3
    assert value("kaito_tuning_total_steps") == 10
    assert value("kaito_tuning_loss") == 1.25
    assert value("kaito_tuning_learning_rate") == 5e-5
    assert value("kaito_tuning_epoch") == 0.6
    assert value("kaito_tuning_eta_seconds") == 14
    assert value("kaito_tuning_samples_total") == 6


def test_a_resumed_run_estimates_from_its_own_steps() -> None:
    clock = FakeClock()
    progress = Progress(TuningMetrics(), rows=8, batch_size=1, accumulation=1, clock=clock)
    progress.begin(total_steps=20, start_step=10)
    progress.step_done(11)
    clock.now += 3.0
    progress.step_done(12)
    assert progress.eta(12) == pytest.approx(3.0 * 8)


def test_the_metrics_endpoint_serves_the_series() -> None:
    metrics = TuningMetrics()
    metrics.step.set(7)
    metrics.samples.inc(28)
    server = metrics.serve(0, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        server.close()
    assert "kaito_tuning_step 7.0" in text
    assert "kaito_tuning_samples_total 28.0" in text
    for name in ("loss", "learning_rate", "eta_seconds", "total_steps", "epoch"):
        assert f"# TYPE kaito_tuning_{name} gauge" in text
