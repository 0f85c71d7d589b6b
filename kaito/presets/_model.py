"""The two facts the planner reasons about: a model preset and a GPU instance type.

Both are frozen attrs classes with validators, so an instance is valid however it was made: from
the packaged YAML, by a preset plugin in code, or by `attrs.evolve` in a test. Sizes are plain
integers in bytes; a number the planner divides by can never be zero or negative.

A preset carries the architecture numbers the KV-cache formula needs (layers, KV heads, head
dimension, dtype) next to the checkpoint size, so that the memory budget is computed from the
model rather than looked up. `head_dim` defaults to hidden_size / attention_heads, the way
transformers derives it when config.json does not set it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import attrs

from kaito.presets._quantity import GIB

DTYPE_BYTES: dict[str, int] = {
    "float32": 4,
    "bfloat16": 2,
    "float16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
}
"""Bytes per element of the compute (and KV-cache) dtypes a preset may declare."""

KNOWN_RUNTIMES: tuple[str, ...] = ("hf", "vllm", "tgi", "triton")
"""Runtime names a preset may list: Hugging Face transformers, vLLM, TGI, Triton."""

SYSTEM_DISK_GIB = 80
"""Disk on top of the weights when a preset gives no disk size (upstream's generator rule)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CAPABILITY = re.compile(r"^[0-9]+\.[0-9]+$")


def default_disk_gib(weight_bytes: int) -> int:
    """Upstream's rule for a model without a measured disk size: weights in GiB + 80, truncated."""
    return int(weight_bytes / GIB + SYSTEM_DISK_GIB)


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def _name(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ValueError(
            f"{attribute.name} must be letters, digits, '.', '_' or '-' (got {value!r})"
        )


def _optional_text(instance: object, attribute: attrs.Attribute[str | None], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValueError(f"{attribute.name} must be a non-empty string or None, got {value!r}")


def _text(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name} must be a non-empty string, got {value!r}")


def _dtype(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in DTYPE_BYTES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {value!r}")


def _runtimes(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError("runtimes must be a sequence of names, not a single string")
    return tuple(value)


def _check_runtimes(
    instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]
) -> None:
    if not value:
        raise ValueError("runtimes must name at least one runtime")
    unknown = [r for r in value if r not in KNOWN_RUNTIMES]
    if unknown:
        raise ValueError(f"unknown runtimes {unknown} (known: {', '.join(KNOWN_RUNTIMES)})")
    if len(set(value)) != len(value):
        raise ValueError(f"runtimes lists a name twice: {list(value)}")


def _default_head_dim(self: Preset) -> int:
    # A bad head count is reported by its own validator; do not divide by it here.
    if not isinstance(self.attention_heads, int) or self.attention_heads <= 0:
        return 0
    return self.hidden_size // self.attention_heads


def _default_disk(self: Preset) -> int:
    if not isinstance(self.weight_bytes, int) or self.weight_bytes <= 0:
        return 0  # the weight_bytes validator reports it
    return default_disk_gib(self.weight_bytes)


@attrs.frozen(kw_only=True)
class Preset:
    """A model kaito knows how to serve (and perhaps tune): identity, size and architecture."""

    name: str = attrs.field(validator=_name)
    """The preset name a workspace uses, e.g. "phi-3-mini-4k-instruct"."""
    hf_id: str | None = attrs.field(validator=_optional_text)
    """The Hugging Face repository, e.g. "microsoft/Phi-3-mini-4k-instruct"."""
    family: str = attrs.field(validator=_text)
    model_type: str = attrs.field(validator=_text)
    """config.json's model_type, e.g. "phi3"."""
    architecture: str = attrs.field(validator=_text)
    """The transformers class, e.g. "Phi3ForCausalLM"."""
    parameters: int = attrs.field(validator=_positive)
    weight_bytes: int = attrs.field(validator=_positive)
    """Total size of the checkpoint's safetensors files."""
    dtype: str = attrs.field(validator=_dtype)
    """The compute dtype, which is also the KV-cache dtype."""
    layers: int = attrs.field(validator=_positive)
    hidden_size: int = attrs.field(validator=_positive)
    attention_heads: int = attrs.field(validator=_positive)
    kv_heads: int = attrs.field(validator=_positive)
    context_length: int = attrs.field(validator=_positive)
    """The model's token limit (max_position_embeddings)."""
    head_dim: int = attrs.field(
        default=attrs.Factory(_default_head_dim, takes_self=True), validator=_positive
    )
    runtimes: tuple[str, ...] = attrs.field(
        default=("hf", "vllm"), converter=_runtimes, validator=_check_runtimes
    )
    supports_tuning: bool = False
    supports_distributed: bool = False
    chat_template: str | None = attrs.field(default=None, validator=_optional_text)
    """A Jinja chat template (transformers' `apply_chat_template` conventions)."""
    disk_gib: int = attrs.field(
        default=attrs.Factory(_default_disk, takes_self=True), validator=_positive
    )
    """Node disk for the image, the weights and caches."""
    quantization: str | None = attrs.field(default=None, validator=_optional_text)
    """How the checkpoint's weights are stored when not in `dtype`: "fp8", "awq", "mxfp4"..."""
    revision: str | None = attrs.field(default=None, validator=_optional_text)
    """The pinned Hugging Face revision (a commit), when there is one."""
    chat_template_name: str | None = attrs.field(default=None, validator=_optional_text)
    """The name of the packaged template `chat_template` came from, if any."""
    generated_from: str | None = attrs.field(default=None, validator=_optional_text)
    """For a preset whose weights kaito generates (random, so the text is meaningless): the
    preset whose architecture, tokenizer markers and chat template the generated model copies.
    Such a preset has no Hugging Face id; the local mode makes its model on first use."""
    description: str | None = attrs.field(default=None, validator=_optional_text)
    """A sentence for people choosing a preset (shown by `kaito presets show`)."""

    @property
    def generated(self) -> bool:
        """Whether kaito generates this preset's weights instead of downloading them."""
        return self.generated_from is not None

    def __attrs_post_init__(self) -> None:
        if self.kv_heads > self.attention_heads or self.attention_heads % self.kv_heads:
            raise ValueError(
                f"preset {self.name}: kv_heads ({self.kv_heads}) must divide "
                f"attention_heads ({self.attention_heads})"
            )

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token costs across all layers: keys and values for every KV head."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes

    def supports_runtime(self, runtime: str) -> bool:
        return runtime in self.runtimes


def _capability(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not _CAPABILITY.match(value):
        raise ValueError(f"compute_capability must look like '8.0', got {value!r}")


def _optional_positive(
    instance: object, attribute: attrs.Attribute[int | None], value: object
) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f"{attribute.name} must be a positive integer or None, got {value!r}")


def _aliases(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise TypeError("aliases must be a sequence of names, not a single string")
    return tuple(value)


def _check_aliases(
    instance: object, attribute: attrs.Attribute[Any], value: tuple[str, ...]
) -> None:
    for alias in value:
        _name(instance, attribute, alias)


@attrs.frozen(kw_only=True)
class GpuSku:
    """A GPU instance type: how many GPUs of which model, and how much memory each has."""

    name: str = attrs.field(validator=_name)
    """The instance type as the cloud spells it, e.g. "Standard_NC6s_v3" or "p4d.24xlarge"."""
    cloud: str = attrs.field(validator=_text)
    """"azure" or "aws" for the built-in catalog."""
    gpu_model: str = attrs.field(validator=_text)
    gpu_count: int = attrs.field(validator=_positive)
    gpu_memory_bytes: int = attrs.field(validator=_positive)
    """Memory of one GPU."""
    compute_capability: str = attrs.field(validator=_capability)
    """CUDA compute capability, e.g. "7.0" for V100, "8.0" for A100."""
    vcpus: int | None = attrs.field(default=None, validator=_optional_positive)
    nvme: bool = False
    """Whether the instance has local NVMe disks (upstream puts model caches there)."""
    aliases: tuple[str, ...] = attrs.field(default=(), converter=_aliases, validator=_check_aliases)
    """Other spellings of the name that look-ups accept."""

    @property
    def total_gpu_memory_bytes(self) -> int:
        return self.gpu_count * self.gpu_memory_bytes

    @property
    def supports_bfloat16(self) -> bool:
        """bfloat16 needs Ampere (compute capability 8.0) or newer."""
        major, minor = (int(part) for part in self.compute_capability.split("."))
        return (major, minor) >= (8, 0)
