"""The tuning configuration: the YAML of a workspace's `tuning.config` ConfigMap, checked.

The shape is upstream kaito's: a `training_config` mapping with six sections,

    ModelConfig          how the base model loads (dtype, chat template, local files only)
    QuantizationConfig   bitsandbytes 4-/8-bit loading: what turns LoRA into QLoRA
    LoraConfig           peft's LoRA parameters (r, alpha, dropout, target modules)
    TrainingArguments    transformers' Trainer arguments (epochs, batch size, learning rate)
    DataCollator         batching (padding multiple; mlm is accepted and stays off)
    DatasetConfig        where the rows are and which columns hold them

kaito ships one default file per method (`kaito/tuning/data/lora.yaml`, `qlora.yaml`); a user's
file is merged over it key by key, so a ConfigMap only states what it changes. The sections
may also sit at the top level of the file, without `training_config`.

Unlike upstream, which hands every key to transformers' argument parser and drops the ones it
does not know, every section here is a closed pydantic model (`extra="forbid"`, strict types):
a misspelt key or a string where a number belongs stops the run before the model loads, with
the key's path, e.g. `TrainingArguments.num_train_epochs: Input should be a valid number`. The
accepted keys are the fields below; transformers' and peft's many others are not, so that a typo
cannot pass as an option. YAML's `2e-4` (a string to YAML 1.1) is read as the number it means.

Which method runs is decided by QuantizationConfig, as upstream does: 4- or 8-bit loading is
QLoRA, anything else LoRA. `--method` only chooses the defaults. QLoRA needs a CUDA GPU and
bitsandbytes; without them the run fails, unless `QuantizationConfig.fallback_to_lora` is true,
in which case it trains plain LoRA in full precision and says so in the log.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kaito.tuning._errors import ConfigError

ROOT_KEY = "training_config"


class Method(StrEnum):
    LORA = "lora"
    QLORA = "qlora"


Dtype = Literal["auto", "float32", "float16", "bfloat16"]
ComputeDtype = Literal["float32", "float16", "bfloat16"]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelConfig(_Section):
    torch_dtype: Dtype = "auto"
    """Weights dtype for training; `auto` keeps the checkpoint's."""
    local_files_only: bool = False
    """Load only from the local Hugging Face cache or a directory; never download."""
    device_map: Literal["auto"] = "auto"
    """Accepted for upstream compatibility; kaito always places the model automatically."""
    chat_template: str | None = None
    """A file with a Jinja chat template, or the template itself (it contains `{`)."""


class QuantizationConfig(_Section):
    quant_method: Literal["bitsandbytes"] = "bitsandbytes"
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = "nf4"
    bnb_4bit_compute_dtype: ComputeDtype = "float32"
    bnb_4bit_use_double_quant: bool = False
    llm_int8_threshold: NonNegativeFloat = 6.0
    llm_int8_skip_modules: list[str] | None = None
    llm_int8_enable_fp32_cpu_offload: bool = False
    llm_int8_has_fp16_weight: bool = False
    fallback_to_lora: bool = False
    """Without a CUDA GPU (or bitsandbytes), train plain LoRA instead of failing."""

    @property
    def quantized(self) -> bool:
        return self.load_in_4bit or self.load_in_8bit

    def bitsandbytes_kwargs(self) -> dict[str, Any]:
        """The arguments of transformers' `BitsAndBytesConfig`."""
        return self.model_dump(exclude={"fallback_to_lora", "quant_method"})


class LoraConfig(_Section):
    r: PositiveInt = 8
    lora_alpha: PositiveInt = 8
    lora_dropout: Fraction = 0.0
    target_modules: list[str] | Literal["all-linear"] | None = None
    """None: peft's choice for the architecture where it has one, else all linear layers."""
    bias: Literal["none", "all", "lora_only"] = "none"
    use_rslora: bool = False
    use_dora: bool = False
    init_lora_weights: bool = True
    modules_to_save: list[str] | None = None
    layers_to_transform: list[NonNegativeInt] | NonNegativeInt | None = None
    layers_pattern: list[str] | str | None = None


SchedulerType = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "warmup_stable_decay",
]


class TrainingArguments(_Section):
    """The transformers `TrainingArguments` kaito passes through (only the keys that are set)."""

    output_dir: str | None = None
    """Where the adapter is written when `--output-dir` is not given."""
    num_train_epochs: PositiveFloat | None = None
    max_steps: int | None = Field(default=None, ge=-1)
    per_device_train_batch_size: PositiveInt | None = None
    per_device_eval_batch_size: PositiveInt | None = None
    gradient_accumulation_steps: PositiveInt | None = None
    learning_rate: PositiveFloat | None = None
    weight_decay: NonNegativeFloat | None = None
    adam_beta1: Fraction | None = None
    adam_beta2: Fraction | None = None
    adam_epsilon: PositiveFloat | None = None
    max_grad_norm: NonNegativeFloat | None = None
    lr_scheduler_type: SchedulerType | None = None
    warmup_steps: NonNegativeFloat | None = None
    """Steps (an integer), or a fraction of all steps (below 1)."""
    warmup_ratio: Fraction | None = None
    """Older name for a fractional `warmup_steps`."""
    logging_steps: PositiveFloat | None = None
    logging_first_step: bool | None = None
    save_strategy: Literal["no", "steps", "epoch"] | None = None
    save_steps: PositiveFloat | None = None
    save_total_limit: PositiveInt | None = None
    eval_strategy: Literal["no", "steps", "epoch"] | None = None
    eval_steps: PositiveFloat | None = None
    seed: NonNegativeInt | None = None
    data_seed: NonNegativeInt | None = None
    bf16: bool | None = None
    fp16: bool | None = None
    gradient_checkpointing: bool | None = None
    optim: str | None = None
    dataloader_num_workers: NonNegativeInt | None = None
    ddp_find_unused_parameters: bool | None = None
    report_to: list[str] | str | None = None
    torch_compile: bool | None = None
    use_cpu: bool | None = None
    full_determinism: bool | None = None
    neftune_noise_alpha: PositiveFloat | None = None
    label_smoothing_factor: Fraction | None = None
    auto_find_batch_size: bool | None = None

    def trainer_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for transformers' `TrainingArguments`, without kaito's own
        (`output_dir` is where the adapter goes, not the Trainer's scratch space)."""
        values = {k: v for k, v in self.model_dump().items() if v is not None}
        values.pop("output_dir", None)
        ratio = values.pop("warmup_ratio", None)
        if ratio is not None and "warmup_steps" not in values:
            values["warmup_steps"] = ratio
        for key in ("warmup_steps", "logging_steps", "save_steps", "eval_steps"):
            # Whole numbers are step counts, fractions below 1 ratios of all steps.
            value = values.get(key)
            if isinstance(value, float) and value >= 1 and value.is_integer():
                values[key] = int(value)
        return values


class DataCollator(_Section):
    mlm: bool = False
    """Masked-LM batches; causal models have no mask token, so kaito trains with it off (as
    upstream falls back to) and logs a warning when it is set."""
    mlm_probability: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.15
    pad_to_multiple_of: PositiveInt | None = None


class DatasetConfig(_Section):
    dataset_path: str | None = None
    """A file or directory inside the data directory; default: every data file in it."""
    dataset_extension: Literal["parquet", "jsonl", "json", "csv"] | None = None
    """Read files as this format whatever their names; default: by extension."""
    shuffle_dataset: bool = True
    shuffle_seed: int = 42
    messages_column: str = "messages"
    """Chat format: a list of `{role, content}` messages (roles system, user, assistant)."""
    instruction_column: str = "instruction"
    """Instruction format: the user's turn ..."""
    context_column: str | None = None
    """... with this column's text appended when set and non-empty (e.g. dolly's `context`) ..."""
    response_column: str = "response"
    """... and the assistant's answer."""
    system_prompt: str | None = None
    """A system message put first in rows that have none."""
    train_test_split: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    """The share of rows trained on; the rest is held out and evaluated."""
    max_seq_length: PositiveInt | None = None
    """Rows longer than this many tokens are left out; default: the model's context length."""
    assistant_only_loss: bool = True
    """Learn only the assistant's tokens (the prompt is context, not a target)."""


class TuningConfig(BaseModel):
    """The six sections, validated and merged over the method's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    model: ModelConfig = Field(default_factory=ModelConfig, alias="ModelConfig")
    quantization: QuantizationConfig = Field(
        default_factory=QuantizationConfig, alias="QuantizationConfig"
    )
    lora: LoraConfig = Field(default_factory=LoraConfig, alias="LoraConfig")
    training: TrainingArguments = Field(
        default_factory=TrainingArguments, alias="TrainingArguments"
    )
    collator: DataCollator = Field(default_factory=DataCollator, alias="DataCollator")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig, alias="DatasetConfig")

    @property
    def method(self) -> Method:
        """What this config trains: QLoRA when it loads the base quantized, else LoRA."""
        return Method.QLORA if self.quantization.quantized else Method.LORA


SECTIONS = (
    "ModelConfig",
    "QuantizationConfig",
    "LoraConfig",
    "TrainingArguments",
    "DataCollator",
    "DatasetConfig",
)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `2e-4` as a string; in a training config it is always a number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must hold a mapping with '{ROOT_KEY}' at the top level")
    if ROOT_KEY in raw:
        others = sorted(str(k) for k in raw if k != ROOT_KEY)
        if others:
            raise ConfigError(f"{where}: unexpected keys next to '{ROOT_KEY}': {others}")
        raw = raw[ROOT_KEY] or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: '{ROOT_KEY}' must be a mapping of sections")
    for key, value in raw.items():
        if key not in SECTIONS:
            raise ConfigError(
                f"{where}: unknown section {key!r}; the sections are {', '.join(SECTIONS)}"
            )
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a mapping")
    return {key: dict(value or {}) for key, value in raw.items()}


def default_config_text(method: Method | str) -> str:
    """The YAML kaito ships as the defaults of `method` (`lora` or `qlora`)."""
    name = Method(method).value
    return resources.files("kaito.tuning").joinpath(f"data/{name}.yaml").read_text("utf-8")


def _merge(
    base: Mapping[str, dict[str, Any]], override: Mapping[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    merged = {key: dict(value) for key, value in base.items()}
    for section, values in override.items():
        merged.setdefault(section, {}).update(values)
    return merged


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text


def _validate(data: Mapping[str, Any], where: str) -> TuningConfig:
    try:
        return TuningConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            # Union members add their type to the location (e.g. `list[str]`); drop it.
            loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))
            lines.append(f"{_location(loc)}: {error['msg']}")
        unique = list(dict.fromkeys(lines))
        raise ConfigError(f"invalid tuning config {where}:\n  " + "\n  ".join(unique)) from None


def parse_config(text: str, method: Method | str = Method.LORA, *, where: str = "") -> TuningConfig:
    """Validate a tuning config YAML merged over `method`'s defaults; raises `ConfigError`
    listing every bad key as `Section.key: reason`."""
    label = where or "(text)"
    defaults = _parse_yaml(default_config_text(method), f"the {Method(method)} defaults")
    return _validate(_merge(defaults, _parse_yaml(text, label)), label)


def load_config(path: str | Path | None, method: Method | str = Method.LORA) -> TuningConfig:
    """The tuning config from a file (None: the method's defaults alone)."""
    if path is None:
        return parse_config("", method, where=f"(the {Method(method)} defaults)")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the tuning config {path}: {exc}") from exc
    return parse_config(text, method, where=str(path))
