"""Fine-tuning: train a LoRA/QLoRA adapter of a preset model on a workspace's data.

`python -m kaito.tuning` is what a workspace's tuning Job runs: it reads the tuning config (the
`tuning.config` ConfigMap, upstream kaito's six sections checked strictly), gathers the data
(URLs, an OCI image or a mounted volume), loads the base model with the inference server's own
loader, trains with peft and transformers' Trainer while logging progress and serving
Prometheus metrics, and writes the adapter to a directory or pushes it to a registry in the
layout `kaito.oci` defines, which the inference side pulls. See `--help` for every option.

The same steps are public here for programs that embed them. Importing this package does not
import torch or transformers: `train_adapter` and `load_base` load them when called.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from kaito.tuning._cli import TuningOptions, TuningOutcome, main, parse_options, run_tuning
from kaito.tuning._config import (
    DataCollator,
    DatasetConfig,
    LoraConfig,
    Method,
    ModelConfig,
    QuantizationConfig,
    TrainingArguments,
    TuningConfig,
    default_config_text,
    load_config,
    parse_config,
)
from kaito.tuning._data import Conversation, LoadedData, Message, load_conversations
from kaito.tuning._download import DownloadPolicy, download_urls, fetch_urls
from kaito.tuning._errors import (
    ConfigError,
    DataError,
    DownloadError,
    ModelError,
    OutputError,
    TuningError,
)
from kaito.tuning._model import ModelSource, resolve_model
from kaito.tuning._progress import MetricsServer, TuningMetrics
from kaito.tuning._result import TrainingResult

__all__ = [
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
]


def train_adapter(
    source: ModelSource,
    conversations: Sequence[Conversation],
    config: TuningConfig,
    output_dir: str | Path,
    *,
    metrics: TuningMetrics | None = None,
) -> TrainingResult:
    """Train an adapter on `conversations` and write it to `output_dir` (imports torch)."""
    from kaito.tuning._train import train_adapter as _train

    return _train(source, conversations, config, output_dir, metrics=metrics)
