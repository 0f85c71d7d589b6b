"""Training a LoRA adapter with peft and transformers' Trainer, and writing it out.

The pieces around the Trainer are kaito's: the base comes from `_model.load_base`, the rows
from `_tokenize` (chat template, assistant-only labels), batches from a padding collator that
keeps those labels, and progress from `_progress`. The Trainer's own console output is replaced
by kaito's log lines.

Checkpoints go to `<output>/checkpoints` (per `TrainingArguments.save_strategy`, by default
every epoch). A job that is restarted (a node lost, a pod evicted) finds the last one and
resumes from it; a finished run removes them, leaving only the adapter. The adapter is saved in
a hidden staging directory and its two files moved into the output directory, so a reader never
sees half an adapter: `adapter_config.json` and `adapter_model.safetensors`, what peft loads
and what kaito's inference server mounts.

This module imports torch, transformers and peft; `kaito.tuning` imports it only when training.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint as _last_checkpoint

from kaito.tuning._config import Method, TuningConfig
from kaito.tuning._data import Conversation, split_conversations
from kaito.tuning._errors import ConfigError, DataError, OutputError
from kaito.tuning._model import ModelSource, load_base
from kaito.tuning._progress import Progress, TuningMetrics
from kaito.tuning._result import TrainingResult
from kaito.tuning._tokenize import IGNORE_INDEX, Example, TokenizedData, tokenize_conversations

log = logging.getLogger("kaito.tuning")
get_last_checkpoint: Any = _last_checkpoint  # untyped in transformers

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
CHECKPOINTS_DIR = "checkpoints"


class PaddingCollator:
    """Right-pads a batch of `Example`s: pad id for inputs, -100 for labels, a 0/1 mask."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.multiple = pad_to_multiple_of

    def __call__(self, features: Sequence[Example]) -> dict[str, torch.Tensor]:
        longest = max(len(f) for f in features)
        if self.multiple:
            longest = math.ceil(longest / self.multiple) * self.multiple
        size = (len(features), longest)
        input_ids = torch.full(size, self.pad_token_id, dtype=torch.long)
        labels = torch.full(size, IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros(size, dtype=torch.long)
        for row, feature in enumerate(features):
            n = len(feature)
            input_ids[row, :n] = torch.tensor(feature.input_ids, dtype=torch.long)
            labels[row, :n] = torch.tensor(feature.labels, dtype=torch.long)
            attention_mask[row, :n] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


class _ProgressCallback(TrainerCallback):
    """Feeds the Trainer's events to `Progress` and logs its lines."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self.progress.begin(state.max_steps, state.global_step)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        self.progress.step_done(state.global_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **_: Any,
    ) -> None:
        line = self.progress.logged(state.global_step, logs or {})
        if line is not None:
            log.info("%s", line)


def _target_modules(model: Any, configured: list[str] | str | None) -> list[str] | str:
    if configured is not None:
        return configured
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as known

    model_type = getattr(model.config, "model_type", None)
    modules = known.get(model_type) if isinstance(model_type, str) else None
    return list(modules) if modules else "all-linear"


def _peft_model(model: Any, config: TuningConfig, method: Method) -> Any:
    from peft import LoraConfig, get_peft_model
    from peft import prepare_model_for_kbit_training as _prepare

    prepare_model_for_kbit_training: Any = _prepare  # untyped in peft

    checkpointing = bool(config.training.gradient_checkpointing)
    if method is Method.QLORA:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.enable_input_require_grads()
    values = config.lora.model_dump()
    values["target_modules"] = _target_modules(model, values["target_modules"])
    try:
        lora = LoraConfig(task_type="CAUSAL_LM", **values)
        with warnings.catch_warnings():
            # peft asks transformers about gradient checkpointing through a deprecated name
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = get_peft_model(model, lora)
    except ValueError as exc:
        raise ConfigError(f"LoraConfig: {exc}") from exc
    peft_model.config.use_cache = False  # the KV cache is for generation, not training
    trainable, total = peft_model.get_nb_trainable_parameters()
    log.info(
        "LoRA: %d of %d parameters trainable (%.3f%%)", trainable, total, 100 * trainable / total
    )
    return peft_model


def _arguments(config: TuningConfig, checkpoints: Path, evaluate: bool) -> TrainingArguments:
    values: dict[str, Any] = {
        "output_dir": str(checkpoints),
        "report_to": "none",
        "disable_tqdm": True,
        "logging_strategy": "steps",
        "remove_unused_columns": False,
        "dataloader_pin_memory": torch.cuda.is_available(),
    }
    values.update(config.training.trainer_kwargs())
    if not evaluate:
        values["eval_strategy"] = "no"
    try:
        return TrainingArguments(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"TrainingArguments: {exc}") from exc


def _tokenize_eval(
    rows: list[Conversation], tokenizer: Any, config: TuningConfig, limit: int
) -> TokenizedData | None:
    if not rows:
        return None
    try:
        return tokenize_conversations(
            rows,
            tokenizer,
            max_length=limit,
            assistant_only_loss=config.dataset.assistant_only_loss,
        )
    except DataError as exc:
        log.warning("no evaluation: the held-out rows are unusable (%s)", exc)
        return None


def _write_adapter(model: Any, output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".adapter-", dir=output_dir))
        try:
            model.save_pretrained(str(staging))
            for name in ADAPTER_FILES:
                os.replace(staging / name, output_dir / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        raise OutputError(f"cannot write the adapter to {output_dir}: {exc}") from exc


def train_adapter(
    source: ModelSource,
    conversations: Sequence[Conversation],
    config: TuningConfig,
    output_dir: str | Path,
    *,
    metrics: TuningMetrics | None = None,
) -> TrainingResult:
    """Train a LoRA (or QLoRA) adapter on `conversations` and write it to `output_dir`.

    Raises `ModelError` (the base cannot load as asked), `DataError` (no row renders and fits),
    `ConfigError` (arguments transformers or peft refuse) or `OutputError`."""
    output = Path(output_dir)
    metrics = metrics or TuningMetrics()
    base = load_base(source, config)
    limit = config.dataset.max_seq_length or base.context_length
    if limit > base.context_length:
        log.warning(
            "DatasetConfig.max_seq_length %d is more than the model's context; using %d",
            limit,
            base.context_length,
        )
        limit = base.context_length
    train_rows, eval_rows = split_conversations(conversations, config.dataset)
    train_data = tokenize_conversations(
        train_rows,
        base.tokenizer,
        max_length=limit,
        assistant_only_loss=config.dataset.assistant_only_loss,
    )
    eval_data = _tokenize_eval(eval_rows, base.tokenizer, config, limit)
    if config.collator.mlm:
        log.warning("DataCollator.mlm is set, but causal language models train with mlm off")
    model = _peft_model(base.model, config, base.method)
    checkpoints = output / CHECKPOINTS_DIR
    arguments = _arguments(config, checkpoints, evaluate=eval_data is not None)
    progress = Progress(
        metrics,
        rows=len(train_data.examples),
        batch_size=arguments.per_device_train_batch_size,
        accumulation=arguments.gradient_accumulation_steps,
        processes=max(1, arguments.world_size),
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        data_collator=PaddingCollator(
            base.tokenizer.pad_token_id, config.collator.pad_to_multiple_of
        ),
        train_dataset=list(train_data.examples),
        eval_dataset=list(eval_data.examples) if eval_data else None,
        processing_class=base.tokenizer,
        callbacks=[_ProgressCallback(progress)],
    )
    trainer.remove_callback(PrinterCallback)
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume is not None:
        log.info("resuming from %s", resume)
    log.info(
        "training %s with %s: %d rows (%d tokens), %d held out",
        source.name,
        base.method.value,
        len(train_data.examples),
        train_data.tokens,
        len(eval_data.examples) if eval_data else 0,
    )
    started = time.perf_counter()
    output_metrics = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    eval_loss = None
    if eval_data is not None:
        eval_loss = trainer.evaluate().get("eval_loss")  # logged by the progress callback
    _write_adapter(model, output)
    shutil.rmtree(checkpoints, ignore_errors=True)
    result = TrainingResult(
        output_dir=output,
        base_model=source.name,
        method=base.method,
        steps=trainer.state.global_step,
        steps_this_run=trainer.state.global_step - progress.start_step,
        samples=progress.samples,
        train_seconds=seconds,
        loss=output_metrics.training_loss,
        eval_loss=eval_loss,
        train_rows=len(train_data.examples),
        eval_rows=len(eval_data.examples) if eval_data else 0,
        tokens=train_data.tokens,
        resumed_from=Path(resume) if resume else None,
    )
    log.info(
        "trained %d steps in %.1fs (%.2f steps/s, %.2f samples/s), loss %.4f; adapter in %s",
        result.steps_this_run,
        seconds,
        result.steps_per_second,
        result.samples_per_second,
        result.loss if result.loss is not None else float("nan"),
        output,
    )
    return result
