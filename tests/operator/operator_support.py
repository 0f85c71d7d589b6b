"""Helpers of the operator tests: recording reconcilers, sample objects, polling, running."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs

from kaito.operator import Operator, OperatorSettings
from kaito.reconcile import Result

Outcome = Result | BaseException | Callable[[str], Any]


@attrs.define
class RecordingReconciler:
    """A reconciler that records each call and answers from a script per key.

    `script[key]` is a list of outcomes used in turn (the last one repeats): a `Result` is
    returned, an exception raised. `hold` makes every call wait until the event is set, to keep
    reconciles in flight. It tracks the most reconciles that ran at once, overall and per key.
    """

    script: dict[str, list[Outcome]] = attrs.field(factory=dict)
    delay: float = 0.0
    hold: asyncio.Event | None = None
    calls: list[str] = attrs.field(factory=list)
    finished: list[str] = attrs.field(factory=list)
    running: collections.Counter[str] = attrs.field(factory=collections.Counter)
    max_running: int = 0
    max_running_per_key: int = 0

    async def reconcile(self, key: str) -> Result:
        self.calls.append(key)
        self.running[key] += 1
        self.max_running = max(self.max_running, sum(self.running.values()))
        self.max_running_per_key = max(self.max_running_per_key, self.running[key])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.hold is not None:
                await self.hold.wait()
            outcomes = self.script.get(key) or [Result()]
            index = min(self.calls.count(key) - 1, len(outcomes) - 1)
            outcome = outcomes[index]
            if isinstance(outcome, BaseException):
                raise outcome
            if isinstance(outcome, Result):
                return outcome
            return Result()
        finally:
            self.running[key] -= 1
            self.finished.append(key)

    def count(self, key: str) -> int:
        return self.calls.count(key)


async def wait_until(
    predicate: Callable[[], bool], within: float = 5.0, interval: float = 0.02, what: str = ""
) -> None:
    """Poll `predicate` until it holds; fail the test after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(interval)


def settings(**overrides: Any) -> OperatorSettings:
    """Settings for tests: loopback ports picked by the OS, fast timings, no leader election."""
    values: dict[str, Any] = {
        "metrics_addr": "127.0.0.1:0",
        "health_addr": "127.0.0.1:0",
        "leader_election": False,
        "lease_namespace": "kaito-system",
        "lease_duration": 2.0,
        "renew_deadline": 1.5,
        "retry_period": 0.1,
        "backoff_base": 0.05,
        "backoff_cap": 0.4,
        "shutdown_timeout": 2.0,
        "concurrency": 2,
    }
    values.update(overrides)
    return OperatorSettings(**values)


@contextlib.asynccontextmanager
async def running(operator: Operator) -> AsyncIterator[asyncio.Task[None]]:
    """Run the operator in a task for the block; stop it gracefully afterwards."""
    task = asyncio.create_task(operator.run())
    try:
        await asyncio.wait_for(operator.started.wait(), 5)
        yield task
    finally:
        operator.stop()
        try:
            await asyncio.wait_for(task, 10)
        except Exception:
            task.cancel()
            raise


def workspace(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    """A minimal valid Workspace (the seed's phi-3 inference shape)."""
    return {
        "apiVersion": "kaito.sh/v1beta1",
        "kind": "Workspace",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "resource": {
            "instanceType": "Standard_NC6s_v3",
            "labelSelector": {"matchLabels": {"apps": name}},
        },
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    }


def pod(
    name: str,
    namespace: str = "default",
    *,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def owned_labels(workspace_name: str, workspace_namespace: str = "default") -> dict[str, str]:
    """The labels kaito puts on everything it creates for a workspace."""
    return {
        "kaito.sh/workspace": workspace_name,
        "kaito.sh/workspacenamespace": workspace_namespace,
    }
