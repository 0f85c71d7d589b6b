"""Progress of a tuning run: one log line per logging step, and Prometheus metrics.

A tuning Job runs for hours, and the two ways to watch it are its log and a scrape of its
metrics endpoint. Both are fed from the Trainer's logging steps by `Progress`:

    step 40/300 (13%) loss 1.8421 lr 1.93e-04 epoch 0.40 samples 160 eta 12m05s

and these series (on `--metrics-port`, path `/metrics`):

    kaito_tuning_step             optimizer steps done
    kaito_tuning_total_steps      steps the run will take
    kaito_tuning_loss             training loss of the last logging step
    kaito_tuning_learning_rate    learning rate of the last logging step
    kaito_tuning_epoch            fractional epoch
    kaito_tuning_eta_seconds      estimated seconds left
    kaito_tuning_samples_total    training samples processed (a counter)

The ETA is the mean time per step since the first step finished (the first one includes
warm-up) times the steps left. Sample counts follow the Trainer's batching exactly, including
the short last batch of an epoch (`samples_in_step`). Time comes from an injectable clock, and
metrics live in their own registry, so that tests and several runs in one process do not mix.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

log = logging.getLogger("kaito.tuning")


def samples_in_step(
    step: int, *, rows: int, batch_size: int, accumulation: int, processes: int = 1
) -> int:
    """Samples the Trainer feeds into optimizer step `step` (1-based): `accumulation`
    micro-batches of `batch_size` rows per process, the epoch's last batch holding the rest."""
    if step < 1 or rows < 1:
        return 0
    per_batch = batch_size * processes
    batches = math.ceil(rows / per_batch)
    steps_per_epoch = math.ceil(batches / accumulation)
    within = (step - 1) % steps_per_epoch
    first = within * accumulation
    last = min(first + accumulation, batches)
    total = 0
    for batch in range(first, last):
        total += rows - batch * per_batch if batch == batches - 1 else per_batch
    return total


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class TuningMetrics:
    """The Prometheus series of one tuning run, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.step = Gauge("kaito_tuning_step", "Optimizer steps done", registry=r)
        self.total_steps = Gauge("kaito_tuning_total_steps", "Steps the run will take", registry=r)
        self.loss = Gauge("kaito_tuning_loss", "Training loss at the last logging step", registry=r)
        self.learning_rate = Gauge(
            "kaito_tuning_learning_rate", "Learning rate at the last logging step", registry=r
        )
        self.epoch = Gauge("kaito_tuning_epoch", "Fractional epoch", registry=r)
        self.eta_seconds = Gauge("kaito_tuning_eta_seconds", "Estimated seconds left", registry=r)
        self.samples = Counter(
            "kaito_tuning_samples", "Training samples processed", registry=r
        )  # exposed as kaito_tuning_samples_total

    def serve(self, port: int, host: str = "0.0.0.0") -> MetricsServer:
        """Serve `/metrics` on a background thread (port 0 picks a free port)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


@attrs.define
class MetricsServer:
    _server: Any
    _thread: Any

    @property
    def port(self) -> int:
        port: int = self._server.server_port
        return port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@attrs.define
class Progress:
    """Turns the Trainer's step and log events into log lines and metric values."""

    metrics: TuningMetrics
    rows: int
    batch_size: int
    accumulation: int
    processes: int = 1
    clock: Callable[[], float] = time.monotonic
    total_steps: int = 0
    samples: int = 0
    start_step: int = 0
    """The step training (re)started at."""
    _first_step_at: float | None = None
    _first_step: int = 0

    def begin(self, total_steps: int, start_step: int = 0) -> None:
        """Training starts (or resumes at `start_step`) and will take `total_steps` steps."""
        self.total_steps = total_steps
        self.metrics.total_steps.set(total_steps)
        self.metrics.step.set(start_step)
        self.start_step = start_step
        self._first_step_at = None
        self._first_step = start_step

    def step_done(self, step: int) -> None:
        added = samples_in_step(
            step,
            rows=self.rows,
            batch_size=self.batch_size,
            accumulation=self.accumulation,
            processes=self.processes,
        )
        self.samples += added
        self.metrics.samples.inc(added)
        self.metrics.step.set(step)
        if self._first_step_at is None:
            self._first_step_at = self.clock()
            self._first_step = step
        eta = self.eta(step)
        if eta is not None:
            self.metrics.eta_seconds.set(eta)

    def eta(self, step: int) -> float | None:
        if self._first_step_at is None or step <= self._first_step:
            return None
        per_step = (self.clock() - self._first_step_at) / (step - self._first_step)
        return per_step * max(0, self.total_steps - step)

    def logged(self, step: int, logs: Mapping[str, float]) -> str | None:
        """A logging step's values: updates the metrics and returns the log line (None for a
        log without a training loss, such as the final summary)."""
        if "eval_loss" in logs:
            return f"step {step}/{self.total_steps} eval_loss {logs['eval_loss']:.4f}"
        if "loss" not in logs:
            return None
        loss = float(logs["loss"])
        self.metrics.loss.set(loss)
        parts = [f"step {step}/{self.total_steps}"]
        if self.total_steps:
            parts[0] += f" ({100 * step // self.total_steps}%)"
        parts.append(f"loss {loss:.4f}")
        if "learning_rate" in logs:
            rate = float(logs["learning_rate"])
            self.metrics.learning_rate.set(rate)
            parts.append(f"lr {rate:.2e}")
        if "epoch" in logs:
            epoch = float(logs["epoch"])
            self.metrics.epoch.set(epoch)
            parts.append(f"epoch {epoch:.2f}")
        parts.append(f"samples {self.samples}")
        eta = self.eta(step)
        parts.append(f"eta {format_duration(eta) if eta is not None else '?'}")
        return " ".join(parts)
