"""LoRA adapters: discovery, the strength convention, and what strength does to the output.

Adapters are made here with peft on the tiny phi-3 model, with random non-zero `lora_B` so that
an adapter really changes the logits. Strength 0 must reproduce the base model's greedy output
exactly (checked against transformers' `generate` on the plain model), strength 1 must not.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

import pytest
from hf_helpers import Server, StartServer, reference_greedy

from kaito.runtimes.hf import STRENGTH_FILE, STRENGTHS_ENV
from kaito.runtimes.hf._adapters import AdapterError, discover_adapters

PROMPT = "The cat sat by the window and"


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["qkv_proj", "o_proj", "down_proj"])
    with warnings.catch_warnings():  # peft asks transformers through a deprecated name
        warnings.simplefilter("ignore", FutureWarning)
        peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapter_sources(phi3_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapter-sources")
    make_adapter(phi3_model, root / "alpha", seed=1)
    make_adapter(phi3_model, root / "beta", seed=2)
    return root


def mount(sources: Path, target: Path, strengths: dict[str, str | None]) -> Path:
    """Copy the named adapters into an adapters directory, with `strength` files if given."""
    target.mkdir()
    for name, strength in strengths.items():
        (target / name).mkdir()
        for file in (sources / name).iterdir():
            (target / name / file.name).write_bytes(file.read_bytes())
        if strength is not None:
            (target / name / STRENGTH_FILE).write_text(strength)
    return target


async def greedy(server: Server, model: str, max_tokens: int = 12) -> str:
    answer = await server.complete(PROMPT, max_tokens=max_tokens, model=model)
    return str(answer["choices"][0]["text"])


async def test_strength_0_gives_the_base_output_and_1_changes_it(
    start_server: StartServer,
    adapter_sources: Path,
    phi3_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adapters = mount(adapter_sources, tmp_path / "adapters", {"alpha": None, "beta": "1.0"})
    monkeypatch.setenv(STRENGTHS_ENV, json.dumps({"alpha": 0}))
    server = await start_server(adapters_dir=str(adapters))
    base = reference_greedy(phi3_model, PROMPT, 12)
    assert await greedy(server, "alpha") == base
    assert await greedy(server, "beta") != base
    combined = await greedy(server, "tiny")  # alpha at 0 plus beta at 1
    assert combined != base


async def test_models_lists_adapters_with_their_strengths(
    start_server: StartServer,
    adapter_sources: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adapters = mount(adapter_sources, tmp_path / "adapters", {"alpha": "0.25", "beta": None})
    (adapters / "lost+found").mkdir()
    monkeypatch.setenv("beta", "0.5")  # upstream's convention: a variable named like the adapter
    server = await start_server(adapters_dir=str(adapters))
    response = await server.client.get("/v1/models")
    data = (await response.json())["data"]
    assert [(m["id"], m["parent"], m.get("strength")) for m in data] == [
        ("tiny", None, None),
        ("alpha", "tiny", 0.25),
        ("beta", "tiny", 0.5),
    ]


async def test_one_adapter_at_strength_0_serves_the_base_model(
    start_server: StartServer,
    adapter_sources: Path,
    phi3_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adapters = mount(adapter_sources, tmp_path / "adapters", {"beta": "0"})
    server = await start_server(adapters_dir=str(adapters))
    assert await greedy(server, "tiny") == reference_greedy(phi3_model, PROMPT, 12)


async def test_requests_for_different_adapters_share_a_batch(
    start_server: StartServer, adapter_sources: Path, tmp_path: Path
) -> None:
    adapters = mount(adapter_sources, tmp_path / "adapters", {"alpha": "1", "beta": "0.5"})
    server = await start_server(adapters_dir=str(adapters), max_batch_size=8)
    names = ["tiny", "alpha", "beta"]
    alone = {name: await greedy(server, name, 16) for name in names}
    assert len(set(alone.values())) == 3
    together = await asyncio.gather(*(greedy(server, name, 16) for name in names * 2))
    assert together == [alone[name] for name in names * 2]
    samples = await server.metrics()
    assert samples["kaito_hf_batch_size_count"] > samples['kaito_hf_batch_size_bucket{le="1"}']


def test_strengths_come_from_the_env_json_then_the_file_then_the_name(
    adapter_sources: Path, tmp_path: Path
) -> None:
    root = mount(adapter_sources, tmp_path / "a", {"alpha": "0.3", "beta": "0.4"})
    env = {STRENGTHS_ENV: '{"alpha": 0.9}', "beta": "0.1"}
    found = {a.name: a.strength for a in discover_adapters(root, env)}
    assert found == {"alpha": 0.9, "beta": 0.4}
    (root / "beta" / STRENGTH_FILE).unlink()
    assert {a.name: a.strength for a in discover_adapters(root, env)}["beta"] == 0.1
    assert {a.name: a.strength for a in discover_adapters(root, {})}["beta"] == 1.0
    assert discover_adapters(tmp_path / "missing", {}) == []


@pytest.mark.parametrize(
    ("env", "strength_file", "message"),
    [
        ({STRENGTHS_ENV: "{not json"}, None, "not valid JSON"),
        ({STRENGTHS_ENV: "[0.5]"}, None, "JSON object"),
        ({STRENGTHS_ENV: '{"alpha": 2}'}, None, "between 0 and 1"),
        ({STRENGTHS_ENV: '{"alpha": "x"}'}, None, "must be a number"),
        ({}, "strong", "must be a number"),
        ({}, "-0.5", "between 0 and 1"),
        ({"alpha": "nan"}, None, "between 0 and 1"),
    ],
)
def test_bad_strengths_are_errors(
    adapter_sources: Path,
    tmp_path: Path,
    env: dict[str, str],
    strength_file: str | None,
    message: str,
) -> None:
    root = mount(adapter_sources, tmp_path / "a", {"alpha": strength_file})
    with pytest.raises(AdapterError, match=message):
        discover_adapters(root, env)


def test_an_adapter_without_weights_is_an_error(adapter_sources: Path, tmp_path: Path) -> None:
    root = mount(adapter_sources, tmp_path / "a", {"alpha": None})
    (root / "alpha" / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match=r"no adapter_model\.safetensors"):
        discover_adapters(root, {})


async def test_a_broken_adapter_fails_the_load_with_a_reason(
    adapter_sources: Path, phi3_model: Path, tmp_path: Path
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from kaito.runtimes.hf import ServerOptions, create_app, wait_until_loaded

    root = mount(adapter_sources, tmp_path / "a", {"alpha": None})
    (root / "alpha" / "adapter_model.safetensors").write_bytes(b"not safetensors")
    app = create_app(ServerOptions(model=str(phi3_model), adapters_dir=str(root)))
    async with TestClient(TestServer(app)) as client:
        error = await wait_until_loaded(app)
        assert error is not None
        assert "cannot load adapters" in error
        assert (await client.get("/health")).status == 503
