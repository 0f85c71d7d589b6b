"""Which model a run tunes, and how the base loads: presets, local-only, chat templates, QLoRA."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaito.tuning import ConfigError, ModelError, ModelSource, parse_config, resolve_model
from kaito.tuning._model import bitsandbytes_config, load_base
from tests.tuning.conftest import TINY_PRESET


def test_presets_resolve_to_their_hugging_face_id_or_generated_model(model_cache: Path) -> None:
    real = resolve_model(preset="phi-3-mini-4k-instruct")
    assert real.location == "microsoft/Phi-3-mini-4k-instruct"
    assert real.name == "phi-3-mini-4k-instruct"
    tiny = resolve_model(preset=TINY_PRESET, cache_dir=model_cache)
    assert Path(tiny.location).is_dir()
    assert tiny.name == TINY_PRESET
    baked = resolve_model(preset="phi-3-mini-4k-instruct", model="/weights")
    assert (baked.location, baked.name) == ("/weights", "phi-3-mini-4k-instruct")
    assert resolve_model(model="org/model") == ModelSource("org/model", "org/model")


def test_unknown_or_missing_models_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'phi-9'"):
        resolve_model(preset="phi-9")
    with pytest.raises(ConfigError, match="no model given"):
        resolve_model()


def test_local_files_only_never_downloads() -> None:
    config = parse_config("ModelConfig:\n  local_files_only: true\n")
    with pytest.raises(ModelError, match="not in the local Hugging Face cache"):
        load_base(ModelSource("kaito-test/not-cached", "x"), config)


def test_a_chat_template_can_be_inline_or_a_file(phi3_model: Path, tmp_path: Path) -> None:
    inline = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    config = parse_config(f"ModelConfig:\n  chat_template: {inline!r}\n")
    source = ModelSource(str(phi3_model), TINY_PRESET)
    base = load_base(source, config)
    assert base.tokenizer.chat_template == inline
    assert base.context_length == 4096
    assert base.method == "lora"
    template = tmp_path / "template.jinja"
    template.write_text(inline)
    from_file = load_base(source, parse_config(f"ModelConfig:\n  chat_template: {template}\n"))
    assert from_file.tokenizer.chat_template == inline
    with pytest.raises(ConfigError, match=r"ModelConfig\.chat_template: no file"):
        load_base(source, parse_config("ModelConfig:\n  chat_template: /no/such/file\n"))


def test_a_model_that_cannot_load_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load the model"):
        load_base(ModelSource(str(tmp_path), "empty"), parse_config(""))


def test_the_quantization_section_becomes_a_bitsandbytes_config() -> None:
    config = parse_config("", "qlora")
    quantization = bitsandbytes_config(config).to_dict()
    assert quantization["load_in_4bit"] is True
    assert quantization["bnb_4bit_quant_type"] == "nf4"
    assert quantization["bnb_4bit_compute_dtype"] == "bfloat16"
    assert quantization["bnb_4bit_use_double_quant"] is True
