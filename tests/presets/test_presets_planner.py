"""The sizing planner: pinned plans, agreement with upstream's estimator, options and errors."""

from __future__ import annotations

import json

import attrs
import pytest

from kaito.presets import (
    GpuSku,
    MemoryBudget,
    Plan,
    PlanError,
    PlanOptions,
    Preset,
    builtin_presets,
    builtin_skus,
    max_context,
    plan,
    rank_skus,
)

GIB = 2**30

pytestmark = pytest.mark.timeout(60)


def P(name: str) -> Preset:
    return builtin_presets()[name]


def S(name: str) -> GpuSku:
    return builtin_skus()[name]


def upstream_node_count(preset: Preset, sku: GpuSku, tokens: int = 2048) -> int | None:
    """Upstream's NodeEstimator.EstimateNodeCount, transcribed to Python floats (float64).

    Returns None where upstream reports that a GPU is too small for the fixed reserve. Upstream
    keeps the node's total GPU memory and divides it by the GPU count with int64 division.
    """
    model_size = float(preset.weight_bytes) * 1.02
    gpu_mem_per_gpu = float(sku.total_gpu_memory_bytes // sku.gpu_count)
    avail = gpu_mem_per_gpu * 0.84
    fixed = 2.3 * float(GIB) + float(tokens * preset.kv_bytes_per_token()) / float(sku.gpu_count)
    if avail <= fixed:
        return None
    per_gpu = (avail - fixed) / (1 + 0.05)
    min_gpus = int(model_size / per_gpu) + 1
    return (min_gpus + sku.gpu_count - 1) // sku.gpu_count


# -- pinned plans ----------------------------------------------------------------------------


def test_phi3_mini_on_nc6s_v3_is_one_node_one_gpu() -> None:
    result = plan(P("phi-3-mini-4k-instruct"), S("Standard_NC6s_v3"))
    assert (result.node_count, result.gpus_per_node) == (1, 1)
    assert (result.tensor_parallel_size, result.pipeline_parallel_size) == (1, 1)
    assert (result.data_parallel_size, result.replicas) == (1, 1)
    assert result.max_model_len == 4096  # the whole 4k context fits
    assert result.gpu_memory_utilization == 0.84
    assert result.disk_gib == 80
    assert result.dtype == "float16"  # V100 has no bfloat16
    assert result.mode == "inference"
    assert result.tuning_method is None
    assert result.budget == MemoryBudget(
        weights=7645041787,  # 7.12Gi, rounded up like resource.Quantity
        weights_loaded=7797942623,  # x 1.02, rounded up
        weights_per_gpu=7797942623,
        kv_bytes_per_token=393216,  # 2 x 32 layers x 32 heads x 96 x 2 bytes
        kv_reserve=805306368,  # 2048 tokens
        kv_cache_per_gpu=1610612736,  # 4096 tokens
        overhead_per_gpu=2469606196,  # 2.3 GiB, rounded up
        activation_per_gpu=389897132,  # 0.05 x weights per GPU, rounded up
        gpu_memory_per_gpu=16 * GIB,
        usable_per_gpu=14431090114,  # 16 GiB x 0.84, rounded down
        needed_per_gpu=7797942623 + 389897132 + 2469606196 + 1610612736,
    )
    assert result.budget.fits
    assert result.budget.headroom_per_gpu == 2163031427


def test_phi3_mini_128k_on_nc6s_v3_gets_the_context_that_fits() -> None:
    result = plan(P("phi-3-mini-128k-instruct"), S("Standard_NC6s_v3"))
    assert (result.node_count, result.gpus_per_node) == (1, 1)
    # usable 14431090114 - weights 7797942623 - activation 389897132 - overhead 2469606196
    # = 3773644163 bytes for the KV cache = 9596 tokens of 393216 bytes.
    assert result.max_model_len == 9596
    assert max_context(P("phi-3-mini-128k-instruct"), S("Standard_NC6s_v3")) == 9596


def test_phi4_mini_worked_example_from_upstreams_docs() -> None:
    # Upstream's memory-estimator page: 1 node on an A100 80GB with the full 128K context, and
    # about 83,640 tokens on an A10 24GB (its arithmetic rounds GiB to two decimals).
    a100 = plan(P("phi-4-mini-instruct"), S("Standard_NC24ads_A100_v4"))
    assert (a100.node_count, a100.max_model_len) == (1, 131072)
    a10 = plan(P("phi-4-mini-instruct"), S("Standard_NV36ads_A10_v5"))
    assert a10.node_count == 1
    assert a10.max_model_len == 83577
    assert abs(a10.max_model_len - 83640) / 83640 < 0.002


def test_llama_70b_fits_one_nd96asr_v4_node_with_tensor_parallelism() -> None:
    result = plan(P("llama-3.3-70b-instruct"), S("Standard_ND96asr_v4"))
    assert (result.node_count, result.gpus_per_node) == (1, 8)
    assert (result.tensor_parallel_size, result.pipeline_parallel_size) == (8, 1)
    assert result.max_model_len == 131072
    assert result.budget.weights_per_gpu == -(-result.budget.weights_loaded // 8)
    assert result.disk_gib == 220
    assert result.dtype == "bfloat16"


def test_llama_70b_needs_three_nc24ads_a100_nodes() -> None:
    preset, sku = P("llama-3.3-70b-instruct"), S("Standard_NC24ads_A100_v4")
    result = plan(preset, sku)
    assert upstream_node_count(preset, sku) == 3
    assert (result.node_count, result.gpus_per_node) == (3, 1)
    assert (result.tensor_parallel_size, result.pipeline_parallel_size) == (1, 3)
    assert result.budget.weights_per_gpu == -(-result.budget.weights_loaded // 3)
    assert 2048 < result.max_model_len < 131072
    assert result.budget.fits


def test_llama_70b_on_upstreams_spelling_of_the_nd_a100_size() -> None:
    result = plan(P("llama-3.3-70b-instruct"), S("Standard_ND96asr_A100_v4"))
    assert result.sku == "Standard_ND96asr_v4"
    assert result.node_count == 1


def test_qwen_32b_on_a100_matches_upstreams_two_node_estimate_when_distributed() -> None:
    # Upstream's estimator test: qwen2.5-coder-32b on Standard_NC24ads_A100_v4 -> 2 nodes. The
    # preset is not distributed (model.go), so it must be allowed explicitly.
    preset, sku = P("qwen2.5-coder-32b-instruct"), S("Standard_NC24ads_A100_v4")
    with pytest.raises(PlanError, match="does not support distributed inference"):
        plan(preset, sku)
    result = plan(preset, sku, PlanOptions(allow_distributed=True))
    assert result.node_count == 2 == upstream_node_count(preset, sku)
    assert result.pipeline_parallel_size == 2


def test_falcon_7b_on_an_a10_is_one_node() -> None:
    # Upstream's estimator tests: falcon-7b fits one Standard_NV36ads_A10_v5 / NC24ads node.
    for sku in ("Standard_NV36ads_A10_v5", "Standard_NC24ads_A100_v4"):
        result = plan(P("falcon-7b"), S(sku))
        assert result.node_count == 1
        assert result.max_model_len == 2048


def test_small_model_on_a_multi_gpu_node_runs_a_copy_per_gpu() -> None:
    # Upstream's first parallelism tier: weights under half of one GPU -> data parallel.
    result = plan(P("phi-3-mini-4k-instruct"), S("Standard_NC24s_v3"))
    assert (result.node_count, result.gpus_per_node) == (1, 4)
    assert (result.tensor_parallel_size, result.data_parallel_size) == (1, 4)
    assert result.budget.weights_per_gpu == result.budget.weights_loaded
    assert result.budget.kv_cache_per_gpu == 4096 * 393216
    # A model above half a GPU is split instead.
    two_a100 = GpuSku(
        name="two-a100",
        cloud="test",
        gpu_model="NVIDIA A100",
        gpu_count=2,
        gpu_memory_bytes=40 * GIB,
        compute_capability="8.0",
    )
    split = plan(P("phi-3-medium-4k-instruct"), two_a100)
    assert (split.tensor_parallel_size, split.data_parallel_size) == (2, 1)


def test_a_context_longer_than_one_gpu_holds_switches_to_tensor_parallel() -> None:
    preset, sku = P("phi-3-mini-128k-instruct"), S("Standard_NC24s_v3")
    auto = plan(preset, sku)
    assert auto.data_parallel_size == 4
    assert auto.max_model_len == 9596
    longest = max_context(preset, sku)
    assert longest > auto.max_model_len
    long = plan(preset, sku, PlanOptions(max_model_len=longest))
    assert (long.tensor_parallel_size, long.data_parallel_size, long.node_count) == (4, 1, 1)
    assert long.budget.fits


# -- agreement with upstream across the catalog -----------------------------------------------


def test_node_counts_agree_with_upstream_for_every_preset_and_instance_type() -> None:
    checked = 0
    for preset in builtin_presets().values():
        for sku in builtin_skus().values():
            expected = upstream_node_count(preset, sku)
            options = PlanOptions(allow_distributed=True)
            if expected is None:
                with pytest.raises(PlanError, match="per-GPU reserve alone needs"):
                    plan(preset, sku, options)
                continue
            assert plan(preset, sku, options).node_count == expected, (preset.name, sku.name)
            checked += 1
    assert checked > 1000


def test_requested_context_sizes_nodes_like_upstream() -> None:
    preset, sku = P("llama-3.3-70b-instruct"), S("Standard_NC24ads_A100_v4")
    for tokens in (2048, 32768, 65536, 131072):
        expected = upstream_node_count(preset, sku, tokens)
        assert plan(preset, sku, PlanOptions(max_model_len=tokens)).node_count == expected


# -- options ---------------------------------------------------------------------------------


def test_a_larger_user_node_count_is_honoured_as_pipeline_stages() -> None:
    result = plan(P("llama-3.3-70b-instruct"), S("Standard_NC24ads_A100_v4"), PlanOptions(5))
    assert (result.node_count, result.pipeline_parallel_size, result.replicas) == (5, 5, 1)
    assert result.budget.weights_per_gpu == -(-result.budget.weights_loaded // 5)
    three = plan(P("llama-3.3-70b-instruct"), S("Standard_NC24ads_A100_v4"))
    assert result.max_model_len > three.max_model_len  # more stages, more room for context


def test_a_smaller_user_node_count_is_raised_to_the_needed_one() -> None:
    result = plan(P("llama-3.3-70b-instruct"), S("Standard_NC24ads_A100_v4"), PlanOptions(1))
    assert result.node_count == 3


def test_a_user_count_for_a_one_node_preset_becomes_replicas() -> None:
    result = plan(P("falcon-7b"), S("Standard_NV36ads_A10_v5"), PlanOptions(node_count=3))
    assert (result.node_count, result.replicas, result.pipeline_parallel_size) == (3, 3, 1)
    assert result.budget == plan(P("falcon-7b"), S("Standard_NV36ads_A10_v5")).budget


def test_distribution_can_be_forbidden() -> None:
    with pytest.raises(PlanError, match="distributed inference was not allowed") as info:
        plan(
            P("llama-3.3-70b-instruct"),
            S("Standard_NC24ads_A100_v4"),
            PlanOptions(allow_distributed=False),
        )
    assert info.value.needed_bytes is not None
    assert info.value.available_bytes is not None
    assert info.value.needed_bytes > info.value.available_bytes


def test_requested_max_model_len_is_used_and_bounded_by_the_model() -> None:
    result = plan(
        P("phi-3-mini-4k-instruct"), S("Standard_NC6s_v3"), PlanOptions(max_model_len=1000)
    )
    assert result.max_model_len == 1000
    assert result.budget.kv_reserve == result.budget.kv_cache_per_gpu == 1000 * 393216
    with pytest.raises(PlanError, match="exceeds phi-3-mini-4k-instruct's limit of 4096"):
        plan(P("phi-3-mini-4k-instruct"), S("Standard_NC6s_v3"), PlanOptions(max_model_len=5000))


def test_a_gpu_too_small_for_the_reserve_is_reported_with_numbers() -> None:
    with pytest.raises(PlanError) as info:
        plan(
            P("phi-3-mini-128k-instruct"),
            S("Standard_NC6s_v3"),
            PlanOptions(max_model_len=131072),
        )
    err = info.value
    assert "per-GPU reserve alone needs 50.30 GiB" in str(err)
    assert "13.44 GiB usable" in str(err)
    assert err.needed_bytes == 2469606196 + 131072 * 393216
    assert err.available_bytes == 14431090114


def test_not_fitting_on_one_node_shows_per_gpu_and_per_node_numbers() -> None:
    with pytest.raises(PlanError) as info:
        plan(P("gpt-oss-120b"), S("Standard_NC24ads_A100_v4"))
    message = str(info.value)
    assert "gpt-oss-120b needs 2 nodes of Standard_NC24ads_A100_v4" in message
    assert "does not support distributed inference" in message
    assert "Per GPU it needs 67.53 GiB" in message
    assert "of 67.20 GiB usable" in message
    assert "weights 61.99 GiB + activation 3.10 GiB + overhead 2.30 GiB" in message
    assert "per node 67.53 GiB of 67.20 GiB" in message
    assert isinstance(info.value, ValueError)


def test_plan_options_validation() -> None:
    with pytest.raises(ValueError, match="node_count must be a positive integer"):
        PlanOptions(node_count=0)
    with pytest.raises(ValueError, match="max_model_len must be a positive integer"):
        PlanOptions(max_model_len=-5)
    with pytest.raises(ValueError, match="mode must be"):
        PlanOptions(mode="serving")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only meaningful with mode='tuning'"):
        PlanOptions(tuning_method="lora")
    with pytest.raises(ValueError, match="tuning_method must be one of lora, qlora"):
        PlanOptions(mode="tuning", tuning_method="full")  # type: ignore[arg-type]
    assert PlanOptions(mode="Tuning", tuning_method="QLoRA").tuning_method == "qlora"  # type: ignore[arg-type]


# -- tuning ----------------------------------------------------------------------------------


def test_seed_qlora_tuning_of_phi3_fits_one_v100() -> None:
    result = plan(
        P("phi-3-mini-4k-instruct"),
        S("Standard_NC6s_v3"),
        PlanOptions(mode="tuning", tuning_method="qlora"),
    )
    assert (result.mode, result.tuning_method) == ("tuning", "qlora")
    assert (result.node_count, result.gpus_per_node, result.max_model_len) == (1, 1, 2048)
    budget = result.budget
    assert budget.weights_loaded == -(-7645041787 // 2)  # NF4 base ~ half the checkpoint
    assert budget.kv_cache_per_gpu == 0
    assert budget.kv_reserve == 0
    checkpointed = 2048 * 32 * 3072 * 2  # tokens x layers x hidden x bf16
    assert budget.activation_per_gpu == -(-budget.weights_per_gpu * 5 // 100) + checkpointed
    assert budget.fits


def test_lora_needs_more_memory_than_qlora() -> None:
    preset, sku = P("phi-3-mini-4k-instruct"), S("Standard_NC6s_v3")
    lora = plan(preset, sku, PlanOptions(mode="tuning"))
    qlora = plan(preset, sku, PlanOptions(mode="tuning", tuning_method="qlora"))
    assert lora.tuning_method == "lora"  # the default method
    assert lora.budget.weights_loaded == -(-7645041787 * 115 // 100)
    assert lora.budget.needed_per_gpu > qlora.budget.needed_per_gpu
    inference = plan(preset, sku, PlanOptions(max_model_len=2048))
    assert lora.budget.weights_loaded > inference.budget.weights_loaded


def test_tuning_refusals() -> None:
    with pytest.raises(PlanError, match="does not support tuning"):
        plan(P("llama-3.1-8b-instruct"), S("Standard_NC24ads_A100_v4"), PlanOptions(mode="tuning"))
    with pytest.raises(PlanError, match="tuning runs on a single node"):
        plan(P("phi-4"), S("Standard_NC24ads_A100_v4"), PlanOptions(node_count=2, mode="tuning"))
    with pytest.raises(PlanError, match=r"needs 2 nodes.*tuning runs on a single node"):
        plan(
            P("qwen2.5-coder-32b-instruct"),
            S("Standard_NC24ads_A100_v4"),
            PlanOptions(mode="tuning"),
        )


# -- ranking and context ---------------------------------------------------------------------


def test_rank_skus_orders_fewest_nodes_then_least_memory() -> None:
    ranked = rank_skus(P("llama-3.3-70b-instruct"), builtin_skus())
    assert ranked, "something must fit"
    skus = builtin_skus()
    keys = [(p.node_count, p.node_count * skus[p.sku].total_gpu_memory_bytes) for p in ranked]
    assert keys == sorted(keys)
    assert ranked[0].sku == "Standard_NC80adis_H100_v5"  # 2 x 94 GiB, the smallest single node
    assert all(p.budget.fits for p in ranked)
    fitting = set()
    for sku in skus.values():
        try:
            plan(P("llama-3.3-70b-instruct"), sku)
        except PlanError:
            continue
        fitting.add(sku.name)
    assert {p.sku for p in ranked} == fitting


def test_rank_skus_respects_options_and_cloud() -> None:
    aws = builtin_skus().for_cloud("aws")
    ranked = rank_skus(P("phi-3-mini-4k-instruct"), aws, PlanOptions(max_model_len=4096))
    assert {p.sku for p in ranked} <= set(aws.names())
    # One 16 GiB T4 is the least GPU memory that fits; the 4-vCPU sizes are the cheapest of
    # those, and the name breaks the tie between them.
    assert [p.sku for p in ranked[:2]] == ["g4dn.xlarge", "g5g.xlarge"]
    assert ranked[2].sku == "g4dn.2xlarge"
    assert all(p.max_model_len == 4096 for p in ranked)
    assert rank_skus(P("gpt-oss-120b"), builtin_skus().for_cloud("gcp")) == []


def test_max_context_grows_with_nodes_for_a_distributed_preset() -> None:
    preset, sku = P("llama-3.3-70b-instruct"), S("Standard_NC24ads_A100_v4")
    three, five = max_context(preset, sku), max_context(preset, sku, node_count=5)
    assert three < five <= preset.context_length
    assert plan(preset, sku, PlanOptions(max_model_len=three)).node_count == 3
    assert plan(preset, sku, PlanOptions(max_model_len=three + 1)).node_count == 4
    with pytest.raises(PlanError):
        max_context(P("gpt-oss-120b"), sku)


def test_plan_to_dict_is_json_ready() -> None:
    result = plan(P("llama-3.3-70b-instruct"), S("Standard_NC24ads_A100_v4"))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["preset"] == "llama-3.3-70b-instruct"
    assert data["sku"] == "Standard_NC24ads_A100_v4"
    assert (data["node_count"], data["pipeline_parallel_size"]) == (3, 3)
    assert data["budget"]["usable_per_gpu"] == result.budget.usable_per_gpu
    assert data["budget"]["headroom_per_gpu"] == result.budget.headroom_per_gpu
    assert set(data) == {f.name for f in attrs.fields(Plan)}
    assert result.total_gpus == 3


def test_plans_are_frozen() -> None:
    result = plan(P("phi-4"), S("Standard_NC24ads_A100_v4"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.node_count = 2  # type: ignore[misc]
    assert result == plan(P("phi-4"), S("Standard_NC24ads_A100_v4"))
