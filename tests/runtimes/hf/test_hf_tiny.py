"""The tiny-model generator: same architecture as the preset, loadable by the Auto classes,
the family's chat markers as single tokens, deterministic weights, and a cache that is reused
and filled atomically."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from kaito.presets import builtin_presets
from kaito.runtimes.hf import (
    CACHE_ENV,
    TinyModelError,
    TinySize,
    default_cache_dir,
    ensure_tiny_model,
    generate_tiny_model,
)

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
]


def load(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_the_phi3_model_loads_like_the_real_preset(phi3_model: Path) -> None:
    preset = builtin_presets()["phi-3-mini-4k-instruct"]
    model, tokenizer = load(phi3_model)
    assert type(model).__name__ == preset.architecture == "Phi3ForCausalLM"
    assert model.config.model_type == "phi3"
    assert model.config.architectures == ["Phi3ForCausalLM"]
    assert model.config.max_position_embeddings == preset.context_length
    assert 100_000 < sum(p.numel() for p in model.parameters()) < 1_000_000
    assert (phi3_model / "model.safetensors").is_file()
    assert tokenizer.chat_template == preset.chat_template
    for marker in ("<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>", "<|system|>"):
        assert len(tokenizer(marker, add_special_tokens=False).input_ids) == 1, marker
    end, endoftext = tokenizer.convert_tokens_to_ids(["<|end|>", "<|endoftext|>"])
    assert {end, endoftext} <= set(model.generation_config.eos_token_id)
    assert tokenizer.pad_token == "<|endoftext|>"
    marker = json.loads((phi3_model / "kaito-tiny.json").read_text())
    assert marker["preset"] == preset.name
    assert marker["architecture"] == "Phi3ForCausalLM"


def test_text_round_trips_through_the_tokenizer(phi3_model: Path) -> None:
    _, tokenizer = load(phi3_model)
    text = "Kubernetes runs containers: ümlaut, 東京, and emoji 🙂 too."
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.decode(ids) == text
    assert 500 <= len(tokenizer) <= 1000


@pytest.mark.parametrize(
    ("preset_name", "markers", "eos"),
    [
        ("llama-3.1-8b-instruct", ["<|start_header_id|>", "<|eot_id|>"], "<|eot_id|>"),
        ("qwen2.5-coder-7b-instruct", ["<|im_start|>", "<|im_end|>"], "<|im_end|>"),
        ("mistral-7b-instruct", ["[INST]", "[/INST]"], "</s>"),
        ("phi-4", ["<|im_start|>", "<|im_sep|>"], "<|im_end|>"),
        ("falcon-7b-instruct", [], "<|endoftext|>"),
    ],
)
def test_other_families_keep_their_architecture_and_markers(
    tmp_path: Path, preset_name: str, markers: list[str], eos: str
) -> None:
    preset = builtin_presets()[preset_name]
    path = generate_tiny_model(preset, tmp_path / "model")
    model, tokenizer = load(path)
    assert type(model).__name__ == preset.architecture
    assert model.config.model_type == preset.model_type
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    for marker in markers:
        assert marker in tokens, (marker, tokens[:12])
    eos_ids = model.generation_config.eos_token_id
    eos_ids = eos_ids if isinstance(eos_ids, list) else [eos_ids]
    assert tokenizer.convert_tokens_to_ids(eos) in eos_ids


def test_the_same_seed_gives_the_same_files(tmp_path: Path) -> None:
    preset = builtin_presets()["llama-3.1-8b-instruct"]
    a = generate_tiny_model(preset, tmp_path / "a", seed=5)
    b = generate_tiny_model(preset, tmp_path / "b", seed=5)
    c = generate_tiny_model(preset, tmp_path / "c", seed=6)
    for name in ("model.safetensors", "tokenizer.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_size_is_configurable(tmp_path: Path) -> None:
    preset = builtin_presets()["qwen2.5-coder-7b-instruct"]
    size = TinySize(layers=3, hidden_size=96, attention_heads=6, intermediate_size=160)
    model, _ = load(generate_tiny_model(preset, tmp_path / "m", size=size))
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (3, 96, 6)
    assert config.num_key_value_heads == 3  # the preset uses grouped-query attention


def test_ensure_reuses_the_cached_model(tmp_path: Path) -> None:
    preset = builtin_presets()["mistral-7b-instruct"]
    first = ensure_tiny_model(preset, tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = ensure_tiny_model(preset, tmp_path)
    assert again == first
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp
    other = ensure_tiny_model(preset, tmp_path, seed=1)
    assert other != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, other.name])


def test_ensure_is_safe_when_racing(tmp_path: Path) -> None:
    preset = builtin_presets()["phi-3-mini-4k-instruct"]
    size = TinySize(layers=1)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        paths = list(pool.map(lambda _: ensure_tiny_model(preset, tmp_path, size=size), range(3)))
    assert len(set(paths)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [paths[0].name]  # no leftovers
    load(paths[0])


def test_the_cache_directory_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    path = ensure_tiny_model(builtin_presets()["phi-3-mini-4k-instruct"], size=TinySize(layers=1))
    assert path.parent == tmp_path / "cache"
    monkeypatch.delenv(CACHE_ENV)
    assert default_cache_dir() == Path.home() / ".cache" / "kaito" / "models"


def test_image_text_presets_keep_their_class(tmp_path: Path) -> None:
    from transformers import AutoModelForImageTextToText

    for name in ("gemma-3-4b-instruct", "ministral-3-3b-instruct"):
        preset = builtin_presets()[name]
        model = AutoModelForImageTextToText.from_pretrained(
            generate_tiny_model(preset, tmp_path / name)
        )
        assert type(model).__name__ == preset.architecture
        assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_architectures_it_cannot_make_are_refused(tmp_path: Path) -> None:
    preset = builtin_presets()["phi-3-mini-4k-instruct"]
    with pytest.raises(TinyModelError, match="ForCausalLM and"):
        generate_tiny_model(attrs.evolve(preset, architecture="Phi3Model"), tmp_path / "a")
    unknown = attrs.evolve(preset, model_type="no-such-type", architecture="NoSuchForCausalLM")
    with pytest.raises(TinyModelError, match="cannot configure"):
        generate_tiny_model(unknown, tmp_path / "b")


def test_an_occupied_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "file").write_text("x")
    with pytest.raises(FileExistsError):
        generate_tiny_model(builtin_presets()["phi-3-mini-4k-instruct"], tmp_path / "m")


def test_a_preset_changed_with_evolve_gets_its_own_cache_entry(tmp_path: Path) -> None:
    preset = builtin_presets()["phi-3-mini-4k-instruct"]
    other = attrs.evolve(preset, context_length=2048)
    size = TinySize(layers=1)
    assert ensure_tiny_model(preset, tmp_path, size=size) != ensure_tiny_model(
        other, tmp_path, size=size
    )
