"""Fixtures of the OCI tests: one plain and one htpasswd-protected registry per session, and a
small adapter directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.oci.oci_registry import RunningRegistry, run_registry

USER = "kaito"
PASSWORD = "s3cret-pass"


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with run_registry(tmp_path_factory.mktemp("registry-open")) as running:
        yield running


@pytest.fixture(scope="session")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with run_registry(tmp_path_factory.mktemp("registry-auth"), {USER: PASSWORD}) as running:
        yield running


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    """An adapter directory: peft's two files (contents need not be real for the transport)."""
    directory = tmp_path / "adapter"
    directory.mkdir()
    (directory / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}\n')
    (directory / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 64)
    return directory
