"""The tiny presets: named for what they are, documented as meaningless, copies of a real
preset's architecture and chat template served by the hf runtime, sized to fit any machine, and
with the numbers of the model kaito actually generates for them (the generator's shape rule for
each, the real generated model for tiny-phi-3-random)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaito.cli import main
from kaito.presets import Preset, builtin_presets, plan
from kaito.provisioners.local import Machine
from kaito.runtimes.hf import TinySize
from kaito.runtimes.hf._runtime import HuggingFaceRuntime

TINY = [p for p in builtin_presets().values() if p.generated]
LAPTOP = Machine(hostname="laptop", cpus=2, memory_bytes=4 * 2**30)


def test_there_are_tiny_presets_named_for_what_they_are() -> None:
    names = [p.name for p in TINY]
    assert "tiny-phi-3-random" in names
    assert len(names) >= 3
    for preset in TINY:
        base = builtin_presets()[preset.generated_from or ""]
        assert preset.name.startswith("tiny-")
        assert preset.name.endswith("-random")
        assert preset.hf_id is None
        assert preset.description is not None
        assert "meaningless" in preset.description
        assert base.name in preset.description
        assert (preset.model_type, preset.architecture) == (base.model_type, base.architecture)
        assert preset.chat_template == base.chat_template
        assert preset.context_length == base.context_length
        assert preset.runtimes == ("hf",)
        assert HuggingFaceRuntime().supports(preset)
        assert not base.generated


@pytest.mark.parametrize("preset", TINY, ids=lambda p: p.name)
def test_tiny_presets_fit_a_small_cpu_machine(preset: Preset) -> None:
    sku = LAPTOP.facts().sku()
    assert sku is not None
    chosen = plan(preset, sku)
    assert (chosen.node_count, chosen.gpus_per_node, chosen.dtype) == (1, 1, "float32")
    assert chosen.max_model_len == preset.context_length


def test_presets_show_says_the_text_is_meaningless(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets", "show", "tiny-phi-3-random"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("name: tiny-phi-3-random\ndescription:")
    assert "meaningless" in out
    assert "generatedFrom: phi-3-mini-4k-instruct" in out
    assert main(["presets", "show", "phi-3-mini-4k-instruct"]) == 0
    assert "description" not in capsys.readouterr().out


def _check_numbers(preset_name: str, model: Path) -> None:
    preset = builtin_presets()[preset_name]
    config = json.loads((model / "config.json").read_text())
    marker = json.loads((model / "kaito-tiny.json").read_text())
    assert config["num_hidden_layers"] == preset.layers
    assert config["hidden_size"] == preset.hidden_size
    assert config["num_attention_heads"] == preset.attention_heads
    assert config["num_key_value_heads"] == preset.kv_heads
    assert config["max_position_embeddings"] == preset.context_length
    assert preset.hidden_size // preset.attention_heads == preset.head_dim
    assert marker["parameters"] == preset.parameters
    weights = sum(f.stat().st_size for f in model.glob("*.safetensors"))
    assert abs(weights - preset.weight_bytes) < 0.02 * preset.weight_bytes


def test_the_generated_phi3_model_has_the_presets_numbers(tiny_phi3: Path) -> None:
    _check_numbers("tiny-phi-3-random", tiny_phi3)


@pytest.mark.parametrize("preset", TINY, ids=lambda p: p.name)
def test_every_tiny_presets_shape_is_the_generators(preset: Preset) -> None:
    """The generator's rule (TinySize defaults; half the KV heads where the base groups its
    queries), so that a change of the generator shows up here, not as a silent mis-plan."""
    size = TinySize()
    base = builtin_presets()[preset.generated_from or ""]
    grouped = base.kv_heads != base.attention_heads
    assert preset.layers == size.layers
    assert preset.hidden_size == size.hidden_size
    assert preset.attention_heads == size.attention_heads
    expected_kv = size.attention_heads // 2 if grouped else size.attention_heads
    assert preset.kv_heads == expected_kv
    assert preset.head_dim == size.hidden_size // size.attention_heads
