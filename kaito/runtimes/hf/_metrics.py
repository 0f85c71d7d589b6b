"""Prometheus metrics of the inference server, with the text exposition written here.

The server needs a handful of counters, gauges and histograms, updated from two threads (the
event loop that answers HTTP and the worker that owns the model). Writing the text format
(version 0.0.4) takes less code than adapting a client library to per-server registries (tests
start several servers in one process, each with its own numbers), and keeps the runtime free of
another dependency. All updates take one lock, held for a few dictionary operations.

Metric names start with `kaito_hf_`; counters end in `_total`, durations are in seconds.
"""

from __future__ import annotations

import abc
import bisect
import math
import threading
from collections.abc import Iterable, Sequence
from typing import TypeVar

LabelValues = tuple[str, ...]

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(names: Sequence[str], values: Sequence[str]) -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    return "{" + ",".join(parts) + "}" if parts else ""


def _format_number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class _Metric(abc.ABC):
    kind = ""

    def __init__(self, lock: threading.Lock, name: str, help: str, labels: Sequence[str]) -> None:
        self._lock = lock
        self.name = name
        self.help = help
        self.labels = tuple(labels)

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    @abc.abstractmethod
    def samples(self) -> list[str]:
        """The sample lines; called with the registry's lock held."""


class Counter(_Metric):
    """A number that only goes up, per combination of label values."""

    kind = "counter"

    def __init__(self, lock: threading.Lock, name: str, help: str, labels: Sequence[str]) -> None:
        super().__init__(lock, name, help, labels)
        self._values: dict[LabelValues, float] = {}
        if not self.labels:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter cannot go down")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_format_labels(self.labels, key)} {_format_number(value)}"
            for key, value in sorted(self._values.items())
        ]


class Gauge(_Metric):
    """A number that goes up and down."""

    kind = "gauge"

    def __init__(self, lock: threading.Lock, name: str, help: str) -> None:
        super().__init__(lock, name, help, ())
        self._value = 0.0

    def set(self, value: float) -> None:
        with self._lock:
            self._value = value

    def samples(self) -> list[str]:
        return [f"{self.name} {_format_number(self._value)}"]


class Histogram(_Metric):
    """Counts of observations at or below each bucket bound, their sum and their count."""

    kind = "histogram"

    def __init__(
        self, lock: threading.Lock, name: str, help: str, buckets: Iterable[float]
    ) -> None:
        super().__init__(lock, name, help, ())
        self.bounds = tuple(sorted(buckets))
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, value: float) -> None:
        with self._lock:
            self._observe(value)

    def observe_many(self, values: Iterable[float]) -> None:
        with self._lock:
            for value in values:
                self._observe(value)

    def _observe(self, value: float) -> None:
        self._sum += value
        self._counts[bisect.bisect_left(self.bounds, value)] += 1

    def samples(self) -> list[str]:
        lines = []
        cumulative = 0
        for bound, count in zip((*self.bounds, math.inf), self._counts, strict=True):
            cumulative += count
            le = 'le="' + _format_number(float(bound)) + '"'
            lines.append(f"{self.name}_bucket{{{le}}} {cumulative}")
        lines.append(f"{self.name}_sum {_format_number(self._sum)}")
        lines.append(f"{self.name}_count {cumulative}")
        return lines


_M = TypeVar("_M", bound=_Metric)


class Registry:
    """The metrics of one server, rendered together in registration order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._metrics: list[_Metric] = []

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(self.lock, name, help, labels))

    def gauge(self, name: str, help: str) -> Gauge:
        return self._add(Gauge(self.lock, name, help))

    def histogram(self, name: str, help: str, buckets: Iterable[float]) -> Histogram:
        return self._add(Histogram(self.lock, name, help, buckets))

    def _add(self, metric: _M) -> _M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        """The Prometheus text exposition (format 0.0.4) of every metric."""
        lines: list[str] = []
        with self.lock:
            for metric in self._metrics:
                lines += metric.header()
                lines += metric.samples()
        return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServerMetrics:
    """The server's metrics by purpose; the engine and the HTTP handlers update them."""

    def __init__(self) -> None:
        self.registry = Registry()
        r = self.registry
        self.requests = r.counter(
            "kaito_hf_requests_total",
            "HTTP requests answered, by endpoint and status code.",
            ("endpoint", "status"),
        )
        self.prompt_tokens = r.counter(
            "kaito_hf_prompt_tokens_total", "Prompt tokens of admitted requests."
        )
        self.generation_tokens = r.counter(
            "kaito_hf_generation_tokens_total", "Tokens generated, for all requests."
        )
        self.cancelled = r.counter(
            "kaito_hf_requests_cancelled_total",
            "Requests whose generation stopped early because the client went away.",
        )
        self.finished = r.counter(
            "kaito_hf_requests_finished_total",
            "Requests that finished generating, by finish reason.",
            ("reason",),
        )
        self.time_to_first_token = r.histogram(
            "kaito_hf_time_to_first_token_seconds",
            "From the request's arrival to its first generated token.",
            LATENCY_BUCKETS,
        )
        self.inter_token_latency = r.histogram(
            "kaito_hf_inter_token_latency_seconds",
            "Between two consecutive generated tokens of one request.",
            LATENCY_BUCKETS,
        )
        self.request_duration = r.histogram(
            "kaito_hf_request_duration_seconds",
            "From the request's arrival to its last generated token.",
            LATENCY_BUCKETS,
        )
        self.batch_size = r.histogram(
            "kaito_hf_batch_size",
            "Requests in the running batch at each decode step.",
            BATCH_BUCKETS,
        )
        self.prefill_batch_size = r.histogram(
            "kaito_hf_prefill_batch_size",
            "Requests prefilled together when they join the running batch.",
            BATCH_BUCKETS,
        )
        self.queue_depth = r.gauge(
            "kaito_hf_queue_depth", "Requests waiting for a slot in the running batch."
        )
        self.running = r.gauge("kaito_hf_running_requests", "Requests in the running batch.")
        self.model_loaded = r.gauge(
            "kaito_hf_model_loaded", "1 once the model is loaded and requests are served."
        )

    def render(self) -> str:
        return self.registry.render()
