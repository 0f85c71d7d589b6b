"""The tuning config: upstream's ConfigMap shape, kaito's defaults, and strict rejection."""

from __future__ import annotations

from pathlib import Path

import pytest

import kaito.tuning
from kaito.tuning import ConfigError, Method, default_config_text, load_config, parse_config

EXPORTED = {
    "ConfigError",
    "Conversation",
    "DataCollator",
    "DataError",
    "DatasetConfig",
    "DownloadError",
    "DownloadPolicy",
    "LoadedData",
    "LoraConfig",
    "Message",
    "Method",
    "MetricsServer",
    "ModelConfig",
    "ModelError",
    "ModelSource",
    "OutputError",
    "QuantizationConfig",
    "TrainingArguments",
    "TrainingResult",
    "TuningConfig",
    "TuningError",
    "TuningMetrics",
    "TuningOptions",
    "TuningOutcome",
    "default_config_text",
    "download_urls",
    "fetch_urls",
    "load_config",
    "load_conversations",
    "main",
    "parse_config",
    "parse_options",
    "resolve_model",
    "run_tuning",
    "train_adapter",
}

# Upstream kaito's default tuning ConfigMaps (charts/kaito/workspace/templates/*-params.yaml):
# the same keys and values, which must load unchanged.
UPSTREAM_QLORA = """\
training_config:
  ModelConfig:
    torch_dtype: "bfloat16"
    local_files_only: true
    device_map: "auto"
  QuantizationConfig:
    load_in_4bit: true
    bnb_4bit_quant_type: "nf4"
    bnb_4bit_compute_dtype: "bfloat16"
    bnb_4bit_use_double_quant: true
  LoraConfig:
    r: 8
    lora_alpha: 8
    lora_dropout: 0.0
  TrainingArguments:
    output_dir: "/mnt/results"
    ddp_find_unused_parameters: false
    save_strategy: "epoch"
    per_device_train_batch_size: 1
  DataCollator:
    mlm: true
  DatasetConfig:
    shuffle_dataset: true
    train_test_split: 1
"""


def test_the_facade_exports_exactly_the_intended_names() -> None:
    assert set(kaito.tuning.__all__) == EXPORTED
    assert len(kaito.tuning.__all__) == len(EXPORTED)


def test_each_method_has_shipped_defaults() -> None:
    lora = load_config(None, Method.LORA)
    qlora = load_config(None, "qlora")
    assert lora.method is Method.LORA
    assert qlora.method is Method.QLORA
    assert qlora.quantization.bnb_4bit_quant_type == "nf4"
    assert not qlora.quantization.fallback_to_lora
    assert lora.lora.r == 8
    assert lora.training.learning_rate == pytest.approx(2e-4)
    assert "training_config:" in default_config_text("lora")


def test_upstreams_configmap_loads_unchanged() -> None:
    config = parse_config(UPSTREAM_QLORA, "qlora")
    assert config.method is Method.QLORA
    assert config.model.torch_dtype == "bfloat16"
    assert config.model.local_files_only
    assert config.training.output_dir == "/mnt/results"
    assert config.collator.mlm
    assert config.dataset.train_test_split == 1.0


def test_a_user_config_is_merged_over_the_defaults_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "tuning.yaml"
    path.write_text(
        "training_config:\n"
        "  TrainingArguments:\n"
        "    num_train_epochs: 1\n"
        "    learning_rate: 1e-3\n"
        "    warmup_ratio: 0.1\n"
        "    logging_steps: 5\n"
        "  LoraConfig:\n"
        "    target_modules: [qkv_proj, o_proj]\n"
    )
    config = load_config(path, "lora")
    assert config.training.per_device_train_batch_size == 1  # from the defaults
    assert config.training.learning_rate == pytest.approx(1e-3)  # YAML 1.1's string, a number
    assert config.lora.target_modules == ["qkv_proj", "o_proj"]
    kwargs = config.training.trainer_kwargs()
    assert kwargs["warmup_steps"] == pytest.approx(0.1)
    assert "warmup_ratio" not in kwargs
    assert kwargs["logging_steps"] == 5
    assert isinstance(kwargs["logging_steps"], int)
    assert "output_dir" not in kwargs


def test_sections_may_sit_at_the_top_level_and_quantization_decides_the_method() -> None:
    config = parse_config("QuantizationConfig:\n  load_in_4bit: false\n", "qlora")
    assert config.method is Method.LORA
    assert parse_config("QuantizationConfig: {load_in_8bit: true}\n").method is Method.QLORA
    assert parse_config("") == load_config(None)


def test_unknown_keys_and_wrong_types_are_rejected_with_their_path() -> None:
    text = (
        "training_config:\n"
        "  TrainingArguments:\n"
        "    num_train_epochs: three\n"
        "    learnig_rate: 0.1\n"
        "  LoraConfig:\n"
        "    r: 0\n"
        "    lora_dropout: 1.5\n"
        "  DatasetConfig:\n"
        "    shuffle_dataset: 'yes'\n"
        "    train_test_split: 0\n"
        "  QuantizationConfig:\n"
        "    llm_int8_skip_modules: [lm_head, 3]\n"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, where="cm.yaml")
    message = str(caught.value)
    assert message.startswith("invalid tuning config cm.yaml:")
    for line in (
        "TrainingArguments.num_train_epochs: Input should be a valid number",
        "TrainingArguments.learnig_rate: Extra inputs are not permitted",
        "LoraConfig.r: Input should be greater than 0",
        "LoraConfig.lora_dropout: Input should be less than 1",
        "DatasetConfig.shuffle_dataset: Input should be a valid boolean",
        "DatasetConfig.train_test_split: Input should be greater than 0",
        "QuantizationConfig.llm_int8_skip_modules[1]: Input should be a valid string",
    ):
        assert line in message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("TrainingArgs:\n  x: 1\n", "unknown section 'TrainingArgs'"),
        ("training_config:\n  LoraConfig: {}\nextra: 1\n", "unexpected keys next to"),
        ("training_config: [1]\n", "must be a mapping of sections"),
        ("LoraConfig: 3\n", "LoraConfig must be a mapping"),
        ("- a\n", "must hold a mapping"),
        ("a: [\n", "not valid YAML"),
        ("ModelConfig: {device_map: cpu}\n", "ModelConfig.device_map: Input should be 'auto'"),
    ],
)
def test_malformed_files_are_explained(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[")):
        parse_config(text)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the tuning config"):
        load_config(tmp_path / "none.yaml")
