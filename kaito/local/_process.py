"""Processes the local mode starts, and how it makes sure they are gone.

A pid alone is not an identity: once a process has exited, the system may give its number to
another one, and `kaito down` must never signal a stranger. So every recorded pid comes with the
process's start time (field 22 of `/proc/<pid>/stat`, in clock ticks since boot), and a process
counts as ours only while both match. Where `/proc` does not exist the start time is None and
the pid alone is trusted.

Pods and the detached `kaito up` run in sessions of their own (`start_new_session=True`): a
Ctrl-C in the terminal reaches only the foreground process, which then stops its pods in order,
and stopping a pod signals its whole process group, so whatever the server started goes too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def process_start_time(pid: int) -> str | None:
    """The start time of process `pid` (an opaque token), or None when it is unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces or parentheses.
    fields = text[text.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text[text.rfind(")") + 2 :].split()
    return bool(fields) and fields[0] == "Z"


def is_running(pid: int, start: str | None = None) -> bool:
    """Whether process `pid` exists (and is not a zombie), and is the one that started at
    `start` when that is given and known."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to someone else: not ours if the start time differs
    if _zombie(pid):
        return False
    if start is not None:
        current = process_start_time(pid)
        if current is not None and current != start:
            return False
    return True


def leads_group(pid: int) -> bool:
    """Whether `pid` leads its own process group (started in a session of its own)."""
    try:
        return os.getpgid(pid) == pid
    except (ProcessLookupError, PermissionError):
        return False


def signal_process(pid: int, sig: int, *, group: bool) -> None:
    """Send `sig` to the process group `pid` leads (`group`), or to `pid` alone; a process
    or group that is gone is fine. A group is never retried as a single pid: once the group is
    empty its number may belong to someone else."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def wait_gone(pid: int, start: str | None, timeout: float) -> bool:
    """Poll until the process is gone; True if it went within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while is_running(pid, start):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def stop_process(pid: int, start: str | None, *, timeout: float = 10.0) -> bool:
    """SIGTERM, wait up to `timeout`, then SIGKILL: True once the process is gone. A process
    that leads its group is stopped with its group. One that is not running (or is no longer
    the recorded one) is left alone."""
    if not is_running(pid, start):
        return True
    group = leads_group(pid)
    signal_process(pid, signal.SIGTERM, group=group)
    gone = wait_gone(pid, start, timeout)
    if not gone or group:
        # Whatever the leader left behind in its group goes too (at once: the group's number
        # is only safe to use while some member still holds it).
        signal_process(pid, signal.SIGKILL, group=group)
    return gone or wait_gone(pid, start, 5.0)
