"""The sizing planner: (preset, instance type, options) -> how many nodes, how split, how long.

The method is upstream kaito's node estimator (pkg/workspace/estimator/nodesestimator), which
predicts the per-GPU memory budget vLLM will have and finds the fewest nodes that hold a model:

    usable per GPU    = GPU memory x 0.84            (vLLM --gpu-memory-utilization)
    loaded weights    = checkpoint size x 1.02       (vLLM's in-memory copy is ~2% larger)
    weights per GPU   = loaded weights / (nodes x GPUs per node)
    activation        = 0.05 x weights per GPU       (activations, CUDA graphs)
    overhead          = 2.3 GiB per GPU              (CUDA context, NCCL, small-model baseline)
    KV cache per GPU  = tokens x KV bytes per token / GPUs per node
    KV bytes/token    = 2 x layers x KV heads x head dim x dtype bytes

and a plan fits when weights + activation + overhead + KV cache <= usable on every GPU. Nodes are
sized for a 2048-token KV reserve (or the requested max model length), exactly as upstream does;
like upstream, the KV cache is divided by the GPUs of one node only, which is conservative for
multi-node plans (pipeline stages split the layers, and so the cache, further).

Everything is integer bytes, rounded the safe way (sizes up, usable memory down), so "fits" is an
exact comparison a test can check, and the planner agrees with upstream's float arithmetic except
within a few bytes of a boundary.

Beyond upstream:
- with no max model length requested, the plan reports the largest context that fits its layout
  (what vLLM's `--max-model-len=auto` would pick), capped at the model's token limit;
  `max_context` gives the largest over layouts;
- `rank_skus` tries every instance type and orders the ones that fit;
- an explicit node count above the needed one is honoured (upstream overrides it): more pipeline
  stages for a distributed preset, independent replicas for one that must stay on one node;
- parallelism follows upstream's runtime rules: a model under half of one GPU on a multi-GPU node
  runs data-parallel (one copy per GPU) when the context fits one GPU; otherwise tensor parallel
  across the node's GPUs and pipeline parallel across nodes;
- tuning (LoRA / QLoRA) gets its own budget, below.

Tuning. Upstream publishes no tuning estimator (it pins per-model minimums, e.g. 16 GB per GPU
for falcon-7b with QLoRA). kaito uses a simple rule instead, on one node (tuning jobs are
single-node), with the model spread over that node's GPUs:
- weights on GPU = checkpoint size x 1.15 for LoRA: the frozen base stays in 16-bit (1.0) and
  the trainable adapters (typically 0.1-2% of the parameters) cost 16 bytes per parameter for
  fp32 weights, gradients and two AdamW moments, i.e. up to ~0.15 of the base size;
- x 0.5 for QLoRA: the base is stored as 4-bit NF4 with double-quantized constants, about
  4.13 bits per parameter (Dettmers et al. 2023, "QLoRA", section 3) = 0.26 of 16-bit, plus the
  16-bit embeddings and output layer and the same adapter allowance, rounded up to 0.5;
- activations: gradient checkpointing keeps one hidden-state vector per layer and token, so the
  budget adds tokens x layers x hidden size x dtype bytes (split over the node's GPUs), plus the
  same 0.05 x weights and 2.3 GiB overhead as inference. There is no KV cache.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal, cast

import attrs

from kaito.presets._catalog import SkuCatalog
from kaito.presets._model import GpuSku, Preset
from kaito.presets._quantity import GIB, format_gib

Mode = Literal["inference", "tuning"]
TuningMethod = Literal["lora", "qlora"]

GPU_MEMORY_UTILIZATION = Fraction(84, 100)
"""Share of a GPU's memory vLLM may use (upstream's --gpu-memory-utilization)."""
WEIGHT_EXPANSION = Fraction(102, 100)
"""Loaded weights relative to the checkpoint size."""
BASE_OVERHEAD_BYTES = math.ceil(Fraction(23, 10) * GIB)
"""Fixed per-GPU overhead: CUDA context, NCCL buffers, baseline activations (2.3 GiB)."""
ACTIVATION_FACTOR = Fraction(5, 100)
"""Per-GPU activation and CUDA-graph memory as a share of the weights on that GPU."""
KV_RESERVE_TOKENS = 2048
"""Context length nodes are sized for when none is requested."""
TUNING_WEIGHT_FACTORS: dict[str, Fraction] = {"lora": Fraction(115, 100), "qlora": Fraction(1, 2)}
"""Weights held on GPU while tuning, relative to the checkpoint size (see the module docstring)."""
DEFAULT_TUNING_METHOD: TuningMethod = "lora"
MAX_NODES = 1024
"""A plan needing more nodes than this is reported as not fitting."""


class PlanError(ValueError):
    """The preset cannot be planned on that instance type with those options.

    `needed_bytes` and `available_bytes` carry the memory comparison that failed (per GPU or per
    node, as the message says) when the failure is about memory, else None.
    """

    def __init__(
        self,
        message: str,
        *,
        needed_bytes: int | None = None,
        available_bytes: int | None = None,
    ) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes
        self.available_bytes = available_bytes


def _positive_or_none(
    instance: object, attribute: attrs.Attribute[int | None], value: object
) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{attribute.name} must be a positive integer or None, got {value!r}")


# Typed as the Literal they produce, so that type checkers hold callers to the literal values;
# at run time any capitalisation is accepted (YAML often says "QLoRA").
def _mode(value: Mode) -> Mode:
    return cast(Mode, value.lower()) if isinstance(value, str) else value


def _method(value: TuningMethod | None) -> TuningMethod | None:
    return cast(TuningMethod, value.lower()) if isinstance(value, str) else value


@attrs.frozen
class PlanOptions:
    """What the workspace asks for on top of preset and instance type.

    - node_count: the workspace's resource.count; the plan uses at least the needed count.
    - max_model_len: the context to plan for (default: size for 2048 tokens, report the most
      that fits).
    - mode: "inference" or "tuning"; tuning_method ("lora" or "qlora", default "lora") only with
      tuning.
    - allow_distributed: None lets the preset decide; True allows spanning nodes even for a
      preset that does not declare it (vLLM can pipeline any of them); False forbids it.
    """

    node_count: int | None = attrs.field(default=None, validator=_positive_or_none)
    max_model_len: int | None = attrs.field(default=None, validator=_positive_or_none)
    mode: Mode = attrs.field(default="inference", converter=_mode)
    tuning_method: TuningMethod | None = attrs.field(default=None, converter=_method)
    allow_distributed: bool | None = None

    def __attrs_post_init__(self) -> None:
        if self.mode not in ("inference", "tuning"):
            raise ValueError(f"mode must be 'inference' or 'tuning', got {self.mode!r}")
        if self.tuning_method is not None:
            if self.mode != "tuning":
                raise ValueError("tuning_method is only meaningful with mode='tuning'")
            if self.tuning_method not in TUNING_WEIGHT_FACTORS:
                raise ValueError(
                    f"tuning_method must be one of {', '.join(TUNING_WEIGHT_FACTORS)}, "
                    f"got {self.tuning_method!r}"
                )


@attrs.frozen(kw_only=True)
class MemoryBudget:
    """The per-GPU memory arithmetic behind a plan; every number is in bytes."""

    weights: int
    """The checkpoint size."""
    weights_loaded: int
    """What all GPUs together hold for the weights (x1.02 for inference, x the tuning factor)."""
    weights_per_gpu: int
    kv_bytes_per_token: int
    """KV-cache cost of one token, whole model."""
    kv_reserve: int
    """KV cache for the tokens the node count was sized for (2048 unless a length was asked)."""
    kv_cache_per_gpu: int
    """KV cache for the plan's max_model_len on one GPU (0 when tuning)."""
    overhead_per_gpu: int
    activation_per_gpu: int
    """0.05 x weights per GPU, plus checkpointed activations when tuning."""
    gpu_memory_per_gpu: int
    usable_per_gpu: int
    """GPU memory x gpu_memory_utilization, rounded down."""
    needed_per_gpu: int
    """weights + activation + overhead + KV cache, per GPU."""

    @property
    def headroom_per_gpu(self) -> int:
        return self.usable_per_gpu - self.needed_per_gpu

    @property
    def fits(self) -> bool:
        return self.needed_per_gpu <= self.usable_per_gpu

    def to_dict(self) -> dict[str, int]:
        return {**attrs.asdict(self), "headroom_per_gpu": self.headroom_per_gpu}


@attrs.frozen(kw_only=True)
class Plan:
    """How a preset runs on an instance type: nodes, parallelism, context, disk and the budget.

    node_count = pipeline_parallel_size x replicas; each node uses all its GPUs
    (tensor_parallel_size x data_parallel_size = gpus_per_node).
    """

    preset: str
    sku: str
    node_count: int
    gpus_per_node: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    max_model_len: int
    gpu_memory_utilization: float
    disk_gib: int
    budget: MemoryBudget
    mode: Mode = "inference"
    tuning_method: TuningMethod | None = None
    data_parallel_size: int = 1
    """Copies of the model on one node (one per GPU) when it is small enough."""
    replicas: int = 1
    """Independent copies across nodes (a user count above what a one-node preset needs)."""
    dtype: str = "bfloat16"
    """The dtype to run in: the preset's, with bfloat16 lowered to float16 before Ampere."""

    @property
    def total_gpus(self) -> int:
        return self.node_count * self.gpus_per_node

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (keys are the attribute names)."""
        data: dict[str, object] = {
            f.name: getattr(self, f.name) for f in attrs.fields(Plan) if f.name != "budget"
        }
        data["budget"] = self.budget.to_dict()
        return data


# -- the arithmetic ---------------------------------------------------------------------------


@attrs.frozen
class _Layout:
    """How the weights and the per-token memory are split over GPUs."""

    shards: int  # GPUs the weights are divided over
    token_divisor: int  # GPUs the per-token memory is divided over
    tp: int
    pp: int
    dp: int


@attrs.frozen
class _Sizing:
    """The numbers of one (preset, instance type, mode) that do not depend on the layout."""

    preset: Preset
    sku: GpuSku
    tuning: bool
    weights_loaded: int
    per_token: int  # KV cache (inference) or checkpointed activations (tuning) per token
    usable: int

    @classmethod
    def of(cls, preset: Preset, sku: GpuSku, method: TuningMethod | None) -> _Sizing:
        if method is None:
            loaded = math.ceil(preset.weight_bytes * WEIGHT_EXPANSION)
            per_token = preset.kv_bytes_per_token()
        else:
            loaded = math.ceil(preset.weight_bytes * TUNING_WEIGHT_FACTORS[method])
            per_token = preset.layers * preset.hidden_size * preset.dtype_bytes
        usable = math.floor(sku.gpu_memory_bytes * GPU_MEMORY_UTILIZATION)
        return cls(preset, sku, method is not None, loaded, per_token, usable)

    def weights_per_gpu(self, layout: _Layout) -> int:
        return -(-self.weights_loaded // layout.shards)

    def token_memory(self, layout: _Layout, tokens: int) -> int:
        return -(-(tokens * self.per_token) // layout.token_divisor)

    def budget(self, layout: _Layout, tokens: int, reserve_tokens: int) -> MemoryBudget:
        weights = self.weights_per_gpu(layout)
        activation = math.ceil(weights * ACTIVATION_FACTOR)
        per_token = self.token_memory(layout, tokens)
        kv = 0 if self.tuning else per_token
        if self.tuning:
            activation += per_token
        return MemoryBudget(
            weights=self.preset.weight_bytes,
            weights_loaded=self.weights_loaded,
            weights_per_gpu=weights,
            kv_bytes_per_token=self.preset.kv_bytes_per_token(),
            kv_reserve=0 if self.tuning else reserve_tokens * self.per_token,
            kv_cache_per_gpu=kv,
            overhead_per_gpu=BASE_OVERHEAD_BYTES,
            activation_per_gpu=activation,
            gpu_memory_per_gpu=self.sku.gpu_memory_bytes,
            usable_per_gpu=self.usable,
            needed_per_gpu=weights + activation + BASE_OVERHEAD_BYTES + kv,
        )

    def fits(self, layout: _Layout, tokens: int) -> bool:
        return self.budget(layout, tokens, tokens).fits

    def max_tokens(self, layout: _Layout) -> int:
        """The most tokens whose per-token memory still fits next to the weights (may be 0)."""
        weights = self.weights_per_gpu(layout)
        room = self.usable - BASE_OVERHEAD_BYTES - weights - math.ceil(weights * ACTIVATION_FACTOR)
        return max(0, room * layout.token_divisor // self.per_token)


def _tensor_layout(sku: GpuSku, nodes: int) -> _Layout:
    gpus = sku.gpu_count
    return _Layout(shards=nodes * gpus, token_divisor=gpus, tp=gpus, pp=nodes, dp=1)


def _describe(budget: MemoryBudget, tokens: int, tuning: bool) -> str:
    """The per-GPU sum behind `needed_per_gpu`, term by term."""
    weights = budget.weights_per_gpu
    activation = math.ceil(weights * ACTIVATION_FACTOR)
    per_token = budget.needed_per_gpu - weights - activation - budget.overhead_per_gpu
    what = (
        f"checkpointed activations for {tokens} tokens"
        if tuning
        else f"KV cache for {tokens} tokens"
    )
    return (
        f"weights {format_gib(weights)} + activation {format_gib(activation)}"
        f" + overhead {format_gib(budget.overhead_per_gpu)} + {what} {format_gib(per_token)}"
    )


def _nodes_needed(sizing: _Sizing, tokens: int) -> int:
    """The fewest nodes of the instance type whose GPUs hold the model and `tokens` of context."""
    sku = sizing.sku
    gpus = sku.gpu_count
    fixed = BASE_OVERHEAD_BYTES + sizing.token_memory(_tensor_layout(sku, 1), tokens)
    gpu = f"{sku.gpu_model} ({format_gib(sku.gpu_memory_bytes)})"
    if fixed + 2 > sizing.usable:  # at least a byte of weights and of activation per GPU
        what = "checkpointed activations" if sizing.tuning else f"KV cache for {tokens} tokens"
        raise PlanError(
            f"{sizing.preset.name} cannot run on {sku.name}: each {gpu} has "
            f"{format_gib(sizing.usable)} usable at utilization {float(GPU_MEMORY_UTILIZATION)}, "
            f"but the per-GPU reserve alone needs {format_gib(fixed)} (overhead "
            f"{format_gib(BASE_OVERHEAD_BYTES)} + {what} "
            f"{format_gib(fixed - BASE_OVERHEAD_BYTES)}); use a GPU with more memory"
            + ("" if sizing.tuning else " or a shorter max model length"),
            needed_bytes=fixed,
            available_bytes=sizing.usable,
        )
    # The real-valued solution of (1 + 0.05) x loaded / (nodes x gpus) = usable - fixed, which the
    # integer rounding can push up by at most a node or two.
    estimate = (1 + ACTIVATION_FACTOR) * sizing.weights_loaded / (gpus * (sizing.usable - fixed))
    nodes = max(1, math.floor(estimate))
    while nodes <= MAX_NODES and not sizing.fits(_tensor_layout(sku, nodes), tokens):
        nodes += 1
    if nodes > MAX_NODES:
        raise PlanError(
            f"{sizing.preset.name} would need more than {MAX_NODES} nodes of {sku.name} "
            f"({gpus} x {gpu} each)",
            needed_bytes=sizing.weights_loaded,
            available_bytes=MAX_NODES * gpus * (sizing.usable - fixed),
        )
    return nodes


def _resolve_method(options: PlanOptions) -> TuningMethod | None:
    if options.mode != "tuning":
        return None
    return options.tuning_method or DEFAULT_TUNING_METHOD


def _runtime_dtype(preset: Preset, sku: GpuSku) -> str:
    if preset.dtype == "bfloat16" and not sku.supports_bfloat16:
        return "float16"
    return preset.dtype


def plan(preset: Preset, sku: GpuSku, options: PlanOptions | None = None) -> Plan:
    """Size `preset` on nodes of `sku`. Raises PlanError (a ValueError) when it cannot fit."""
    opts = options if options is not None else PlanOptions()
    method = _resolve_method(opts)
    tuning = method is not None
    if tuning and not preset.supports_tuning:
        raise PlanError(f"preset {preset.name} does not support tuning")
    if tuning and opts.node_count is not None and opts.node_count > 1:
        raise PlanError(
            f"tuning runs on a single node; a node count of {opts.node_count} cannot be honoured"
        )
    if opts.max_model_len is not None and opts.max_model_len > preset.context_length:
        raise PlanError(
            f"max model length {opts.max_model_len} exceeds {preset.name}'s limit of "
            f"{preset.context_length} tokens"
        )
    reserve = opts.max_model_len or min(KV_RESERVE_TOKENS, preset.context_length)
    sizing = _Sizing.of(preset, sku, method)
    needed = _nodes_needed(sizing, reserve)

    if tuning:
        distributed = False
    elif opts.allow_distributed is not None:
        distributed = opts.allow_distributed
    else:
        distributed = preset.supports_distributed
    if needed > 1 and not distributed:
        one_node = sizing.budget(_tensor_layout(sku, 1), reserve, reserve)
        gpus = sku.gpu_count
        if tuning:
            why = "tuning runs on a single node"
        elif preset.supports_distributed:
            why = "distributed inference was not allowed"
        else:
            why = f"{preset.name} does not support distributed inference"
        raise PlanError(
            f"{preset.name} needs {needed} nodes of {sku.name} ({gpus} x {sku.gpu_model} "
            f"{format_gib(sku.gpu_memory_bytes)}), but {why}, so it must fit on one node. "
            f"Per GPU it needs {format_gib(one_node.needed_per_gpu)} "
            f"({_describe(one_node, reserve, tuning)}) of {format_gib(one_node.usable_per_gpu)} "
            f"usable; per node {format_gib(one_node.needed_per_gpu * gpus)} of "
            f"{format_gib(one_node.usable_per_gpu * gpus)}",
            needed_bytes=one_node.needed_per_gpu * gpus,
            available_bytes=one_node.usable_per_gpu * gpus,
        )

    requested = opts.node_count or 1
    if distributed:
        model_nodes, replicas = max(needed, requested), 1
    else:
        model_nodes, replicas = 1, requested
    layout = _tensor_layout(sku, model_nodes)
    if (
        not tuning
        and model_nodes == 1
        and sku.gpu_count > 1
        and preset.weight_bytes * 2 < sku.gpu_memory_bytes
    ):
        # Upstream's first parallelism tier: a copy per GPU beats splitting a small model.
        per_gpu = _Layout(shards=1, token_divisor=1, tp=1, pp=1, dp=sku.gpu_count)
        if sizing.fits(per_gpu, reserve):
            layout = per_gpu

    if opts.max_model_len is not None or tuning:
        max_model_len = reserve
    else:
        max_model_len = min(preset.context_length, sizing.max_tokens(layout))
    budget = sizing.budget(layout, max_model_len, reserve)
    return Plan(
        preset=preset.name,
        sku=sku.name,
        node_count=model_nodes * replicas,
        gpus_per_node=sku.gpu_count,
        tensor_parallel_size=layout.tp,
        pipeline_parallel_size=layout.pp,
        max_model_len=max_model_len,
        gpu_memory_utilization=float(GPU_MEMORY_UTILIZATION),
        disk_gib=preset.disk_gib,
        budget=budget,
        mode="tuning" if tuning else "inference",
        tuning_method=method,
        data_parallel_size=layout.dp,
        replicas=replicas,
        dtype=_runtime_dtype(preset, sku),
    )


def max_context(preset: Preset, sku: GpuSku, node_count: int | None = None) -> int:
    """The longest max model length that fits `preset` on `sku` (capped at the model's limit).

    With node_count None, on the fewest nodes that hold the model with the 2048-token reserve;
    otherwise on that many nodes (more nodes of a distributed preset leave more room per GPU).
    Raises PlanError when the model does not fit at all.
    """
    base = plan(preset, sku, PlanOptions(node_count=node_count))
    model_nodes = base.node_count // base.replicas
    sizing = _Sizing.of(preset, sku, None)
    # Splitting over the node's GPUs always leaves at least as much room as a copy per GPU.
    longest = sizing.max_tokens(_tensor_layout(sku, model_nodes))
    return min(preset.context_length, max(longest, base.max_model_len))


def _cost(plan_: Plan, sku: GpuSku) -> tuple[int, int, int, float, str]:
    vcpus = float("inf") if sku.vcpus is None else float(plan_.node_count * sku.vcpus)
    return (
        plan_.node_count,
        plan_.node_count * sku.total_gpu_memory_bytes,
        plan_.node_count * sku.gpu_count,
        vcpus,
        plan_.sku,
    )


def rank_skus(preset: Preset, skus: SkuCatalog, options: PlanOptions | None = None) -> list[Plan]:
    """Plans for every instance type that fits, best first.

    Best means fewest nodes (inter-node traffic is the slowest part of serving), then least GPU
    memory in total (a proxy for cost), then fewest GPUs, then fewest vCPUs (the smaller size of
    an instance family), then name.
    """
    found: list[tuple[tuple[int, int, int, float, str], Plan]] = []
    for sku in skus.values():
        try:
            result = plan(preset, sku, options)
        except PlanError:
            continue
        found.append((_cost(result, sku), result))
    found.sort(key=lambda pair: pair[0])
    return [p for _, p in found]
