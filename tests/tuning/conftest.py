"""Fixtures of the tuning tests: a session cache of tiny models (generated, as the quickstart
does), a tokenizer of the tiny phi-3, and registries for pushing adapters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kaito.presets import builtin_presets
from tests.oci.oci_registry import RunningRegistry, run_registry

TINY_PRESET = "tiny-phi-3-random"
REGISTRY_USER = "tuner"
REGISTRY_PASSWORD = "tuning-pass"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tuning-models")


@pytest.fixture(scope="session")
def phi3_model(model_cache: Path) -> Path:
    from kaito.runtimes.hf import ensure_tiny_model

    catalog = builtin_presets()
    base = catalog[catalog[TINY_PRESET].generated_from or "phi-3-mini-4k-instruct"]
    return ensure_tiny_model(base, model_cache)


@pytest.fixture(scope="session")
def phi3_tokenizer(phi3_model: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(phi3_model)


@pytest.fixture(scope="session")
def tuning_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with run_registry(
        tmp_path_factory.mktemp("tuning-registry"), {REGISTRY_USER: REGISTRY_PASSWORD}
    ) as running:
        yield running
