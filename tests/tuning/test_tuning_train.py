"""LoRA training end to end on the tiny phi-3 preset, a few steps at a high learning rate.

One run checks what a workspace relies on: the adapter files, that peft and kaito's inference
loader both load them, that the adapter learned the data (lower loss than the base), the
progress lines and metrics. Others cover QLoRA without CUDA (an error, or LoRA when the config
allows it, here pushed to a registry), and a job restarted after a crash resuming from its
checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from tuning_data import chat_rows, serve_directory, write_rows

from kaito.oci import pull_adapter
from kaito.tuning import ModelError, TuningMetrics, TuningOptions, main, run_tuning
from kaito.tuning._progress import samples_in_step
from tests.oci.oci_registry import get_manifest
from tests.tuning.conftest import REGISTRY_PASSWORD, REGISTRY_USER, TINY_PRESET

pytestmark = pytest.mark.timeout(120)

LINE = re.compile(
    r"step (\d+)/6 \(\d+%\) loss \d+\.\d{4} lr \d\.\d\de[-+]\d\d epoch \d+\.\d\d "
    r"samples \d+ eta \S+"
)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


FAST = """\
training_config:
  TrainingArguments:
    max_steps: {steps}
    per_device_train_batch_size: 4
    learning_rate: 0.05
    logging_steps: 2
    save_strategy: "no"
    seed: 0
  LoraConfig:
    r: 8
    lora_alpha: 16
  DatasetConfig:
    train_test_split: {split}
"""


def options(tmp_path: Path, model_cache: Path, config: Path, **overrides: Any) -> TuningOptions:
    data = tmp_path / "data"
    if not data.exists() and "data_urls" not in overrides:
        write_rows(data / "train.parquet", chat_rows(8), "parquet")
    values: dict[str, Any] = {
        "preset": TINY_PRESET,
        "config": config,
        "data_dir": data,
        "output_dir": tmp_path / "out",
        "cache_dir": model_cache,
    }
    values.update(overrides)
    return TuningOptions(**values)


def mean_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    import torch

    total = 0.0
    with torch.no_grad():
        for row in rows:
            text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
            total += float(model(input_ids=ids, labels=ids).loss)
    return total / len(rows)


def test_lora_training_writes_an_adapter_that_learned_the_data(
    tmp_path: Path, model_cache: Path, phi3_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = write_config(tmp_path / "c.yaml", FAST.format(steps=6, split=0.75))
    metrics = TuningMetrics()
    run = options(tmp_path, model_cache, config, metrics_port=0, metrics_host="127.0.0.1")
    with caplog.at_level(logging.INFO, logger="kaito"):
        outcome = run_tuning(run, metrics=metrics)
    result = outcome.training
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert (adapter_config["peft_type"], adapter_config["r"]) == ("LORA", 8)
    assert (result.steps, result.train_rows, result.eval_rows, result.method) == (6, 6, 2, "lora")
    assert result.eval_loss is not None
    assert result.steps_per_second > 0

    # Progress: one line per logging step, and the metrics registry at the end.
    lines = [r.getMessage() for r in caplog.records if LINE.fullmatch(r.getMessage())]
    assert [LINE.fullmatch(line).group(1) for line in lines] == ["2", "4", "6"]  # type: ignore[union-attr]
    expected_samples = sum(
        samples_in_step(s, rows=6, batch_size=4, accumulation=1) for s in range(1, 7)
    )
    assert result.samples == expected_samples == 18
    value = metrics.registry.get_sample_value
    assert value("kaito_tuning_step") == 6
    assert value("kaito_tuning_samples_total") == 18
    assert value("kaito_tuning_eta_seconds") == 0
    assert (value("kaito_tuning_loss") or 0) > 0
    assert "metrics on http://127.0.0.1:" in caplog.text
    assert "step 6/6 eval_loss " in caplog.text

    # peft loads it, and it fits the training rows better than the base does.
    tokenizer = AutoTokenizer.from_pretrained(phi3_model)
    base = AutoModelForCausalLM.from_pretrained(phi3_model)
    rows = chat_rows(8)
    base_loss = mean_loss(base, tokenizer, rows)
    prompt = tokenizer("What is 3 plus 3?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base_logits = base(input_ids=prompt).logits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        tuned = PeftModel.from_pretrained(base, out)
    tuned_loss = mean_loss(tuned, tokenizer, rows)
    with torch.no_grad():
        tuned_logits = tuned(input_ids=prompt).logits
    assert tuned_loss < base_loss - 0.1
    assert (tuned_logits - base_logits).abs().max() > 1e-3


def test_kaitos_inference_loader_serves_the_trained_adapter(
    tmp_path: Path, model_cache: Path, phi3_model: Path
) -> None:
    from kaito.runtimes.hf import ServerOptions
    from kaito.runtimes.hf._model import load_model

    config = write_config(tmp_path / "c.yaml", FAST.format(steps=2, split=1))
    run_tuning(options(tmp_path, model_cache, config, output_dir=tmp_path / "adapters" / "mine"))
    loaded = load_model(
        ServerOptions(model=str(phi3_model), adapters_dir=str(tmp_path / "adapters"))
    )
    assert [a.name for a in loaded.adapters] == ["mine"]
    assert loaded.default_adapter == "mine"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine can do QLoRA")
def test_qlora_without_cuda_fails_with_a_clear_message(
    tmp_path: Path, model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path / "c.yaml", FAST.format(steps=2, split=1))
    run = options(tmp_path, model_cache, config, method="qlora")
    with pytest.raises(ModelError, match="QLoRA needs a CUDA GPU") as caught:
        run_tuning(run)
    assert "QuantizationConfig.fallback_to_lora: true" in str(caught.value)
    data = str(tmp_path / "data")
    argv = ["--preset", TINY_PRESET, "--method", "qlora", "--data-dir", data]
    env = {"KAITO_CACHE_DIR": str(model_cache), "KAITO_TUNING_OUTPUT_DIR": str(tmp_path / "o")}
    with caplog.at_level(logging.ERROR, logger="kaito"):
        assert main(argv, env) == 4
    assert "error: QLoRA needs a CUDA GPU" in caplog.text
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine can do QLoRA")
def test_qlora_falls_back_to_lora_when_allowed_and_the_adapter_is_pushed(
    tmp_path: Path,
    model_cache: Path,
    tuning_registry: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from kaito.oci import RegistryAuth

    text = FAST.format(steps=2, split=1) + "  QuantizationConfig:\n    fallback_to_lora: true\n"
    config = write_config(tmp_path / "c.yaml", text)
    secret = tuning_registry.docker_config(tmp_path / "push.json", REGISTRY_USER, REGISTRY_PASSWORD)
    reference = f"{tuning_registry.host}/adapters/tiny-phi-3:v1"
    served = write_rows(tmp_path / "served" / "train.parquet", chat_rows(8), "parquet")
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    with serve_directory(served.parent) as base:
        run = options(
            tmp_path,
            model_cache,
            config,
            method="qlora",
            data_dir=None,
            data_urls=(f"{base}/train.parquet?download=true#sha256={digest}",),
            push=reference,
            push_secret=secret,
        )
        with caplog.at_level(logging.INFO, logger="kaito"):
            outcome = run_tuning(run)
    assert "fallback_to_lora is set: training LoRA" in caplog.text
    assert "downloaded http://127.0.0.1:" in caplog.text
    assert outcome.training.train_rows == 8
    assert outcome.training.method == "lora"
    assert outcome.pushed is not None
    assert outcome.pushed.files == ("adapter_config.json", "adapter_model.safetensors")
    manifest = get_manifest(
        tuning_registry, "adapters/tiny-phi-3", "v1", (REGISTRY_USER, REGISTRY_PASSWORD)
    )
    annotations: Any = manifest["annotations"]
    assert annotations["sh.kaito.adapter.method"] == "lora"
    assert annotations["sh.kaito.adapter.base-model"] == TINY_PRESET
    pulled = pull_adapter(
        reference, tmp_path / "pulled", RegistryAuth(REGISTRY_USER, REGISTRY_PASSWORD)
    )
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (pulled / name).read_bytes() == (tmp_path / "out" / name).read_bytes()


class Crash(Exception):
    """The pod dies."""


class CrashAt:
    def __init__(self, gauge: Any, step: int) -> None:
        self.gauge = gauge
        self.step = step

    def set(self, value: float) -> None:
        if value == self.step:
            raise Crash
        self.gauge.set(value)


def test_a_restarted_job_resumes_from_its_last_checkpoint(
    tmp_path: Path, model_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = FAST.format(steps=4, split=1).replace(
        'save_strategy: "no"', "save_strategy: steps\n    save_steps: 2"
    )
    config = write_config(tmp_path / "c.yaml", text)
    crashing = TuningMetrics()
    crashing.step = CrashAt(crashing.step, 3)  # type: ignore[assignment]
    with pytest.raises(Crash):
        run_tuning(options(tmp_path, model_cache, config), metrics=crashing)
    assert (tmp_path / "out" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "out" / "adapter_model.safetensors").exists()
    caplog.clear()  # only the resumed run's progress lines count below
    with caplog.at_level(logging.INFO, logger="kaito"):
        outcome = run_tuning(options(tmp_path, model_cache, config))
    assert outcome.training.resumed_from is not None
    assert outcome.training.resumed_from.name == "checkpoint-2"
    assert outcome.training.steps == 4
    assert "resuming from" in caplog.text
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [line.split()[1] for line in progress] == ["4/4"]
    assert outcome.training.steps_this_run == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
