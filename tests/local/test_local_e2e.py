"""`kaito up` end to end, as a user runs it: separate processes, real ports, the real HF server.

1. `kaito up -f examples/quickstart.yaml --detach` (the seed's workspace with the tiny preset)
   returns once WorkspaceReady is True; `/chat` and `/v1/chat/completions` answer on the mapped
   port; `kaito get workspaces`, `chat` and `logs` work; `kaito down` leaves no process (the
   recorded ones and every descendant of `kaito up`) and frees the port.
2. A foreground `kaito up` (a stub server in a template workspace) stops everything on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from local_support import ROOT, kaito, port_is_free, post, stub_workspace

from kaito.cli import main
from kaito.local import (
    is_running,
    read_state,
    running_sessions,
    session_dir,
)
from kaito.local._kubelet import free_port

NAME = "workspace-phi-3-mini"


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def commands_with(*needles: str) -> list[str]:
    """Command lines of running processes that contain every needle."""
    found: list[str] = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in args)
        if all(n in line for n in needles) and entry.name != str(os.getpid()):
            found.append(line)
    return found


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="checks descendants through /proc")
def test_quickstart_up_detached_serves_and_down_leaves_nothing(
    tmp_path: Path,
    env: dict[str, str],
    tiny_phi3: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    up = kaito(env, "up", "-f", "examples/quickstart.yaml", "--detach", timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr
    out = up.stdout
    assert "resource.instanceType Standard_NC6s_v3 is ignored in local mode" in out
    assert "this machine: local-" in out
    assert f"{NAME}: WorkspaceReady=True (WorkspaceReady)" in out
    state = read_state(session_dir(NAME, tmp_path / "home"))
    assert state is not None
    assert state.phase == "ready"
    url = state.url
    assert f"workspace {NAME} is ready: {url}" in out
    assert f'curl -X POST {url}/chat -H "Content-Type: application/json" -d \'{{"prompt":' in out
    assert f"kaito down {NAME}" in out
    try:
        question = {"prompt": "What is Kubernetes?", "generate_kwargs": {"max_new_tokens": 8}}
        answer = post(f"{url}/chat", question)
        assert isinstance(answer["Result"], str)
        assert answer["Result"]
        completion = post(
            f"{url}/v1/chat/completions",
            {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5},
        )
        assert completion["model"] == "tiny-phi-3-random"
        assert isinstance(completion["choices"][0]["message"]["content"], str)

        # The other commands, in this process (they only read the state file and connect).
        monkeypatch.setenv("KAITO_HOME", str(tmp_path / "home"))
        assert main(["get", "workspaces"]) == 0
        header, row = capsys.readouterr().out.splitlines()
        assert header.split() == [
            "NAME", "INSTANCE", "RESOURCEREADY", "INFERENCEREADY", "WORKSPACEREADY", "AGE",
        ]  # fmt: skip
        assert row.split()[:5] == [NAME, "local-cpu", "True", "True", "True"]
        assert main(["chat", NAME, "Hello there", "--max-new-tokens", "4"]) == 0
        assert capsys.readouterr().out.strip()
        assert main(["logs", NAME]) == 0
        assert "ready: serving tiny-phi-3-random" in capsys.readouterr().out

        processes = {state.pid, *(p.pid for p in state.pods), *descendants(state.pid)}
        assert len(state.pods) == 1
        assert state.pods[0].pid in processes
    finally:
        down = kaito(env, "down")
    assert down.returncode == 0, down.stderr
    assert down.stdout == f"stopped {NAME}\n"
    assert all(gone(pid) for pid in processes), [p for p in processes if is_running(p)]
    assert port_is_free(state.port)
    assert read_state(session_dir(NAME, tmp_path / "home")) is None


@pytest.mark.timeout(60)
def test_foreground_up_stops_everything_on_ctrl_c(tmp_path: Path, env: dict[str, str]) -> None:
    spec = tmp_path / "stub.yaml"
    spec.write_text(yaml.safe_dump(stub_workspace("stub")))
    port = free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "kaito", "up", "-f", str(spec), "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if line.startswith("workspace stub is ready"):
                break
        assert lines, "kaito up printed nothing"
        assert lines[-1] == f"workspace stub is ready: http://127.0.0.1:{port}\n", lines
        assert post(f"http://127.0.0.1:{port}/chat", {"prompt": "hi"}) == {"Result": "echo: hi"}
        state = read_state(session_dir("stub", tmp_path / "home"))
        assert state is not None
        assert state.pods
        pods = [p.pid for p in state.pods]
        up.send_signal(signal.SIGINT)
        rest, _ = up.communicate(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 0, "".join(lines) + rest
    assert rest.rstrip().endswith("stopped")
    assert all(gone(pid) for pid in pods)
    assert port_is_free(port)
    assert read_state(session_dir("stub", tmp_path / "home")) is None


@pytest.mark.timeout(60)
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="looks for processes in /proc")
def test_detached_up_of_a_crashing_server_fails_fast_and_cleans_up(
    tmp_path: Path, env: dict[str, str]
) -> None:
    spec = tmp_path / "crash.yaml"
    never_ready = ["--ready-after", "600", "--exit-after", "0.3"]
    spec.write_text(yaml.safe_dump(stub_workspace("crash", args=never_ready)))
    up = kaito(env, "up", "-f", str(spec), "--detach", timeout=50)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "crash: InferenceReady=False (CrashLoopBackOff)" in up.stdout
    assert up.stderr.startswith("kaito: error: the workspace is not ready: container server of")
    assert "kaito logs crash" in up.stderr
    assert read_state(session_dir("crash", tmp_path / "home")) is None
    log = session_dir("crash", tmp_path / "home") / "pods" / "default_crash-0" / "pod.log"
    assert "stub exiting" in log.read_text()
    assert running_sessions(tmp_path / "home") == []  # nothing left running
    assert commands_with(str(spec)) == []
    assert commands_with("stub_server.py", "--ready-after 600") == []
