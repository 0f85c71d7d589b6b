"""The local-mode commands' error cases and bookkeeping, in process: without a running
`kaito up`, get/chat/logs say so in one line and down has nothing to do; `up` refuses files it
cannot run and a workspace that is already up; `down` cleans up after a run that died and
kills the pod processes it left; ages print the kubectl way."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kaito.cli import main
from kaito.cli._local import age
from kaito.local import SessionState, is_running, process_start_time, read_state, session_dir
from kaito.local._state import PodProcess, write_state

pytestmark = pytest.mark.timeout(20)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("kaito_home")
@pytest.mark.parametrize(
    "argv",
    [
        ("get", "workspaces"),
        ("get", "ws", "workspace-phi-3-mini"),
        ("chat", "workspace-phi-3-mini", "hello"),
        ("logs", "workspace-phi-3-mini"),
    ],
)
def test_without_a_running_kaito_up_commands_say_so(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert err == "kaito: error: no local kaito is running; start one with: kaito up -f FILE\n"


@pytest.mark.usefixtures("kaito_home")
def test_down_without_a_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "down") == (0, "no local kaito is running\n", "")
    code, _, err = run(capsys, "down", "nothing-here")
    assert code == 1
    assert err == "kaito: error: no local workspace 'nothing-here' is running\n"


@pytest.mark.usefixtures("kaito_home")
def test_up_refuses_what_it_cannot_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "up", "-f", str(tmp_path / "missing.yaml"))
    assert (code, err) == (2, f"kaito: error: {tmp_path / 'missing.yaml'}: no such file\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        (EXAMPLES / "quickstart.yaml").read_text()
        + "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n"
    )
    code, _, err = run(capsys, "up", "-f", str(extra))
    assert code == 1
    assert err == (
        "kaito: error: document 2: kind 'Deployment' (apps/v1) cannot go with the workspace; "
        "the file may hold one Workspace and v1 ConfigMaps and Secrets\n"
    )
    listed = tmp_path / "listed.yaml"
    listed.write_text((EXAMPLES / "quickstart.yaml").read_text() + "---\n- a list\n")
    code, _, err = run(capsys, "up", "-f", str(listed))
    assert code == 2
    assert err == (
        f"kaito: error: {listed} (document 2): expected a mapping (a Kubernetes object), got list\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: kaito.sh/v1alpha1\nkind: Workspace\nmetadata: {name: w}\n"
        "resource: {labelSelector: {matchLabels: {a: b}}}\n"
        "inference: {preset: {name: tiny-phi-3-randon}}\n"
    )
    code, _, err = run(capsys, "up", "-f", str(bad))
    assert code == 1
    assert err.startswith("kaito: error: the workspace cannot run locally: ")
    assert "tiny-phi-3-random" in err  # the close match is suggested


@pytest.fixture
def sleeper() -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    yield process
    process.kill()
    process.wait()


def _state(pid: int, directory: Path, pods: tuple[PodProcess, ...] = ()) -> SessionState:
    return SessionState(
        name=directory.name,
        namespace="default",
        pid=pid,
        start=process_start_time(pid),
        phase="ready",
        message="",
        directory=str(directory),
        port=1,
        pods=pods,
    )


def test_up_refuses_a_workspace_that_is_already_up(
    capsys: pytest.CaptureFixture[str], kaito_home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    directory = session_dir("workspace-phi-3-mini")
    write_state(directory, _state(sleeper.pid, directory))
    for extra in ((), ("--detach",)):
        code, _, err = run(capsys, "up", "-f", str(EXAMPLES / "quickstart.yaml"), *extra)
        assert code == 1
        assert f"workspace workspace-phi-3-mini is already up (pid {sleeper.pid}" in err
        assert "kaito down workspace-phi-3-mini" in err


def test_down_cleans_up_after_a_run_that_died(
    capsys: pytest.CaptureFixture[str], kaito_home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    directory = session_dir("workspace-phi-3-mini")
    leftover = PodProcess(
        namespace="default",
        pod="workspace-phi-3-mini-0",
        container="inference",
        workspace="workspace-phi-3-mini",
        pid=sleeper.pid,
        start=process_start_time(sleeper.pid),
    )
    # A recorded process whose pid was reused (another start time) is not touched.
    stranger = PodProcess(
        namespace="default",
        pod="x",
        container="c",
        workspace="w",
        pid=os.getpid(),
        start="not-this-process",
    )
    write_state(directory, _state(dead.pid, directory, (leftover, stranger)))
    code, out, _ = run(capsys, "down")
    assert code == 0
    assert out == (
        "cleaned up workspace-phi-3-mini (its kaito up had already exited; "
        "killed 1 leftover process(es))\n"
    )
    sleeper.wait(timeout=5)
    assert not is_running(sleeper.pid)
    assert read_state(directory) is None


def test_logs_of_a_finished_run_are_still_readable(
    capsys: pytest.CaptureFixture[str], kaito_home: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    other = session_dir("other")
    write_state(other, _state(sleeper.pid, other))  # some run is alive, not this one
    log = session_dir("workspace-phi-3-mini") / "pods" / "default_workspace-phi-3-mini-0"
    log.mkdir(parents=True)
    (log / "pod.log").write_text("server says hi\n")
    assert run(capsys, "logs", "workspace-phi-3-mini") == (0, "server says hi\n", "")


def test_age_is_printed_the_kubectl_way() -> None:
    now = datetime(2025, 1, 10, 12, 0, 0, tzinfo=UTC)

    def ago(seconds: int) -> str:
        then = datetime.fromtimestamp(now.timestamp() - seconds, UTC)
        return age(then.strftime("%Y-%m-%dT%H:%M:%SZ"), now)

    assert [ago(s) for s in (5, 119, 185, 300, 1500, 3 * 3600 + 240, 20 * 3600, 5 * 86400)] == [
        "5s", "119s", "3m5s", "5m", "25m", "3h4m", "20h", "5d",
    ]  # fmt: skip
    assert age("yesterday") == "<unknown>"
