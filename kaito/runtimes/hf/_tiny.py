"""Tiny models with a preset's architecture, made on the spot: for tests and the offline quickstart.

No model hub is reachable from CI or from a first `kaito up` on a laptop, and a real checkpoint
is gigabytes. What the server, the runtime and the end-to-end tests need is not a good model but
the *loading path* of a real one: a directory that `AutoModelForCausalLM.from_pretrained` and
`AutoTokenizer.from_pretrained` open exactly as they open the real preset, with the same
`model_type` and architecture class, a byte-level BPE tokenizer that knows the family's chat
markers as special tokens, the preset's chat template, and eos / pad ids the server stops on.

So the generator builds one: a config of the preset's `model_type` shrunk to a few hundred
thousand parameters, weights drawn from a fixed seed (the same seed gives the same files), and a
tokenizer trained with `tokenizers` on a few KB of English bundled with kaito. Image-text
presets (Gemma 3, Ministral 3) keep their `...ForConditionalGeneration` class with a one-layer
vision tower, since the server loads and serves them for text. Making a model takes a fraction
of a second once transformers is imported (a cold process spends a few seconds importing it).
`ensure_tiny_model` keeps the result in a cache directory (built in a temporary directory, then
renamed into place, so a half-written model is never seen), keyed by a fingerprint of
everything that shapes the files.

torch, transformers and tokenizers are imported inside the functions: importing this module
(and `kaito.runtimes.hf`) stays cheap without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from kaito.presets import Preset

CACHE_ENV = "KAITO_CACHE_DIR"
"""Environment variable that moves the model cache (default `~/.cache/kaito/models`)."""
MARKER_FILE = "kaito-tiny.json"
"""Written last into a generated model: what it was made from. Its presence means complete."""
_FORMAT = 2  # bump when the generator's output changes for the same inputs


class TinyModelError(ValueError):
    """The preset's architecture cannot be made into a tiny model."""


@attrs.frozen(kw_only=True)
class TinySize:
    """The dimensions of a generated model; the defaults give a ~200k-parameter model."""

    layers: int = 2
    hidden_size: int = 64
    attention_heads: int = 4
    kv_heads: int | None = None
    """None: as many as the attention heads if the preset has no grouped-query attention,
    else half of them (so GQA code paths run too)."""
    intermediate_size: int = 128
    vocab_size: int = 768
    """The BPE trainer's target; the trained vocabulary can be a little smaller."""
    initializer_range: float = 0.02


@attrs.frozen(kw_only=True)
class _Family:
    """A model family's tokenizer conventions."""

    bos: str | None = None
    eos: str = "<|endoftext|>"
    pad: str = "<|endoftext|>"
    add_bos: bool = False
    """Whether the tokenizer puts `bos` in front of every encoded text."""
    extra: tuple[str, ...] = ()
    """Markers the family's templates use that a template may build without spelling them out
    (phi-3 writes `'<|' ~ role ~ '|>'`)."""


_PHI3_ROLES = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
_FAMILIES: dict[str, _Family] = {
    "phi3": _Family(bos="<s>", eos="<|endoftext|>", pad="<|endoftext|>", extra=_PHI3_ROLES),
    "llama": _Family(
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad="<|end_of_text|>",
        add_bos=True,
        extra=("<|start_header_id|>", "<|end_header_id|>"),
    ),
    "mistral": _Family(
        bos="<s>", eos="</s>", pad="</s>", add_bos=True, extra=("[INST]", "[/INST]")
    ),
    "qwen2": _Family(eos="<|im_end|>", pad="<|endoftext|>", extra=("<|im_start|>",)),
    "qwen3": _Family(eos="<|im_end|>", pad="<|endoftext|>", extra=("<|im_start|>",)),
    "gpt_oss": _Family(
        bos="<|startoftext|>",
        eos="<|return|>",
        pad="<|endoftext|>",
        extra=("<|start|>", "<|message|>", "<|channel|>", "<|end|>"),
    ),
    "gemma3": _Family(
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        add_bos=True,
        extra=("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
               "<image_soft_token>"),
    ),
    "mistral3": _Family(
        bos="<s>",
        eos="</s>",
        pad="</s>",
        add_bos=True,
        extra=("[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]"),
    ),
}  # fmt: skip
_DEFAULT_FAMILY = _Family()
"""Falcon and any other family: no BOS, `<|endoftext|>` ends and pads."""

_TURN_ENDS = frozenset(
    {
        "<|end|>",
        "<|im_end|>",
        "<|eot_id|>",
        "<|endoftext|>",
        "</s>",
        "<|return|>",
        "<end_of_turn>",
        "<｜end▁of▁sentence｜>",
        "<|end_of_text|>",
    }
)
"""Markers that close an assistant turn: generation stops on any of them that exist."""

_MARKER = re.compile(
    r"<\|[^|<>\s]{1,40}\|>|<｜[^｜<>]{1,40}｜>|\[/?[A-Z_]{2,30}\]|</?s>|<(?:start|end)_of_turn>"
    r"|</?think>"
)
_STRING_LITERAL = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")


def _special_tokens(model_type: str, chat_template: str | None) -> tuple[_Family, list[str]]:
    """The family's markers plus every marker spelled out in the template's string literals."""
    family = _FAMILIES.get(model_type, _DEFAULT_FAMILY)
    tokens: list[str] = []
    for token in (family.pad, family.eos, family.bos, *family.extra):
        if token is not None and token not in tokens:
            tokens.append(token)
    for match in _STRING_LITERAL.finditer(chat_template or ""):
        literal = match.group(1) if match.group(1) is not None else match.group(2)
        for marker in _MARKER.findall(literal):
            if marker not in tokens:
                tokens.append(marker)
    return family, tokens


def _corpus() -> list[str]:
    text = resources.files("kaito.runtimes.hf").joinpath("_data/corpus.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _build_tokenizer(base: Preset, size: TinySize) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast as _fast_tokenizer

    fast_tokenizer: Any = _fast_tokenizer
    family, specials = _special_tokens(base.model_type, base.chat_template)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=size.vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer)
    if family.add_bos and family.bos is not None:
        bos_id = tokenizer.token_to_id(family.bos)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A",
            pair=f"{family.bos} $A {family.bos} $B",
            special_tokens=[(family.bos, bos_id)],
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    named = {family.bos, family.eos, family.pad}
    return fast_tokenizer(
        tokenizer_object=tokenizer,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        extra_special_tokens=[t for t in specials if t not in named],
        chat_template=base.chat_template,
        model_max_length=base.context_length,
        clean_up_tokenization_spaces=False,
    )


def _config_overrides(model_type: str, size: TinySize, heads: int, kv_heads: int) -> dict[str, Any]:
    head_dim = size.hidden_size // heads
    if model_type in ("phi3", "mistral"):
        return {"sliding_window": None}
    if model_type == "mistral3":
        return {"sliding_window": None, "head_dim": head_dim}
    if model_type == "gemma3":
        return {"head_dim": head_dim, "sliding_window": 32}
    if model_type in ("qwen2", "qwen3"):
        return {"use_sliding_window": False, "head_dim": head_dim}
    if model_type == "falcon":
        return {
            "num_kv_heads": kv_heads,
            "new_decoder_architecture": kv_heads not in (1, heads),
            "multi_query": kv_heads == 1,
            "ffn_hidden_size": size.intermediate_size,
            "alibi": False,
        }
    if model_type == "gpt_oss":
        return {
            "head_dim": head_dim,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "sliding_window": 32,
            "layer_types": [
                "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(size.layers)
            ],
        }
    return {}


def _vision_config(model_type: str, tokenizer: Any) -> dict[str, Any]:
    """A one-layer vision tower for the image-text families, so that their checkpoints have the
    real class; the server only ever feeds them text."""
    tower = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 14,
    }
    if model_type == "gemma3":
        ids = tokenizer.convert_tokens_to_ids(
            ["<image_soft_token>", "<start_of_image>", "<end_of_image>"]
        )
        return {
            "vision_config": {**tower, "model_type": "siglip_vision_model"},
            "mm_tokens_per_image": 4,
            "image_token_index": ids[0],
            "boi_token_index": ids[1],
            "eoi_token_index": ids[2],
        }
    if model_type == "mistral3":
        return {
            "vision_config": {**tower, "model_type": "pixtral", "head_dim": 16},
            "image_token_index": tokenizer.convert_tokens_to_ids("[IMG]"),
            "spatial_merge_size": 1,
        }
    raise TinyModelError(f"no tiny vision tower for model type {model_type!r}")


def _build_model(base: Preset, size: TinySize, tokenizer: Any, seed: int) -> Any:
    import torch
    from transformers import AutoConfig
    from transformers import AutoModelForCausalLM as _causal_lm
    from transformers import AutoModelForImageTextToText as _image_text_to_text

    multimodal = base.architecture.endswith("ForConditionalGeneration")
    if not multimodal and not base.architecture.endswith("ForCausalLM"):
        raise TinyModelError(
            f"preset {base.name}: only ...ForCausalLM and ...ForConditionalGeneration "
            f"architectures can be made tiny; {base.architecture} is neither"
        )
    auto_model: Any = _image_text_to_text if multimodal else _causal_lm
    heads = size.attention_heads
    kv_heads = size.kv_heads or (heads if base.kv_heads == base.attention_heads else heads // 2)
    if size.hidden_size % heads or heads % kv_heads:
        raise TinyModelError(
            f"hidden size {size.hidden_size}, {heads} heads and {kv_heads} KV heads do not "
            "divide evenly"
        )
    eos_ids = sorted(
        {tokenizer.convert_tokens_to_ids(t) for t in _TURN_ENDS if t in tokenizer.get_vocab()}
        | {tokenizer.eos_token_id}
    )
    text: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": size.hidden_size,
        "intermediate_size": size.intermediate_size,
        "num_hidden_layers": size.layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": base.context_length,
        "initializer_range": size.initializer_range,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": eos_ids if len(eos_ids) > 1 else eos_ids[0],
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
        **_config_overrides(base.model_type, size, heads, kv_heads),
    }
    try:
        if multimodal:
            config = AutoConfig.for_model(
                base.model_type,
                text_config=text,
                architectures=[base.architecture],
                **_vision_config(base.model_type, tokenizer),
            )
        else:
            config = AutoConfig.for_model(
                base.model_type, architectures=[base.architecture], **text
            )
    except (KeyError, ValueError) as exc:
        raise TinyModelError(
            f"preset {base.name}: cannot configure a {base.model_type!r} model: {exc}"
        ) from exc
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto_model.from_config(config, dtype=torch.float32)
    built = type(model).__name__
    if built != base.architecture:
        raise TinyModelError(
            f"preset {base.name}: transformers built {built} for model type "
            f"{base.model_type!r}, not {base.architecture}"
        )
    model.generation_config.eos_token_id = eos_ids
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def generate_tiny_model(
    base: Preset, out_dir: Path, *, seed: int = 0, size: TinySize | None = None
) -> Path:
    """Write a small random model with `base`'s architecture, tokenizer markers and chat template
    into `out_dir` (created; must be empty or missing) and return it.

    The directory loads with `AutoModelForCausalLM.from_pretrained` and
    `AutoTokenizer.from_pretrained`. The same preset, seed and size give the same weights.
    Raises `TinyModelError` for architectures that are not decoder-only causal LMs.
    """
    from transformers.utils import logging as _hf_logging

    hf_logging: Any = _hf_logging
    size = size or TinySize()
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = _build_tokenizer(base, size)
        model = _build_model(base, size, tokenizer, seed)
        tokenizer.save_pretrained(out_dir)
        model.save_pretrained(out_dir)
    finally:
        if progress:
            hf_logging.enable_progress_bar()
    marker = {
        "preset": base.name,
        "model_type": base.model_type,
        "architecture": base.architecture,
        "seed": seed,
        "size": attrs.asdict(size),
        "parameters": sum(p.numel() for p in model.parameters()),
        "fingerprint": _fingerprint(base, seed, size),
    }
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _fingerprint(base: Preset, seed: int, size: TinySize) -> str:
    facts = {
        "format": _FORMAT,
        "model_type": base.model_type,
        "architecture": base.architecture,
        "kv_grouped": base.kv_heads != base.attention_heads,
        "context_length": base.context_length,
        "chat_template": base.chat_template,
        "seed": seed,
        "size": attrs.asdict(size),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """`$KAITO_CACHE_DIR`, else `~/.cache/kaito/models`."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "kaito" / "models"


def ensure_tiny_model(
    base: Preset,
    cache_dir: Path | None = None,
    *,
    seed: int = 0,
    size: TinySize | None = None,
) -> Path:
    """The cached tiny model of `base` (generated on first use) under `cache_dir`.

    Safe to call from several processes at once: each builds in its own temporary directory and
    renames it into place; the loser of the race drops its copy and uses the winner's.
    """
    size = size or TinySize()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{base.name}-tiny-{_fingerprint(base, seed, size)}"
    if (target / MARKER_FILE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{base.name}-", dir=root))
    try:
        generate_tiny_model(base, scratch / "model", seed=seed, size=size)
        try:
            os.rename(scratch / "model", target)
        except OSError:
            if not (target / MARKER_FILE).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
