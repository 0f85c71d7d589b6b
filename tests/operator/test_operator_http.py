"""/healthz, /readyz and /metrics over HTTP, and the formats of the structured logs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import re
from collections.abc import Iterator

import aiohttp
import pytest
from operator_support import RecordingReconciler, running, settings, wait_until, workspace

from kaito.kube import KubeClient
from kaito.kube.emulator import Emulator
from kaito.operator import Operator, configure_logging
from kaito.operator._server import parse_address
from kaito.reconcile import Result

pytestmark = pytest.mark.timeout(20)


async def fetch(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def sample(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    assert match is not None, f"{name}{{{labels}}} not in the metrics"
    return float(match.group(1))


METRIC_NAMES = (
    "kaito_reconcile_total",
    "kaito_reconcile_errors_total",
    "kaito_reconcile_duration_seconds_bucket",
    "kaito_reconcile_active",
    "kaito_workqueue_depth",
    "kaito_workqueue_adds_total",
    "kaito_workqueue_retries_total",
    "kaito_watch_lists_total",
    "kaito_leader",
    "kaito_workspaces",
)


async def test_health_readiness_and_metrics_endpoints(emu: Emulator, client: KubeClient) -> None:
    ready_condition = {
        "type": "WorkspaceReady",
        "status": "True",
        "reason": "Ready",
        "message": "",
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }
    emu.store.seed(
        [workspace("a"), {**workspace("b"), "status": {"conditions": [ready_condition]}}]
    )
    # The first list of workspaces is slow: readiness must wait for it.
    emu.faults.add(verb="list", plural="workspaces", latency=0.5)
    reconciler = RecordingReconciler(script={"default/a": [RuntimeError("x"), Result()]})
    operator = Operator(client, reconciler, settings())
    async with running(operator):
        health = operator.server.url("health")
        metrics_url = operator.server.url("metrics") + "/metrics"
        assert health != operator.server.url("metrics"), "two listeners on two ports"
        assert await fetch(health + "/healthz") == (200, "ok\n")
        status, text = await fetch(health + "/readyz")
        assert (status, text) == (503, "leading; waiting for the watches to sync\n")
        await wait_until(lambda: operator.synced)
        assert await fetch(health + "/readyz") == (200, "leading; watches synced\n")

        await wait_until(lambda: reconciler.count("default/a") == 2)
        status, text = await fetch(metrics_url)
        assert status == 200
        for name in METRIC_NAMES:
            assert f"\n{name}" in text, name
        assert sample(text, "kaito_reconcile_total", 'result="success"') >= 2
        assert sample(text, "kaito_reconcile_total", 'result="error"') == 1
        assert sample(text, "kaito_reconcile_errors_total") == 1
        assert sample(text, "kaito_reconcile_duration_seconds_count") >= 3
        assert sample(text, "kaito_workqueue_adds_total") >= 3
        assert sample(text, "kaito_workqueue_retries_total") == 1
        assert sample(text, "kaito_watch_lists_total", 'kind="Workspace"') == 1
        assert sample(text, "kaito_workspaces", 'condition="WorkspaceReady",status="True"') == 1
        assert sample(text, "kaito_workspaces", 'condition="WorkspaceReady",status="False"') == 0
        assert sample(text, "kaito_leader") == 0, "no leader election: no lease held"

        # The workspace gauge follows the watch cache.
        not_ready = {**ready_condition, "status": "False", "reason": "Pending"}
        emu.store.patch(
            "workspaces",
            "default",
            "a",
            {"status": {"conditions": [not_ready]}},
            subresource="status",
        )
        await wait_until(
            lambda: any(
                (w.get("status") or {}).get("conditions")
                for w in operator.informers[0].objects()
                if w["metadata"]["name"] == "a"
            )
        )
        _, text = await fetch(metrics_url)
        assert sample(text, "kaito_workspaces", 'condition="WorkspaceReady",status="False"') == 1
        assert sample(text, "kaito_workspaces", 'condition="WorkspaceReady",status="True"') == 1


async def test_one_address_serves_all_three_paths(emu: Emulator, client: KubeClient) -> None:
    probe = settings()
    operator = Operator(client, RecordingReconciler(), probe)
    async with running(operator):
        await wait_until(lambda: operator.synced)
        port = operator.server.bound["health"][1]
    # Now bind both roles to that (now free) port.
    shared = f"127.0.0.1:{port}"
    operator = Operator(
        client, RecordingReconciler(), settings(metrics_addr=shared, health_addr=shared)
    )
    async with running(operator):
        base = f"http://127.0.0.1:{port}"
        assert operator.server.url("metrics") == operator.server.url("health") == base
        await wait_until(lambda: operator.synced)
        assert (await fetch(base + "/healthz"))[0] == 200
        assert (await fetch(base + "/readyz"))[0] == 200
        assert "kaito_leader" in (await fetch(base + "/metrics"))[1]


async def test_a_follower_is_ready_while_standing_by(emu: Emulator, client: KubeClient) -> None:
    emu.store.create(
        "leases",
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "busy", "namespace": "kaito-system"},
            "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 60},
        },
    )
    operator = Operator(
        client, RecordingReconciler(), settings(leader_election=True, lease_name="busy")
    )
    async with running(operator):
        await wait_until(lambda: operator.state == "standby")
        assert await fetch(operator.server.url("health") + "/readyz") == (
            200,
            "standing by for the lease\n",
        )
        _, text = await fetch(operator.server.url("metrics") + "/metrics")
        assert sample(text, "kaito_leader") == 0


async def test_endpoints_are_closed_after_the_operator_stops(
    emu: Emulator, client: KubeClient
) -> None:
    operator = Operator(client, RecordingReconciler(), settings())
    async with running(operator):
        url = operator.server.url("health") + "/healthz"
        assert (await fetch(url))[0] == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(url)


async def test_a_port_in_use_fails_the_start(emu: Emulator, client: KubeClient) -> None:
    first = Operator(client, RecordingReconciler(), settings())
    async with running(first):
        taken = f"127.0.0.1:{first.server.bound['metrics'][1]}"
        second = Operator(client, RecordingReconciler(), settings(metrics_addr=taken))
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            await asyncio.wait_for(second.run(), 5)
        assert second.state == "starting"


def test_addresses_are_parsed() -> None:
    assert parse_address("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_address(":8081") == ("0.0.0.0", 8081)
    assert parse_address("[::1]:9090") == ("::1", 9090)
    for bad in ("8080", "host:port", "host:70000"):
        with pytest.raises(ValueError, match="address"):
            parse_address(bad)


# -- logs --------------------------------------------------------------------------------------


@contextlib.contextmanager
def captured_logs(log_format: str, level: int | str) -> Iterator[io.StringIO]:
    """Configure kaito's logging into a buffer for the block, then undo it."""
    root = logging.getLogger()
    old_level = root.level
    stream = io.StringIO()
    handler = configure_logging(log_format, level, stream)  # type: ignore[arg-type]
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_text_logs_are_key_value_lines() -> None:
    with captured_logs("text", "info") as stream:
        logger = logging.getLogger("kaito.operator.test")
        fields = {
            "key": "default/phi 3",
            "result": "success",
            "duration": 0.0123456789,
            "ready": True,
            "note": None,
        }
        logger.info("reconciled", extra={"fields": fields})
        logger.debug("not shown", extra={"fields": {"a": 1}})
        logger.warning('a plain "quoted" message')
    first, second = stream.getvalue().splitlines()
    assert re.match(r"^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info ", first)
    assert first.endswith(
        'logger=kaito.operator.test msg=reconciled key="default/phi 3" result=success '
        'duration=0.012346 ready=True note=""'
    )
    assert "level=warning" in second
    assert second.endswith(r'msg="a plain \"quoted\" message"')


def test_json_logs_are_one_object_per_line() -> None:
    with captured_logs("json", logging.DEBUG) as stream:
        logger = logging.getLogger("kaito.operator.test")
        logger.debug("watch expired", extra={"fields": {"kind": "Pod", "count": 3}})
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("failed")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "msg", "kind", "count")} == {
        "level": "debug",
        "logger": "kaito.operator.test",
        "msg": "watch expired",
        "kind": "Pod",
        "count": 3,
    }
    assert second["level"] == "error"
    assert "ValueError: bad" in second["error"]


def test_configure_logging_replaces_its_own_handler() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    first = configure_logging("text", "info", io.StringIO())
    second = configure_logging("json", "info", io.StringIO())
    try:
        assert first not in root.handlers
        assert len(root.handlers) == before + 1
    finally:
        root.removeHandler(second)
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "info")  # type: ignore[arg-type]
