"""What a training run produced, as plain data (no torch), for callers and the benchmark."""

from __future__ import annotations

from pathlib import Path

import attrs

from kaito.tuning._config import Method


@attrs.frozen(kw_only=True)
class TrainingResult:
    """What a run trained and how fast."""

    output_dir: Path
    """Holds `adapter_config.json` and `adapter_model.safetensors`."""
    base_model: str
    method: Method
    """What was trained (LoRA when QLoRA fell back)."""
    steps: int
    """Optimizer steps the adapter has had, those of a resumed run's earlier attempts included."""
    steps_this_run: int
    samples: int
    """Samples this run trained on."""
    train_seconds: float
    """Wall time of the training loop alone (no loading, no saving)."""
    loss: float | None
    """Mean training loss over the run."""
    eval_loss: float | None
    train_rows: int
    eval_rows: int
    tokens: int
    """Tokens in the training rows (one epoch)."""
    resumed_from: Path | None = None

    @property
    def steps_per_second(self) -> float:
        return self.steps_this_run / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds > 0 else 0.0
