"""Properties of the planner over generated presets, instance types and options.

- a plan always fits its own budget, and the budget adds up;
- more memory per GPU (or more GPUs per node) never needs more nodes;
- a longer context never needs fewer nodes;
- max_context is tight: it fits, and one token more does not fit on the same nodes;
- rank_skus returns exactly the fitting plans, best first.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaito.presets import (
    GpuSku,
    Plan,
    PlanError,
    PlanOptions,
    Preset,
    SkuCatalog,
    builtin_presets,
    max_context,
    plan,
    rank_skus,
)

GIB = 2**30
MIB = 2**20

pytestmark = pytest.mark.timeout(120)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def synthetic_presets(draw: st.DrawFn) -> Preset:
    kv_heads = draw(st.sampled_from([1, 2, 4, 8, 16]))
    groups = draw(st.sampled_from([1, 2, 4, 8]))
    head_dim = draw(st.sampled_from([64, 96, 128, 256]))
    heads = kv_heads * groups
    return Preset(
        name="generated",
        hf_id=None,
        family="test",
        model_type="llama",
        architecture="LlamaForCausalLM",
        parameters=draw(st.integers(10**6, 10**12)),
        weight_bytes=draw(st.integers(50 * MIB, 1500 * GIB)),
        dtype=draw(st.sampled_from(["bfloat16", "float16", "float32"])),
        layers=draw(st.integers(1, 128)),
        hidden_size=heads * head_dim,
        attention_heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context_length=draw(st.sampled_from([512, 2048, 4096, 32768, 131072, 262144])),
        supports_tuning=draw(st.booleans()),
        supports_distributed=draw(st.booleans()),
    )


presets = st.one_of(st.sampled_from(builtin_presets().values()), synthetic_presets())


@st.composite
def skus(draw: st.DrawFn, memory: st.SearchStrategy[int] | None = None) -> GpuSku:
    return GpuSku(
        name="generated-sku",
        cloud="test",
        gpu_model="GPU",
        gpu_count=draw(st.sampled_from([1, 2, 4, 8])),
        gpu_memory_bytes=draw(memory if memory is not None else st.integers(4 * GIB, 192 * GIB)),
        compute_capability=draw(st.sampled_from(["7.0", "8.0", "9.0"])),
        vcpus=draw(st.none() | st.integers(1, 256)),
    )


@st.composite
def options(draw: st.DrawFn, preset: Preset) -> PlanOptions:
    tuning = draw(st.booleans()) and preset.supports_tuning
    return PlanOptions(
        node_count=draw(st.none() | st.integers(1, 1 if tuning else 6)),
        max_model_len=draw(st.none() | st.integers(1, preset.context_length)),
        mode="tuning" if tuning else "inference",
        tuning_method=draw(st.sampled_from([None, "lora", "qlora"])) if tuning else None,
        allow_distributed=draw(st.sampled_from([None, True, False])),
    )


def try_plan(preset: Preset, sku: GpuSku, opts: PlanOptions | None = None) -> Plan | None:
    try:
        return plan(preset, sku, opts)
    except PlanError:
        return None


@PROPERTY
@given(data=st.data(), preset=presets, sku=skus())
def test_a_plan_always_fits_its_own_budget(
    data: st.DataObject, preset: Preset, sku: GpuSku
) -> None:
    opts = data.draw(options(preset))
    result = try_plan(preset, sku, opts)
    if result is None:
        return
    b = result.budget
    assert b.fits
    assert b.needed_per_gpu <= b.usable_per_gpu <= b.gpu_memory_per_gpu
    kv_or_activation = b.kv_cache_per_gpu + b.activation_per_gpu
    assert b.needed_per_gpu == b.weights_per_gpu + b.overhead_per_gpu + kv_or_activation
    assert b.usable_per_gpu == sku.gpu_memory_bytes * 84 // 100
    # The weights are all somewhere: split over tp x pp GPUs, or whole on each GPU.
    shards = result.tensor_parallel_size * result.pipeline_parallel_size
    assert b.weights_per_gpu * shards >= b.weights_loaded
    assert b.weights_per_gpu * (shards - 1) < b.weights_loaded
    # Shape of the plan.
    assert result.gpus_per_node == sku.gpu_count
    assert result.tensor_parallel_size * result.data_parallel_size == result.gpus_per_node
    assert result.node_count == result.pipeline_parallel_size * result.replicas
    assert result.node_count >= (opts.node_count or 1)
    assert 1 <= result.max_model_len <= preset.context_length
    if opts.max_model_len is not None:
        assert result.max_model_len == opts.max_model_len
    if result.mode == "inference":
        per_gpu = result.max_model_len * preset.kv_bytes_per_token()
        assert b.kv_cache_per_gpu * result.tensor_parallel_size >= per_gpu
    else:
        assert b.kv_cache_per_gpu == 0
        assert result.node_count == 1
    distributed = (
        opts.allow_distributed
        if opts.allow_distributed is not None
        else preset.supports_distributed
    )
    if result.pipeline_parallel_size > 1:
        assert distributed
        assert result.mode == "inference"


@PROPERTY
@given(
    preset=presets,
    sku=skus(),
    extra=st.integers(1, 64 * GIB),
    node_count=st.none() | st.integers(1, 4),
    max_model_len=st.none() | st.sampled_from([1, 512, 2048, 8192]),
    allow=st.sampled_from([None, True, False]),
)
def test_more_memory_per_gpu_never_needs_more_nodes(
    preset: Preset,
    sku: GpuSku,
    extra: int,
    node_count: int | None,
    max_model_len: int | None,
    allow: bool | None,
) -> None:
    if max_model_len is not None:
        max_model_len = min(max_model_len, preset.context_length)
    opts = PlanOptions(node_count=node_count, max_model_len=max_model_len, allow_distributed=allow)
    bigger = attrs.evolve(sku, gpu_memory_bytes=sku.gpu_memory_bytes + extra)
    small, big = try_plan(preset, sku, opts), try_plan(preset, bigger, opts)
    if small is not None:
        assert big is not None, "a larger GPU must fit what a smaller one fits"
        assert big.node_count <= small.node_count
        same_layout = (big.node_count, big.data_parallel_size) == (
            small.node_count,
            small.data_parallel_size,
        )
        if max_model_len is None and same_layout:
            # On the same nodes, more memory leaves more room for context. (With fewer nodes
            # it may leave less: nodes are sized for the 2048-token reserve, not for context.)
            assert big.max_model_len >= small.max_model_len


@PROPERTY
@given(preset=presets, sku=skus(), factor=st.sampled_from([2, 4, 8]))
def test_more_gpus_per_node_never_need_more_nodes(preset: Preset, sku: GpuSku, factor: int) -> None:
    opts = PlanOptions(allow_distributed=True)
    wider = attrs.evolve(sku, gpu_count=sku.gpu_count * factor)
    narrow, wide = try_plan(preset, sku, opts), try_plan(preset, wider, opts)
    if narrow is not None:
        assert wide is not None
        assert wide.node_count <= narrow.node_count


@PROPERTY
@given(preset=presets, sku=skus(), a=st.integers(1, 262144), b=st.integers(1, 262144))
def test_a_longer_context_never_needs_fewer_nodes(
    preset: Preset, sku: GpuSku, a: int, b: int
) -> None:
    short, long = sorted((min(a, preset.context_length), min(b, preset.context_length)))
    opts = PlanOptions(allow_distributed=True)
    p_short = try_plan(preset, sku, attrs.evolve(opts, max_model_len=short))
    p_long = try_plan(preset, sku, attrs.evolve(opts, max_model_len=long))
    if p_long is not None:
        assert p_short is not None
        assert p_short.node_count <= p_long.node_count


@PROPERTY
@given(preset=presets, sku=skus(), node_count=st.none() | st.integers(1, 4))
def test_max_context_is_tight(preset: Preset, sku: GpuSku, node_count: int | None) -> None:
    base = try_plan(preset, sku, PlanOptions(node_count=node_count))
    if base is None:
        with pytest.raises(PlanError):
            max_context(preset, sku, node_count)
        return
    longest = max_context(preset, sku, node_count)
    assert base.max_model_len <= longest <= preset.context_length
    at_longest = plan(preset, sku, PlanOptions(node_count=node_count, max_model_len=longest))
    assert at_longest.node_count == base.node_count
    assert at_longest.budget.fits
    if longest < preset.context_length:
        beyond = try_plan(
            preset, sku, PlanOptions(node_count=node_count, max_model_len=longest + 1)
        )
        assert beyond is None or beyond.node_count > base.node_count


@settings(max_examples=40, deadline=None)
@given(
    preset=presets,
    catalog=st.lists(
        skus(memory=st.sampled_from([8, 16, 24, 40, 48, 80, 94, 141]).map(lambda g: g * GIB)),
        min_size=1,
        max_size=6,
    ),
)
def test_rank_skus_returns_exactly_the_fitting_plans_best_first(
    preset: Preset, catalog: list[GpuSku]
) -> None:
    named = SkuCatalog(attrs.evolve(s, name=f"sku-{i}") for i, s in enumerate(catalog))
    ranked = rank_skus(preset, named)
    fitting = {s.name for s in named.values() if try_plan(preset, s) is not None}
    assert {p.sku for p in ranked} == fitting
    assert len(ranked) == len(fitting)
    keys = [(p.node_count, p.node_count * named[p.sku].total_gpu_memory_bytes) for p in ranked]
    assert keys == sorted(keys)
    for result in ranked:
        assert result == plan(preset, named[result.sku])
