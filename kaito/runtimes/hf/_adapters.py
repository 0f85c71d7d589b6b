"""LoRA adapters: finding them, their strengths, and combining them on the base model.

Layout: every sub-directory of the adapters directory (`/mnt/adapter` in the pod) that holds an
`adapter_config.json` is an adapter named after the directory; it must also hold
`adapter_model.safetensors`. Other entries (`lost+found`, stray files) are ignored.

Strength (a number from 0 to 1 that scales the adapter's update), first match wins:

1. `KAITO_ADAPTER_STRENGTHS`: a JSON object of adapter name to strength, e.g.
   `{"phi-3-adapter": 0.5}`; this is what the reconciler sets from the workspace's
   `adapters[].strength`.
2. A file named `strength` in the adapter's directory holding the number (for adapters that
   carry their own default).
3. An environment variable named exactly like the adapter (upstream kaito's convention).
4. 1.0.

Serving: requests for the base model name get all adapters combined, each at its strength (a
weighted concatenation: the sum of strength x update, exact however the ranks differ). A request
naming one adapter gets that adapter alone at its strength. Both run in the same batch, because
peft applies a per-row adapter choice inside each LoRA layer. Strength 0 multiplies the update by
zero, so it gives the base model's logits bit for bit.

Discovery is plain Python; peft is imported only by `apply_adapters`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

STRENGTHS_ENV = "KAITO_ADAPTER_STRENGTHS"
STRENGTH_FILE = "strength"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
COMBINED = "kaito-combined"
"""The peft adapter that holds the weighted combination of all adapters."""

log = logging.getLogger(__name__)


class AdapterError(ValueError):
    """An adapter directory or strength the server cannot use."""


@attrs.frozen
class Adapter:
    name: str
    path: Path
    strength: float


def _strength(text: object, where: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AdapterError(f"{where}: strength must be a number, got {text!r}") from None
    if isinstance(text, bool) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise AdapterError(f"{where}: strength must be between 0 and 1, got {text!r}")
    return value


def _configured_strengths(environ: Mapping[str, str]) -> dict[str, float]:
    raw = environ.get(STRENGTHS_ENV)
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{STRENGTHS_ENV} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise AdapterError(f'{STRENGTHS_ENV} must be a JSON object like {{"name": 0.5}}')
    return {str(k): _strength(v, f"{STRENGTHS_ENV}[{k!r}]") for k, v in parsed.items()}


def discover_adapters(
    adapters_dir: str | Path, environ: Mapping[str, str] | None = None
) -> list[Adapter]:
    """The adapters under `adapters_dir` with their strengths, sorted by name; none if the
    directory does not exist."""
    env = os.environ if environ is None else environ
    root = Path(adapters_dir)
    if not root.is_dir():
        return []
    configured = _configured_strengths(env)
    adapters: list[Adapter] = []
    for entry in sorted(root.iterdir()):
        if not (entry / CONFIG_FILE).is_file():
            if entry.is_dir():
                log.info("ignoring %s: no %s in it", entry, CONFIG_FILE)
            continue
        if not (entry / WEIGHTS_FILE).is_file():
            raise AdapterError(f"adapter {entry.name}: {entry} has no {WEIGHTS_FILE}")
        name = entry.name
        if name in configured:
            strength = configured[name]
        elif (entry / STRENGTH_FILE).is_file():
            text = (entry / STRENGTH_FILE).read_text(encoding="utf-8").strip()
            strength = _strength(text, str(entry / STRENGTH_FILE))
        elif name in env:
            strength = _strength(env[name], f"environment variable {name}")
        else:
            strength = 1.0
        adapters.append(Adapter(name, entry, strength))
    unknown = sorted(set(configured) - {a.name for a in adapters})
    if unknown:
        log.warning("%s names adapters that are not mounted: %s", STRENGTHS_ENV, unknown)
    return adapters


def apply_adapters(model: Any, adapters: Sequence[Adapter]) -> tuple[Any, str]:
    """Wrap `model` with every adapter (peft LoRA) at its strength; returns the peft model and
    the name of the adapter that stands for "all of them" (the combination, or the only one)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    if not adapters:
        raise AdapterError("no adapters to apply")
    first, *rest = adapters
    try:
        with warnings.catch_warnings():
            # peft asks transformers about gradient checkpointing through a deprecated name
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = PeftModel.from_pretrained(
                model, str(first.path), adapter_name=first.name, is_trainable=False
            )
            for adapter in rest:
                peft_model.load_adapter(str(adapter.path), adapter_name=adapter.name)
    except Exception as exc:
        raise AdapterError(f"cannot load adapters from {first.path.parent}: {exc}") from exc
    default = first.name
    if rest:
        # Combine at the adapters' own scale first: the combination multiplies each update by
        # its weight, and the per-adapter scales are then set to the strengths below.
        lora: Any = peft_model.base_model
        try:
            lora.add_weighted_adapter(
                adapters=[a.name for a in adapters],
                weights=[a.strength for a in adapters],
                adapter_name=COMBINED,
                combination_type="cat",
            )
        except Exception as exc:
            raise AdapterError(f"cannot combine adapters: {exc}") from exc
        default = COMBINED
    modules: Any = peft_model.modules()
    for module in modules:
        if isinstance(module, LoraLayer):
            for adapter in adapters:
                module.set_scale(adapter.name, adapter.strength)
    peft_model.set_adapter(default)
    peft_model.eval()
    return peft_model, default
