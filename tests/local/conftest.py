"""Fixtures of the local-mode tests: a private KAITO_HOME per test, one model cache for the
session (the tiny phi-3 model is generated once, in a child process, as `kaito up` does), an
emulated API server without simulators (the local kubelet is the one that runs pods), and a
registry with the hf runtime registered by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from local_support import env_for

from kaito.api import workspace_crd
from kaito.kube.emulated import EmulatedCluster
from kaito.local import generate_model, list_sessions, stop_session
from kaito.plugins import Registry
from kaito.presets import builtin_presets
from kaito.runtimes.hf._runtime import HuggingFaceRuntime


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_phi3(model_cache: Path) -> Path:
    """The generated model of tiny-phi-3-random (made once per session)."""
    preset = builtin_presets()["tiny-phi-3-random"]
    return asyncio.run(generate_model(preset, Registry(), cache_dir=model_cache))


@pytest.fixture
def kaito_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("KAITO_HOME", str(home))
    return home


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.add_runtime("hf", HuggingFaceRuntime)
    return reg


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmulatedCluster]:
    async with EmulatedCluster(
        [workspace_crd()], simulate=False, kubeconfig=tmp_path / "kubeconfig"
    ) as emulated:
        yield emulated


@pytest.fixture
def env(tmp_path: Path, model_cache: Path) -> Iterator[dict[str, str]]:
    """The environment of the test's kaito processes; whatever they leave running (a failed
    test, a killed `kaito up`) is stopped afterwards."""
    yield env_for(tmp_path / "home", model_cache)
    for state in list_sessions(tmp_path / "home"):
        stop_session(state, timeout=10)
