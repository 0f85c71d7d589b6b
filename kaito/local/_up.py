"""`kaito up` in the foreground: start the local cluster, report, serve until told to stop.

What the user sees is the workspace's own story: one line per condition change, as the
reconciler writes them (ResourceReady, NodesReady, InferenceReady, WorkspaceReady, with reason
and message), then, once WorkspaceReady is True, the endpoint, a curl line to paste, and how to
point kubectl at the local API server. A tuning workspace reports JobStarted and
WorkspaceSucceeded instead, and once its Job has completed, where the adapter went; the run
stays up (so `kaito get` and kubectl show the result) until stopped. The same function runs
in the detached process of `kaito up --detach`, whose output goes to a log file the waiting
parent echoes.

`serve` returns when `stop` is set (Ctrl-C, SIGTERM from `kaito down`); everything it started
has stopped by then and the state file is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from kaito.api import ConditionType
from kaito.kube import WORKSPACE, RawObject
from kaito.local._cluster import LocalCluster, LocalSettings
from kaito.local._paths import PODS_DIR, session_dir
from kaito.local._state import read_state, remove_state
from kaito.local._workspace import LocalModeError, LocalWorkspace
from kaito.operator import Informer, configure_logging
from kaito.plugins import Registry

OPERATOR_LOG = "operator.log"
EXAMPLE_PROMPT = "What is Kubernetes?"
WORKSPACE_READY = ConditionType.WORKSPACE_READY.value
CONDITION_ORDER = [c.value for c in ConditionType]
FAILED_STATES = frozenset({"Failed", "NotReady"})


def curl_line(url: str, prompt: str = EXAMPLE_PROMPT) -> str:
    """The ready-to-paste request of the seed's `/chat` API."""
    body = '{"prompt": "' + prompt + '"}'
    return f"curl -X POST {url}/chat -H \"Content-Type: application/json\" -d '{body}'"


def endpoint_lines(name: str, url: str, kubeconfig: Path | str) -> list[str]:
    """What `kaito up` prints once the workspace is ready."""
    return [
        f"workspace {name} is ready: {url}",
        f"  {curl_line(url)}",
        f'  kaito chat {name} "{EXAMPLE_PROMPT}"',
        f"  KUBECONFIG={kubeconfig} kubectl get workspaces",
        f"  kaito logs {name}        kaito down {name}",
    ]


def tuning_lines(name: str, output: str | None, kubeconfig: Path | str) -> list[str]:
    """What `kaito up` prints once a tuning workspace's Job has completed; `output` is the
    output image or directory (`LocalWorkspace.output`)."""
    if output is None:
        where = "the adapter is in the workspace's tuning.output volume"
    elif output.startswith("/"):
        where = (
            f"the adapter is in {output}; serve it with an inference workspace whose "
            f"inference.adapters lists source.volumeSource.hostPath.path: {output}"
        )
    else:
        where = (
            f"the adapter is in {output}; serve it with an inference workspace whose "
            f"inference.adapters lists source.image: {output}"
        )
    return [
        f"workspace {name} finished tuning: {where}",
        f"  KUBECONFIG={kubeconfig} kubectl get workspaces",
        f"  kaito logs {name}        kaito down {name}",
    ]


class ConditionReporter:
    """Turns workspace watch events into one line per condition change.

    `on_ready(name)` is called when a workspace's WorkspaceReady turns True, `on_failed(name,
    message)` when its `status.state` turns Failed (what waiting will not fix) or NotReady (the
    workload has a problem to act on, such as a crashing server), with the message of the first
    condition that is False.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        on_ready: Callable[[str], None] | None = None,
        on_failed: Callable[[str, str], None] | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self._write = write
        self._on_ready = on_ready
        self._on_failed = on_failed
        self._clock = clock
        self._seen: dict[str, dict[str, tuple[str, str, str]]] = {}
        self._states: dict[str, str] = {}

    def __call__(self, kind: Any, event: str, obj: RawObject) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        if event == "DELETED":
            self._seen.pop(name, None)
            self._states.pop(name, None)
            self._write(f"{self._stamp()} {name}: deleted")
            return
        status = obj.get("status") or {}
        seen = self._seen.setdefault(name, {})
        conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
        conditions.sort(key=_condition_rank)
        for cond in conditions:
            type_ = str(cond.get("type", ""))
            now = (
                str(cond.get("status", "")),
                str(cond.get("reason", "")),
                str(cond.get("message", "")),
            )
            if seen.get(type_) == now:
                continue
            before = seen.get(type_)
            seen[type_] = now
            if before is not None and before[0] == now[0] and before[1] == now[1]:
                continue  # only the message moved on (a revision or count); not a change
            line = f"{self._stamp()} {name}: {type_}={now[0]}"
            if now[1]:
                line += f" ({now[1]})"
            if now[2]:
                line += f" {now[2]}"
            self._write(line)
            if type_ == WORKSPACE_READY and now[0] == "True" and self._on_ready is not None:
                self._on_ready(name)
        state = str(status.get("state") or "")
        if state != self._states.get(name):
            self._states[name] = state
            if state in FAILED_STATES and self._on_failed is not None:
                failing = [c for c in conditions if c.get("status") == "False"]
                message = str(failing[0].get("message", "")) if failing else "failed"
                self._on_failed(name, message)

    def _stamp(self) -> str:
        return self._clock().strftime("%H:%M:%S")


def _condition_rank(cond: Mapping[str, Any]) -> int:
    type_ = str(cond.get("type", ""))
    return CONDITION_ORDER.index(type_) if type_ in CONDITION_ORDER else len(CONDITION_ORDER)


def _print(out: TextIO) -> Callable[[str], None]:
    def write(line: str) -> None:
        print(line, file=out, flush=True)

    return write


async def serve(
    workspace: LocalWorkspace,
    *,
    registry: Registry,
    stop: asyncio.Event,
    settings: LocalSettings | None = None,
    home: Path | None = None,
    out: TextIO,
) -> None:
    """Run `workspace` on this machine until `stop` is set (see the module docstring).
    Raises `LocalModeError` when it cannot start (already running, port in use...)."""
    write = _print(out)
    directory = session_dir(workspace.name, home)
    existing = read_state(directory)
    if existing is not None and existing.alive and existing.pid != os.getpid():
        raise LocalModeError(
            f"workspace {workspace.name} is already up (pid {existing.pid}"
            + (f", {existing.url}" if existing.url else "")
            + f"); stop it first with: kaito down {workspace.name}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(directory / PODS_DIR, ignore_errors=True)
    handler = configure_logging(
        "text", logging.INFO, (directory / OPERATOR_LOG).open("a", encoding="utf-8")
    )
    for note in workspace.notes:
        write(f"note: {note}")
    if workspace.preset is not None and workspace.preset.generated:
        write(f"preparing the generated model of {workspace.preset.name} ...")
    cluster = LocalCluster(workspace, directory, registry=registry, settings=settings)
    try:
        await cluster.start()
        write(f"this machine: {cluster.machine.instance_type} ({cluster.machine.summary()})")
        write(f"API server: {cluster.api_url}  (kubeconfig: {cluster.kubeconfig})")
        if not workspace.tuning:
            write(f"endpoint (once ready): {cluster.url}")

        def ready(name: str) -> None:
            if name != workspace.name:
                return
            if workspace.tuning:
                for line in tuning_lines(name, workspace.output, cluster.kubeconfig):
                    write(line)
                cluster.set_phase("ready", f"workspace {name} finished tuning")
                return
            for line in endpoint_lines(name, cluster.url, cluster.kubeconfig):
                write(line)
            cluster.set_phase("ready", f"workspace {name} is ready at {cluster.url}")

        def failed(name: str, message: str) -> None:
            if name != workspace.name:
                return
            verb = "failed" if workspace.tuning else "is not ready"
            write(f"workspace {name} {verb}: {message}")
            write(f"  details: kaito logs {name}; the operator's log: {directory / OPERATOR_LOG}")
            cluster.set_phase("failed", message)

        reporter = ConditionReporter(write, on_ready=ready, on_failed=failed)
        watcher = Informer(cluster.client, WORKSPACE, reporter)
        watching = asyncio.create_task(watcher.run(), name="local workspace report")
        try:
            await stop.wait()
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        write("stopping ...")
    finally:
        await cluster.stop()
        remove_state(directory)
        logging.getLogger().removeHandler(handler)
        handler.close()
    write("stopped")
