"""What the local-mode commands do to runs they did not start: find, detach, wait, stop.

`kaito up --detach` starts `kaito up` again as a process of its own (a new session, so it
outlives the terminal; output to `<run dir>/kaito-up.log`) and waits for its state file to say
ready or failed, echoing the log meanwhile so the user sees the same condition lines as in the
foreground. `kaito down` sends that process SIGTERM, which stops its pods in order; if it does
not end in time it is killed, and so is every pod process the state file recorded that is
still running (a run that crashed leaves them behind). Only processes whose pid *and* start
time match the record are ever signalled.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from kaito.local._paths import DAEMON_LOG
from kaito.local._process import is_running, stop_process
from kaito.local._state import SessionState, list_sessions, read_state, remove_state
from kaito.local._workspace import LocalModeError


@attrs.frozen
class StopReport:
    """What `stop_session` did."""

    name: str
    was_running: bool
    graceful: bool
    """The run stopped by itself on SIGTERM (its pods in order)."""
    killed: tuple[int, ...] = ()
    """Recorded pod processes that had to be killed afterwards."""


def running_sessions(home: Path | None = None) -> list[SessionState]:
    """Runs whose `kaito up` process is alive."""
    return [s for s in list_sessions(home) if s.alive]


def no_run_message() -> str:
    return "no local kaito is running; start one with: kaito up -f FILE"


def find_session(name: str, home: Path | None = None) -> SessionState:
    """The live run that serves workspace `name` (started for it, or running it beside its
    own); `LocalModeError` names the running ones otherwise."""
    sessions = running_sessions(home)
    for state in sessions:
        if state.name == name:
            return state
    for state in sessions:
        if any(p.workspace == name for p in state.pods) or any(
            key.split("/", 1)[-1] == name for key in state.endpoints
        ):
            return state
    if not sessions:
        raise LocalModeError(no_run_message())
    names = ", ".join(s.name for s in sessions)
    raise LocalModeError(f"no local workspace {name!r} is running (running: {names})")


def endpoint_of(state: SessionState, name: str) -> str:
    """The URL of workspace `name`'s Service in a run."""
    if name == state.name and state.port:
        return state.url
    for key, port in state.endpoints.items():
        if key.split("/", 1)[-1] == name:
            return f"http://127.0.0.1:{port}"
    raise LocalModeError(f"workspace {name} has no endpoint yet")


def stop_session(state: SessionState, *, timeout: float = 30.0) -> StopReport:
    """Stop a run and everything it started (see the module docstring)."""
    was_running = state.alive
    graceful = stop_process(state.pid, state.start, timeout=timeout) if was_running else False
    # What the run wrote last (its processes) is in the file it may have updated meanwhile.
    latest = read_state(Path(state.directory)) or state
    killed: list[int] = []
    for pod in {(p.pid, p.start): p for p in (*state.pods, *latest.pods)}.values():
        if is_running(pod.pid, pod.start):
            stop_process(pod.pid, pod.start, timeout=5.0)
            killed.append(pod.pid)
    remove_state(Path(state.directory))
    return StopReport(state.name, was_running, graceful and not killed, tuple(killed))


def spawn_detached(argv: Sequence[str], directory: Path) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own, output appended to `<directory>/kaito-up.log`."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / DAEMON_LOG).open("ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(os.environ),
        )


def wait_until_up(
    process: subprocess.Popen[bytes],
    directory: Path,
    *,
    echo: Callable[[str], None],
    timeout: float,
    log_offset: int = 0,
    poll: float = 0.2,
) -> SessionState:
    """Wait for a detached run to report ready, echoing its log from `log_offset`. Raises
    `LocalModeError` when it fails, exits, or is not ready within `timeout` seconds (it is
    stopped then)."""
    log_path = directory / DAEMON_LOG
    offset = log_offset
    deadline = time.monotonic() + timeout
    pending = ""

    def pump() -> None:
        nonlocal offset, pending
        try:
            with log_path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except OSError:
            return
        offset += len(chunk)
        pending += chunk.decode("utf-8", "replace")
        *lines, pending = pending.split("\n")
        for line in lines:
            echo(line)

    while True:
        pump()
        state = read_state(directory)
        mine = state is not None and state.pid == process.pid
        if mine and state is not None and state.phase == "ready":
            pump()
            return state
        if mine and state is not None and state.phase == "failed":
            pump()
            stop_session(state)
            raise LocalModeError(
                f"the workspace is not ready: {state.message} (stopped it; the server's log: "
                f"kaito logs {state.name})"
            )
        code = process.poll()
        if code is not None:
            pump()
            if pending:
                echo(pending)
            raise LocalModeError(
                f"kaito up exited (code {code}) before the workspace was ready; its log: {log_path}"
            )
        if time.monotonic() >= deadline:
            if mine and state is not None:
                stop_session(state)
            else:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            raise LocalModeError(
                f"the workspace was not ready within {timeout:g}s; stopped it (log: {log_path})"
            )
        time.sleep(poll)
