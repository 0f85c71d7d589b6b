"""Loading the model, its tokenizer, chat template and adapters, the way a real preset loads.

`AutoModelForCausalLM.from_pretrained` (or `AutoModelForImageTextToText` for the image-text
architectures, which are served for text) and `AutoTokenizer.from_pretrained` take a local
directory or a Hugging Face id alike. With a GPU, accelerate places the weights
(`device_map="auto"`, spreading a large model over every GPU of the node); without one the
model stays on the CPU. `dtype` "auto" keeps the checkpoint's dtype.

The result, `LoadedModel`, also carries the facts the server checks requests against: the token
limit, the ids that end a generation, the adapter names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import attrs

from kaito.runtimes.hf._adapters import Adapter, AdapterError, apply_adapters, discover_adapters
from kaito.runtimes.hf._options import ServerOptions

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model, tokenizer, chat template or adapters could not be loaded."""


@attrs.frozen(kw_only=True)
class LoadedModel:
    model: Any
    """The torch module the worker runs: the transformers model, or peft around it."""
    tokenizer: Any
    name: str
    """The served model name."""
    max_model_len: int
    vocab_size: int
    """Rows of the logits: token ids from 0 to vocab_size - 1."""
    eos_token_ids: frozenset[int]
    device: Any
    adapters: tuple[Adapter, ...] = ()
    default_adapter: str | None = None
    """The peft adapter that requests for `name` use; None without adapters."""

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def _context_length(config: Any) -> int | None:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for attribute in (
        "max_position_embeddings",
        "n_positions",
        "max_sequence_length",
        "seq_length",
    ):
        value = getattr(text, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


def load_model(options: ServerOptions) -> LoadedModel:
    """Load everything `options` names; raises `ModelLoadError` with the reason."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoTokenizer,
    )
    from transformers.utils import logging as _hf_logging

    hf_logging: Any = _hf_logging
    hf_logging.disable_progress_bar()
    dtype: Any = "auto" if options.dtype == "auto" else getattr(torch, options.dtype)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if torch.cuda.is_available():
        kwargs["device_map"] = "auto"
    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(options.model)
        config: Any = AutoConfig.from_pretrained(options.model)
        # Image-text models (Mistral 3, Gemma 3) are served for their text; not every one of
        # them is registered as a causal LM, but all are image-text-to-text models.
        image_text = any(a.endswith("ForConditionalGeneration") for a in config.architectures or [])
        auto: Any = AutoModelForImageTextToText if image_text else AutoModelForCausalLM
        model: Any = auto.from_pretrained(options.model, config=config, **kwargs)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise ModelLoadError(f"cannot load the model {options.model!r}: {exc}") from exc
    if options.chat_template:
        try:
            tokenizer.chat_template = Path(options.chat_template).read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelLoadError(f"cannot read the chat template: {exc}") from exc
    model.eval()

    limit = _context_length(model.config)
    max_model_len = options.max_model_len or limit
    if max_model_len is None:
        raise ModelLoadError("the model's config has no context length; pass --max-model-len")
    if limit is not None and max_model_len > limit:
        raise ModelLoadError(
            f"--max-model-len {max_model_len} is more than the model's context length {limit}"
        )
    name = options.model_name
    try:
        adapters = tuple(discover_adapters(options.adapters_dir))
        clash = [a.name for a in adapters if a.name == name]
        if clash:
            raise AdapterError(f"an adapter is named like the model ({name}); rename one")
        default_adapter = None
        if adapters:
            model, default_adapter = apply_adapters(model, adapters)
    except AdapterError as exc:
        raise ModelLoadError(str(exc)) from exc
    for adapter in adapters:
        log.info("adapter %s from %s at strength %g", adapter.name, adapter.path, adapter.strength)
    device = next(model.parameters()).device
    log.info(
        "loaded %s as %r on %s (%s, context %d tokens)",
        options.model,
        name,
        device,
        next(model.parameters()).dtype,
        max_model_len,
    )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        max_model_len=max_model_len,
        vocab_size=int(model.get_output_embeddings().weight.shape[0]),
        eos_token_ids=_eos_ids(model, tokenizer),
        device=device,
        adapters=adapters,
        default_adapter=default_adapter,
    )
