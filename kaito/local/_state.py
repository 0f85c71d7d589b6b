"""`state.json`: how the local-mode commands find a running `kaito up`.

`kaito up` writes it when it starts and rewrites it whenever something another command needs
changes (phase, the ports it listens on, the processes it runs); `kaito get`, `chat`, `logs` and
`down` only read it. It is replaced atomically (written beside, then renamed), so a reader never
sees half a file. A state whose process is gone is stale: the run crashed or was killed, and
`kaito down` cleans up after it (the recorded pod processes included).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from kaito.local._paths import STATE_FILE, local_root
from kaito.local._process import is_running

Phase = Literal["starting", "ready", "failed"]


@attrs.frozen
class PodProcess:
    """A container process the local kubelet runs."""

    namespace: str
    pod: str
    container: str
    workspace: str
    pid: int
    start: str | None
    ports: Mapping[str, int] = attrs.field(factory=dict)
    """Container port (as text) -> the port on 127.0.0.1 the process listens on."""
    log: str = ""


def _pods(value: Iterable[PodProcess]) -> tuple[PodProcess, ...]:
    return tuple(value)


def _texts(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attrs.frozen
class SessionState:
    """One `kaito up` run."""

    name: str
    """The workspace it was started with (also the directory name)."""
    namespace: str
    pid: int
    """The `kaito up` process (the foreground one, or the detached one)."""
    start: str | None
    phase: Phase
    message: str
    directory: str
    api_url: str = ""
    kubeconfig: str = ""
    port: int = 0
    """The workspace's endpoint on 127.0.0.1."""
    runtime: str = "hf"
    endpoints: Mapping[str, int] = attrs.field(factory=dict)
    """`namespace/service` (first port) or `namespace/service:port` -> port on 127.0.0.1."""
    pods: tuple[PodProcess, ...] = attrs.field(default=(), converter=_pods)
    started: str = ""
    notes: tuple[str, ...] = attrs.field(default=(), converter=_texts)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.port else ""

    @property
    def alive(self) -> bool:
        return is_running(self.pid, self.start)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=True)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SessionState:
        fields = dict(data)
        fields["pods"] = [PodProcess(**p) for p in fields.get("pods") or []]
        return cls(**fields)


def write_state(directory: Path, state: SessionState) -> None:
    """Replace `<directory>/state.json` atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state.to_json(), handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, directory / STATE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(directory: Path) -> SessionState | None:
    """The state in `directory`, or None when there is none (or it cannot be read)."""
    try:
        data = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        return SessionState.from_json(data)
    except (OSError, ValueError, TypeError):
        return None


def remove_state(directory: Path) -> None:
    (directory / STATE_FILE).unlink(missing_ok=True)


def list_sessions(home: Path | None = None) -> list[SessionState]:
    """Every recorded run, alive or stale, by name."""
    root = local_root(home)
    if not root.is_dir():
        return []
    found = [read_state(d) for d in sorted(root.iterdir()) if d.is_dir()]
    return [s for s in found if s is not None]
