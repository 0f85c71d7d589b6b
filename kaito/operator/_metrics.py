"""The operator's Prometheus metrics, served on `/metrics`.

Each `OperatorMetrics` owns its own `CollectorRegistry` rather than the process-wide default, so
two operators in one process (tests of leader election do exactly that) never collide, and an
embedding application decides itself which registries it exposes.

The names follow controller-runtime's where there is an equivalent (reconcile totals by result,
durations, errors, work-queue depth/adds/retries, leader status) with a `kaito_` prefix. The
workspace gauge is not updated on events: a custom collector counts the workspaces in the watch
cache by condition and status at scrape time, so it can never drift from what the watch holds.

    kaito_reconcile_total{result}           success | requeue | error | terminal
    kaito_reconcile_errors_total            reconciles that raised (terminal ones included)
    kaito_reconcile_duration_seconds        histogram of one reconcile's wall time
    kaito_reconcile_active                  reconciles running now
    kaito_workqueue_depth                   keys waiting to be processed
    kaito_workqueue_adds_total              keys added (not counting duplicates)
    kaito_workqueue_retries_total           keys re-added with backoff after an error
    kaito_watch_lists_total{kind}           full lists (start, 410 Gone, errors)
    kaito_leader                            1 while this replica holds the lease
    kaito_workspaces{condition,status}      workspaces in the watch cache by condition status
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kaito.api import ConditionType

RESULTS = ("success", "requeue", "error", "terminal")
"""The values of the `result` label of `kaito_reconcile_total`."""

_CONDITION_STATUSES = ("True", "False", "Unknown")

WorkspaceSource = Callable[[], Iterable[Mapping[str, Any]]]
"""Returns the workspaces currently in the watch cache (raw objects)."""


class _WorkspaceConditions(Collector):
    """Counts cached workspaces by (condition type, status) when scraped."""

    def __init__(self) -> None:
        self.source: WorkspaceSource | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "kaito_workspaces",
            "Workspaces in the operator's watch cache, by status condition and its status.",
            labels=["condition", "status"],
        )
        source = self.source
        if source is None:
            yield family
            return
        counts: dict[tuple[str, str], int] = {
            (str(c), s): 0 for c in ConditionType for s in _CONDITION_STATUSES
        }
        for workspace in source():
            status = workspace.get("status") or {}
            for condition in status.get("conditions") or ():
                key = (str(condition.get("type", "")), str(condition.get("status", "Unknown")))
                counts[key] = counts.get(key, 0) + 1
        for (condition_type, status_value), n in sorted(counts.items()):
            family.add_metric([condition_type, status_value], n)
        yield family


class OperatorMetrics:
    """The collectors of one operator, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reconcile_total = Counter(
            "kaito_reconcile_total", "Reconciles by result.", ["result"], registry=r
        )
        for result in RESULTS:
            self.reconcile_total.labels(result=result)
        self.reconcile_errors = Counter(
            "kaito_reconcile_errors_total", "Reconciles that raised an error.", registry=r
        )
        self.reconcile_duration = Histogram(
            "kaito_reconcile_duration_seconds",
            "Time one reconcile took.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.reconcile_active = Gauge(
            "kaito_reconcile_active", "Reconciles running now.", registry=r
        )
        self.queue_depth = Gauge(
            "kaito_workqueue_depth", "Keys waiting in the work queue.", registry=r
        )
        self.queue_adds = Counter(
            "kaito_workqueue_adds_total", "Keys added to the work queue.", registry=r
        )
        self.queue_retries = Counter(
            "kaito_workqueue_retries_total",
            "Keys re-added with backoff after an error.",
            registry=r,
        )
        self.watch_lists = Counter(
            "kaito_watch_lists_total",
            "Full lists made by the watches, by kind.",
            ["kind"],
            registry=r,
        )
        self.leader = Gauge(
            "kaito_leader", "1 while this replica holds the leader lease, else 0.", registry=r
        )
        self._workspaces = _WorkspaceConditions()
        r.register(self._workspaces)

    def watch_workspaces(self, source: WorkspaceSource | None) -> None:
        """Count the workspaces `source` returns on each scrape (None: report none)."""
        self._workspaces.source = source

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The current value of one sample (0.0 when it does not exist), for checks and tests."""
        value = self.registry.get_sample_value(name, dict(labels or {}))
        return 0.0 if value is None else float(value)
