"""`python -m kaito.oci`: push and pull with a docker config, exit codes, and the entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kaito.oci._cli import main
from tests.oci.conftest import PASSWORD, USER
from tests.oci.oci_registry import RunningRegistry

pytestmark = pytest.mark.timeout(60)


def test_push_then_pull_with_a_docker_config(
    auth_registry: RunningRegistry,
    adapter_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = auth_registry.docker_config(tmp_path / "config.json", USER, PASSWORD)
    reference = f"{auth_registry.host}/cli/adapter:v1"
    assert (
        main(
            ["push", str(adapter_dir), reference, "--auth-file", str(config), "--annotation", "a=b"]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith(f"{reference}@sha256:")
    env = {"KAITO_OCI_AUTH_FILE": str(config)}
    assert main(["pull", reference, str(tmp_path / "out"), "--quiet"], env) == 0
    assert (tmp_path / "out" / "adapter_config.json").read_bytes() == (
        adapter_dir / "adapter_config.json"
    ).read_bytes()
    assert main(["pull", "--data", reference, str(tmp_path / "data")], env) == 0
    assert "2 files" in capsys.readouterr().out
    # Several configs (a pod's pull secrets): one without the registry is passed over.
    other = tmp_path / "other.json"
    other.write_text('{"auths": {"elsewhere.example": {"username": "x", "password": "y"}}}')
    several = ["--auth-file", str(other), "--auth-file", str(config)]
    assert main(["pull", reference, str(tmp_path / "again"), *several]) == 0
    assert (tmp_path / "again" / "adapter_config.json").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pull", "{host}/cli/adapter:v1", "{tmp}/x", "--auth-file", "{bad}"], 3, "rejected"),
        (["pull", "{host}/cli/none:v1", "{tmp}/x", "--auth-file", "{good}"], 4, "does not exist"),
        (["pull", "Not A Reference", "{tmp}/x"], 2, "invalid image reference"),
        (["pull", "{host}/cli/adapter:v1", "{tmp}/x", "--auth-file", "{tmp}/nope"], 2, "cannot"),
        (["push", "{tmp}", "{host}/cli/x:v1", "--auth-file", "{good}"], 4, "not an adapter"),
        (["push", "{tmp}", "{host}/cli/x:v1", "--annotation", "novalue"], 2, "KEY=VALUE"),
    ],
)
def test_failures_exit_with_their_code_and_say_why(
    auth_registry: RunningRegistry,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    good = auth_registry.docker_config(tmp_path / "good.json", USER, PASSWORD)
    bad = auth_registry.docker_config(tmp_path / "bad.json", USER, "wrong")
    values = {"host": auth_registry.host, "tmp": str(tmp_path), "good": str(good), "bad": str(bad)}
    assert main([a.format(**values) for a in args]) == code
    assert message in capsys.readouterr().err


def test_the_module_runs_as_an_init_container_would(
    registry: RunningRegistry, adapter_dir: Path, tmp_path: Path
) -> None:
    reference = f"{registry.host}/cli/module:v1"
    assert main(["push", str(adapter_dir), reference, "--quiet"]) == 0
    done = subprocess.run(
        [sys.executable, "-m", "kaito.oci", "pull", reference, str(tmp_path / "adapter" / "x")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "adapter" / "x")
    assert (tmp_path / "adapter" / "x" / "adapter_model.safetensors").is_file()
