"""Smoke test of the control-plane benchmark (benchmarks/control_plane): harness and command line.

The benchmark is run by hand, not by the test suite. Here it runs once at five workspaces,
through its command line, with the operator as a real `kaito operator run` process, so that a
change to the operator, the reconciler, the emulator or the simulators that breaks it shows up
here. The checks are about shape and counting, never speed: every workspace got ready, every
figure of a row is there, the request counts are the operator's, and a restarted operator writes
nothing to a converged fleet. The measuring pieces (the recorder's latency, the request split,
/proc and Prometheus parsing) are also checked on their own against a bare store.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "control_plane"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import control_plane_harness as harness  # noqa: E402

from kaito.kube import NODE, STATEFUL_SET, WORKSPACE  # noqa: E402
from kaito.kube.emulator import Emulator, RequestInfo, RequestLog  # noqa: E402
from kaito.testing import kaito_crds  # noqa: E402

pytestmark = pytest.mark.timeout(30)

HAS_PROC = os.path.exists("/proc/self/status")

TINY = harness.Settings(counts=(5,), quiet=0.3, probes=2, converge_base=40.0)


def _load_run_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("control_plane_bench_run", BENCH_DIR / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(60)
def test_command_line_runs_five_workspaces_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results" / "control_plane.json"

    code = _load_run_script().main(["--out", str(out)], settings=TINY)

    assert code == 0
    document = json.loads(out.read_text())
    assert document["benchmark"] == "control_plane"
    assert document["settings"]["counts"] == [5]
    (row,) = document["rows"]
    assert row["count"] == 5
    assert row["provisioner"] == "fake"
    assert row["settled"] is True
    assert row["wall_s"] > 0
    assert row["apply_s"] > 0
    assert 0 < row["ready_p50_s"] <= row["ready_p99_s"]
    # The operator's own requests: it reads, creates the node, and writes status for each.
    assert row["requests_per_ws"] >= row["requests_at_ready_per_ws"] > 0
    assert row["writes_per_ws"] >= row["writes_at_ready_per_ws"] > 0
    assert sum(row["requests_by_verb"].values()) == pytest.approx(5 * row["requests_per_ws"])
    assert sum(row["writes_by_resource"].values()) == pytest.approx(5 * row["writes_per_ws"])
    assert row["writes_by_resource"]["create nodes"] == 5, "the fake provisioner, once each"
    assert row["writes_by_resource"]["patch statefulsets"] == 5
    assert "watch" not in row["requests_by_verb"], "the watches opened before the apply"
    assert row["reconciles_per_ws"] >= 1
    assert row["reconcile_results"]["error"] == 0
    # The simulators' requests go to the other listener and are counted apart.
    assert row["cluster_requests_per_ws"] > 0
    # Every workspace's node was Ready before its StatefulSet appeared.
    assert row["latency_n"] == 5
    assert 0 <= row["latency_p50_ms"] <= row["latency_p99_ms"] <= row["latency_max_ms"]
    assert row["paced_n"] == 2
    assert 0 <= row["paced_p50_ms"] <= row["paced_p99_ms"]
    assert row["paced_ready_p50_s"] > 0
    # A restarted operator reconciles every workspace once more and changes nothing.
    assert row["resync_reconciles_per_ws"] >= 1
    assert row["resync_requests_per_ws"] > 0
    assert row["resync_writes_per_ws"] == 0
    assert row["resync_writes_by_resource"] == {}
    assert row["resync_s"] > 0
    if HAS_PROC:
        assert row["peak_rss_mib"] > 10
        assert row["resync_peak_rss_mib"] > 10
        assert row["operator_cpu_s"] > 0
    printed = capsys.readouterr().out
    for header in harness.TABLE_HEADER:
        assert header in printed
    assert "5 workspaces (fake provisioner)" in printed
    assert str(out) in printed


def test_command_line_refuses_bad_counts(capsys: pytest.CaptureFixture[str]) -> None:
    run = _load_run_script()
    with pytest.raises(SystemExit):
        run.main(["--counts", "100,zero"])
    with pytest.raises(SystemExit):
        run.main(["--counts", "0"])
    assert "counts" in capsys.readouterr().err


def test_settings_are_checked() -> None:
    assert harness.FULL.counts == (100, 1000)
    assert harness.FULL.converge_timeout(1000) > harness.FULL.converge_timeout(100)
    with pytest.raises(ValueError, match="provisioner"):
        harness.Settings(counts=(1,), provisioner="aws")
    with pytest.raises(ValueError, match="counts"):
        harness.Settings(counts=())
    with pytest.raises(ValueError, match="probes"):
        harness.Settings(counts=(1,), probes=-1)


async def test_recorder_measures_from_the_last_ready_node_to_the_statefulset() -> None:
    emu = Emulator(crds=kaito_crds())
    store = emu.store
    store.create("namespaces", {"metadata": {"name": harness.BENCH_NS}})
    recorder = harness.Recorder(store)
    recorder.start(with_nodeclaims=False)
    labels = {"kaito.sh/workspace": "a", "kaito.sh/workspacenamespace": harness.BENCH_NS}

    def node(name: str, ready: str) -> dict[str, object]:
        return {
            "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }

    try:
        store.create(NODE, node("n-0", "True"))
        store.create(NODE, node("n-1", "False"))
        await asyncio.sleep(0.02)
        store.patch(
            NODE,
            None,
            "n-1",
            {"status": node("n-1", "True")["status"]},
            "application/merge-patch+json",
            subresource="status",
        )
        await asyncio.sleep(0.02)
        sts = {
            "metadata": {"name": "a", "namespace": harness.BENCH_NS, "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app": "a"}},
                "template": {
                    "metadata": {"labels": {"app": "a"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        }
        store.create(STATEFUL_SET, sts)
        ws = harness.bench_workspace(harness.seed_workspace(), "a")
        store.create(harness.WORKSPACE_V1ALPHA1, ws)
        condition = {
            "type": "WorkspaceReady",
            "status": "True",
            "reason": "WorkspaceReady",
            "message": "ready",
            "lastTransitionTime": "2025-01-01T00:00:00Z",
        }
        ready = {"conditions": [condition]}
        store.patch(
            WORKSPACE,
            harness.BENCH_NS,
            "a",
            {"status": ready},
            "application/merge-patch+json",
            subresource="status",
        )
        await recorder.wait_ready([f"{harness.BENCH_NS}/a"], within=5)

        key = f"{harness.BENCH_NS}/a"
        assert set(recorder.nodes_ready[key]) == {"nodes/n-0", "nodes/n-1"}
        (latency,) = recorder.latencies_ms([key, f"{harness.BENCH_NS}/missing"])
        # Measured from n-1, the node that turned Ready last, not from n-0.
        turned_ready = recorder.nodes_ready[key]
        created = recorder.statefulset_created[key]
        assert turned_ready["nodes/n-0"] < turned_ready["nodes/n-1"] < created
        assert latency == pytest.approx((created - turned_ready["nodes/n-1"]) * 1000)
        with pytest.raises(TimeoutError, match="1 of 1 workspaces not ready"):
            await recorder.wait_ready([f"{harness.BENCH_NS}/missing"], within=0.05)
    finally:
        await recorder.stop()


def test_request_counts_split_reads_and_writes() -> None:
    log = RequestLog()
    for info in (
        RequestInfo("get", "workspaces"),
        RequestInfo("list", "nodes"),
        RequestInfo("patch", "workspaces", subresource="status"),
        RequestInfo("create", "events"),
        RequestInfo("create", "events"),
    ):
        log.record(info)

    counts = harness.RequestCounts.of(log)

    assert counts.total == 5
    assert counts.writes == 3
    assert counts.by_verb == {"create": 2, "get": 1, "list": 1, "patch": 1}
    assert counts.writes_by_resource == {"create events": 2, "patch workspaces/status": 1}
    assert counts.reads_by_resource == {"get workspaces": 1, "list nodes": 1}


def test_prometheus_text_is_parsed_and_summed() -> None:
    text = "\n".join(
        [
            "# HELP kaito_reconcile_total Reconciles by result.",
            "# TYPE kaito_reconcile_total counter",
            'kaito_reconcile_total{result="success"} 12.0',
            'kaito_reconcile_total{result="error"} 1.0',
            "kaito_workqueue_depth 0.0",
            "kaito_reconcile_total_created 1.7e9",
        ]
    )
    samples = harness.parse_metrics(text)

    assert harness.metric_sum(samples, "kaito_reconcile_total") == 13.0
    assert harness.metric_sum(samples, "kaito_workqueue_depth") == 0.0
    assert harness.metric_sum(samples, "kaito_missing") == 0.0


def test_percentile_and_names() -> None:
    values = [float(v) for v in range(1, 101)]
    assert harness.percentile(values, 0.5) == 50.0
    assert harness.percentile(values, 0.99) == 99.0
    with pytest.raises(ValueError, match="no values"):
        harness.percentile([], 0.5)
    assert harness.workspace_names(3) == ["ws-0000", "ws-0001", "ws-0002"]
    assert harness.workspace_names(2, prefix="probe")[-1] == "probe-0001"
    ws = harness.bench_workspace(harness.seed_workspace(), "ws-0001")
    assert ws["metadata"] == {"name": "ws-0001", "namespace": harness.BENCH_NS}
    assert ws["resource"]["labelSelector"] == {"matchLabels": {"apps": "ws-0001"}}


@pytest.mark.skipif(not HAS_PROC, reason="needs /proc")
def test_process_figures_come_from_proc() -> None:
    sum(i * i for i in range(200_000))  # make sure some CPU time has been used
    rss = harness.peak_rss_mib(os.getpid())
    cpu = harness.process_cpu_seconds(os.getpid())
    assert rss is not None
    assert rss > 1
    assert cpu is not None
    assert cpu > 0
    assert harness.peak_rss_mib(2**22 + 12345) is None
    assert harness.process_cpu_seconds(2**22 + 12345) is None


def test_nan_is_written_as_null() -> None:
    row = harness.Row(
        count=1,
        provisioner="fake",
        wall_s=1.0,
        apply_s=0.1,
        ready_p50_s=1.0,
        ready_p99_s=1.0,
        requests_per_ws=1.0,
        writes_per_ws=1.0,
        requests_at_ready_per_ws=1.0,
        writes_at_ready_per_ws=1.0,
        requests_by_verb={},
        writes_by_resource={},
        reads_by_resource={},
        reconciles_per_ws=1.0,
        reconcile_results={},
        settled=True,
        latency_n=0,
        latency_p50_ms=math.nan,
        latency_p99_ms=math.nan,
        latency_max_ms=math.nan,
        peak_rss_mib=None,
        operator_cpu_s=None,
        watch_lists=0,
        cluster_cpu_s=0.5,
        cluster_requests_per_ws=2.0,
    )
    document = row.to_json()
    assert document["latency_p50_ms"] is None
    assert document["paced_p50_ms"] is None
    json.dumps(document, allow_nan=False)
