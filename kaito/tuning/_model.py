"""Which model to tune and loading it: the inference server's loader, plus 4-bit for QLoRA.

A preset resolves the way a workspace's inference does: its Hugging Face id, or, for a tiny
generated preset, the model kaito makes with `kaito.runtimes.hf.ensure_tiny_model`. `--model`
takes a directory or id directly (a checkpoint baked into an image, a model outside the
catalog).

Full-precision loading goes through the HF runtime's own `load_model`, so the tuned base is
loaded exactly as the server that will serve the adapter loads it: same auto class (image-text
models included), dtype handling, device placement and chat template. That loader has no
quantization, so the QLoRA path calls transformers itself with a `BitsAndBytesConfig` and
`device_map="auto"`. QLoRA needs a CUDA GPU and bitsandbytes; without them `load_base` raises
`ModelError`, or, when `QuantizationConfig.fallback_to_lora` is set, loads in full precision
and logs that it trains plain LoRA.

`ModelConfig.local_files_only` resolves a Hugging Face id in the local cache and never
downloads; a missing model fails at once instead of after a long timeout.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from pathlib import Path
from typing import Any

import attrs

from kaito.presets import Preset, PresetCatalog, UnknownPresetError, builtin_presets
from kaito.tuning._config import Method, TuningConfig
from kaito.tuning._errors import ConfigError, ModelError

log = logging.getLogger(__name__)


@attrs.frozen
class ModelSource:
    """What to load: a directory or a Hugging Face id, and the preset it stands for."""

    location: str
    """A local directory or a Hugging Face id."""
    name: str
    """The preset's name, else `location`: what the adapter's metadata calls the base."""
    preset: Preset | None = None


@attrs.frozen
class LoadedBase:
    model: Any
    tokenizer: Any
    context_length: int
    method: Method
    """What will actually be trained: QLoRA only when the base really loaded quantized."""


def resolve_model(
    *,
    preset: str | None = None,
    model: str | None = None,
    catalog: PresetCatalog | None = None,
    cache_dir: Path | None = None,
) -> ModelSource:
    """The model of a preset (`catalog` defaults to kaito's built-in one) or a given location;
    with both, `model` is where the preset's weights are. Generated presets are made on first
    use in `cache_dir` (default: `$KAITO_CACHE_DIR` or `~/.cache/kaito/models`)."""
    if preset is None:
        if not model:
            raise ConfigError("no model given: pass --preset NAME or --model PATH_OR_ID")
        return ModelSource(location=model, name=model)
    presets = catalog if catalog is not None else builtin_presets()
    try:
        found = presets[preset]
    except (UnknownPresetError, KeyError) as exc:
        raise ConfigError(str(exc)) from None
    if not found.supports_tuning and not found.generated:
        log.warning("preset %s is not marked as tunable; training it anyway", found.name)
    if model:
        return ModelSource(location=model, name=found.name, preset=found)
    if found.generated:
        from kaito.runtimes.hf import TinyModelError, ensure_tiny_model

        assert found.generated_from is not None
        try:
            path = ensure_tiny_model(presets[found.generated_from], cache_dir)
        except (UnknownPresetError, KeyError, TinyModelError, OSError) as exc:
            raise ModelError(f"cannot generate the model of preset {found.name}: {exc}") from exc
        return ModelSource(location=str(path), name=found.name, preset=found)
    if found.hf_id is None:
        raise ConfigError(f"preset {found.name} has no Hugging Face id; pass --model")
    return ModelSource(location=found.hf_id, name=found.name, preset=found)


def qlora_unavailable() -> str | None:
    """Why 4-bit loading cannot work on this machine, or None if it can."""
    import torch

    if not torch.cuda.is_available():
        return "QLoRA needs a CUDA GPU and this machine has none"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "QLoRA needs the bitsandbytes package, which is not installed"
    return None


def _local_location(source: ModelSource, config: TuningConfig) -> str:
    if not config.model.local_files_only or Path(source.location).is_dir():
        return source.location
    from huggingface_hub import snapshot_download

    revision = source.preset.revision if source.preset is not None else None
    try:
        return str(snapshot_download(source.location, revision=revision, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several unrelated types for "not there"
        raise ModelError(
            f"ModelConfig.local_files_only is set and {source.location} is not in the local "
            f"Hugging Face cache: {exc}"
        ) from exc


def _chat_template(config: TuningConfig) -> tuple[str | None, str | None]:
    """(file, inline text) of the configured chat template."""
    template = config.model.chat_template
    if template is None:
        return None, None
    if "{" in template or "\n" in template:
        return None, template
    if not Path(template).is_file():
        raise ConfigError(f"ModelConfig.chat_template: no file {template}")
    return template, None


def _load_full(location: str, config: TuningConfig) -> tuple[Any, Any, int]:
    from kaito.runtimes.hf import ServerOptions
    from kaito.runtimes.hf._model import ModelLoadError, load_model

    template_file, _ = _chat_template(config)
    with tempfile.TemporaryDirectory(prefix="kaito-no-adapters-") as empty:
        options = ServerOptions(
            model=location,
            dtype=config.model.torch_dtype,
            adapters_dir=empty,
            chat_template=template_file,
        )
        try:
            loaded = load_model(options)
        except ModelLoadError as exc:
            raise ModelError(str(exc)) from exc
    return loaded.model, loaded.tokenizer, loaded.max_model_len


def bitsandbytes_config(config: TuningConfig) -> Any:
    """transformers' `BitsAndBytesConfig` for the QuantizationConfig section."""
    import torch
    from transformers import BitsAndBytesConfig as _bnb_config

    bnb_config: Any = _bnb_config  # untyped in transformers
    values = config.quantization.bitsandbytes_kwargs()
    values["bnb_4bit_compute_dtype"] = getattr(torch, values["bnb_4bit_compute_dtype"])
    return bnb_config(**values)


def _load_quantized(location: str, config: TuningConfig) -> tuple[Any, Any, int]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    template_file, _ = _chat_template(config)
    dtype: Any = (
        "auto" if config.model.torch_dtype == "auto" else getattr(torch, config.model.torch_dtype)
    )
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(location)
        model_config: Any = AutoConfig.from_pretrained(location)
        model: Any = AutoModelForCausalLM.from_pretrained(
            location,
            config=model_config,
            dtype=dtype,
            device_map="auto",
            quantization_config=bitsandbytes_config(config),
        )
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelError(f"cannot load {location!r} quantized: {exc}") from exc
    if template_file:
        tokenizer.chat_template = Path(template_file).read_text(encoding="utf-8")
    text_config = model_config.get_text_config()
    limit = getattr(text_config, "max_position_embeddings", None) or 2048
    return model, tokenizer, int(limit)


def load_base(source: ModelSource, config: TuningConfig) -> LoadedBase:
    """The base model and tokenizer, quantized when the config asks for QLoRA and the machine
    can; raises `ModelError` (see the module doc)."""
    method = config.method
    if method is Method.QLORA:
        reason = qlora_unavailable()
        if reason is not None:
            if not config.quantization.fallback_to_lora:
                raise ModelError(
                    f"{reason}. Run on a GPU node, or set QuantizationConfig.fallback_to_lora: "
                    "true to train plain LoRA (full-precision base) instead."
                )
            log.warning("%s; QuantizationConfig.fallback_to_lora is set: training LoRA", reason)
            method = Method.LORA
    location = _local_location(source, config)
    if method is Method.QLORA:
        model, tokenizer, context = _load_quantized(location, config)
    else:
        model, tokenizer, context = _load_full(location, config)
    _, inline = _chat_template(config)
    if inline is not None:
        tokenizer.chat_template = inline
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedBase(model=model, tokenizer=tokenizer, context_length=context, method=method)
