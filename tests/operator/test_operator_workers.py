"""The operator loop with a scripted reconciler: what each outcome of a reconcile leads to.

Each test runs a real `Operator` (without leader election) against the emulator; workspaces
and their children are written to the emulator's store, and the recording reconciler shows
which keys were reconciled, how often and how many at once.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
from operator_support import (
    RecordingReconciler,
    owned_labels,
    pod,
    running,
    settings,
    wait_until,
    workspace,
)

from kaito.kube import KubeClient
from kaito.kube.emulator import Emulator
from kaito.operator import Operator, configure_logging
from kaito.reconcile import Result, TerminalError

pytestmark = pytest.mark.timeout(20)


async def test_each_workspace_is_reconciled_when_listed_and_when_a_child_changes(
    emu: Emulator, client: KubeClient, reconciler: RecordingReconciler
) -> None:
    emu.store.seed([workspace("a"), workspace("b", "team")])
    operator = Operator(client, reconciler, settings())
    async with running(operator):
        await wait_until(lambda: reconciler.count("default/a") and reconciler.count("team/b"))
        before = reconciler.count("team/b")
        emu.store.create("pods", pod("b-0", "team", labels=owned_labels("b", "team")))
        await wait_until(lambda: reconciler.count("team/b") > before, what="the pod's workspace")
        emu.store.create("pods", pod("web", labels={"app": "web"}))
        await asyncio.sleep(0.2)
        assert set(reconciler.calls) == {"default/a", "team/b"}


async def test_a_workspace_deleted_while_queued_is_handed_to_the_reconciler(
    emu: Emulator, client: KubeClient, reconciler: RecordingReconciler
) -> None:
    emu.store.seed([workspace("gone")])
    operator = Operator(client, reconciler, settings())
    async with running(operator):
        await wait_until(lambda: reconciler.count("default/gone") == 1)
        emu.store.delete("workspaces", "default", "gone")
        await wait_until(lambda: reconciler.count("default/gone") == 2)


async def test_errors_are_retried_with_backoff_and_success_resets_it(
    emu: Emulator, client: KubeClient
) -> None:
    boom = RuntimeError("api server hiccup")
    reconciler = RecordingReconciler(script={"default/w": [boom, boom, boom, Result()]})
    emu.store.seed([workspace("w")])
    operator = Operator(client, reconciler, settings(backoff_base=0.05, backoff_cap=0.1))
    async with running(operator):
        await wait_until(lambda: reconciler.count("default/w") == 4, what="three retries")
        assert operator.queue is not None
        await wait_until(lambda: operator.queue is not None and not operator.queue.processing)
        assert operator.queue.failures("default/w") == 0, "success forgets the failures"
        await asyncio.sleep(0.3)
        assert reconciler.count("default/w") == 4, "no retry after success"
        m = operator.metrics
        assert m.sample("kaito_reconcile_total", {"result": "error"}) == 3
        assert m.sample("kaito_reconcile_total", {"result": "success"}) == 1
        assert m.sample("kaito_reconcile_errors_total") == 3
        assert m.sample("kaito_workqueue_retries_total") == 3


async def test_a_terminal_error_is_not_retried_until_the_workspace_changes(
    emu: Emulator, client: KubeClient
) -> None:
    reconciler = RecordingReconciler(
        script={"default/w": [TerminalError("the preset does not fit"), Result()]}
    )
    emu.store.seed([workspace("w")])
    operator = Operator(client, reconciler, settings(backoff_base=0.02, backoff_cap=0.05))
    async with running(operator):
        await wait_until(lambda: reconciler.count("default/w") == 1)
        await asyncio.sleep(0.3)
        assert reconciler.count("default/w") == 1
        assert operator.metrics.sample("kaito_reconcile_total", {"result": "terminal"}) == 1
        assert operator.metrics.sample("kaito_reconcile_errors_total") == 1
        emu.store.patch("workspaces", "default", "w", {"metadata": {"labels": {"edit": "1"}}})
        await wait_until(lambda: reconciler.count("default/w") == 2, what="the change")


async def test_requeue_after_brings_the_key_back_without_an_event(
    emu: Emulator, client: KubeClient
) -> None:
    reconciler = RecordingReconciler(
        script={"default/w": [Result(requeue_after=0.2), Result(requeue_after=0.2), Result()]}
    )
    emu.store.seed([workspace("w")])
    operator = Operator(client, reconciler, settings())
    async with running(operator):
        await wait_until(lambda: reconciler.count("default/w") == 3, within=3)
        await asyncio.sleep(0.4)
        assert reconciler.count("default/w") == 3
        assert operator.metrics.sample("kaito_reconcile_total", {"result": "requeue"}) == 2


async def test_concurrency_is_bounded_and_a_key_never_runs_twice_at_once(
    emu: Emulator, client: KubeClient
) -> None:
    reconciler = RecordingReconciler(delay=0.05)
    emu.store.seed([workspace(f"w{n}") for n in range(6)])
    operator = Operator(client, reconciler, settings(concurrency=3))
    async with running(operator):
        await wait_until(lambda: len(set(reconciler.finished)) == 6)
        # A burst of events for one workspace while it is being reconciled.
        for n in range(5):
            emu.store.create("pods", pod(f"w0-{n}", labels=owned_labels("w0")))
        await wait_until(lambda: reconciler.count("default/w0") >= 2)
        await asyncio.sleep(0.3)
        assert reconciler.max_running <= 3
        assert reconciler.max_running == 3, "the workers did run side by side"
        assert reconciler.max_running_per_key == 1
        assert reconciler.count("default/w0") <= 3, "the burst was de-duplicated"


async def test_sigterm_style_stop_lets_in_flight_reconciles_finish(
    emu: Emulator, client: KubeClient
) -> None:
    hold = asyncio.Event()
    reconciler = RecordingReconciler(hold=hold)
    emu.store.seed([workspace("w")])
    operator = Operator(client, reconciler, settings(shutdown_timeout=5))
    task = asyncio.create_task(operator.run())
    await wait_until(lambda: reconciler.count("default/w") == 1)
    operator.stop()
    await asyncio.sleep(0.1)
    assert not task.done(), "the operator waits for the running reconcile"
    assert operator.readiness() == (False, "stopping")
    hold.set()
    await asyncio.wait_for(task, 5)
    assert reconciler.finished == ["default/w"]
    assert operator.state == "stopped"
    assert operator.metrics.sample("kaito_reconcile_total", {"result": "success"}) == 1


async def test_reconciles_past_the_shutdown_timeout_are_cancelled(
    emu: Emulator, client: KubeClient
) -> None:
    reconciler = RecordingReconciler(hold=asyncio.Event())  # never released
    emu.store.seed([workspace("w")])
    operator = Operator(client, reconciler, settings(shutdown_timeout=0.2))
    task = asyncio.create_task(operator.run())
    await wait_until(lambda: reconciler.count("default/w") == 1)
    operator.stop()
    await asyncio.wait_for(task, 3)
    assert reconciler.finished == ["default/w"], "cancelled, and its finally ran"
    assert operator.state == "stopped"


async def test_each_reconcile_is_logged_with_key_result_and_duration(
    emu: Emulator, client: KubeClient
) -> None:
    stream = io.StringIO()
    handler = configure_logging("json", logging.INFO, stream)
    try:
        reconciler = RecordingReconciler(script={"default/w": [RuntimeError("nope"), Result()]})
        emu.store.seed([workspace("w")])
        operator = Operator(client, reconciler, settings())
        async with running(operator):
            await wait_until(lambda: reconciler.count("default/w") == 2)
            await asyncio.sleep(0.05)
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    reconciled = [e for e in lines if e["msg"] == "reconciled"]
    assert [(e["key"], e["result"]) for e in reconciled] == [
        ("default/w", "error"),
        ("default/w", "success"),
    ]
    assert reconciled[0]["level"] == "error"
    assert reconciled[0]["error"] == "RuntimeError: nope"
    assert reconciled[0]["retry_in"] == 0.05
    assert all(isinstance(e["duration"], float) for e in reconciled)
    assert any(e["msg"] == "operator started" for e in lines)


class Fatal(BaseException):
    """Something no reconcile should ever raise (not an `Exception`)."""


async def test_a_worker_that_dies_fails_the_operator(emu: Emulator, client: KubeClient) -> None:
    reconciler = RecordingReconciler(script={"default/w": [Fatal("corrupted state")]})
    emu.store.seed([workspace("w")])
    operator = Operator(client, reconciler, settings())
    with pytest.raises(Fatal):
        await asyncio.wait_for(operator.run(), 5)
    assert operator.state == "failed"
    assert not operator.healthy
    assert operator.readiness() == (False, "failed")
