"""The preset and instance-type catalogs: packaged data, look-ups, loaders and validation."""

from __future__ import annotations

import subprocess
import sys

import attrs
import pytest

import kaito.presets as presets_pkg
from kaito.presets import (
    GpuSku,
    Preset,
    PresetCatalog,
    SkuCatalog,
    UnknownPresetError,
    UnknownSkuError,
    builtin_chat_templates,
    builtin_presets,
    builtin_skus,
    load_presets,
    load_skus,
)

GIB = 2**30

pytestmark = pytest.mark.timeout(30)


def _preset(**changes: object) -> Preset:
    base = builtin_presets()["phi-3-mini-4k-instruct"]
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


# -- the facade ------------------------------------------------------------------------------


def test_exported_names_are_exactly_the_intended_ones() -> None:
    assert set(presets_pkg.__all__) == {
        "GpuSku",
        "MemoryBudget",
        "Plan",
        "PlanError",
        "PlanOptions",
        "Preset",
        "PresetCatalog",
        "SkuCatalog",
        "UnknownPresetError",
        "UnknownSkuError",
        "builtin_chat_templates",
        "builtin_presets",
        "builtin_skus",
        "load_presets",
        "load_skus",
        "max_context",
        "plan",
        "rank_skus",
    }
    for name in presets_pkg.__all__:
        assert getattr(presets_pkg, name).__module__.startswith("kaito.presets")


def test_import_is_light_and_loads_the_catalogs_lazily() -> None:
    code = (
        "import sys, kaito.presets as p\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print(','.join(heavy), p.builtin_presets.cache_info().currsize,"
        " p.builtin_skus.cache_info().currsize)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["0", "0"], out.stdout


def test_presets_package_imports_no_other_kaito_package() -> None:
    import ast
    from pathlib import Path

    folder = Path(presets_pkg.__file__).parent
    for source in folder.glob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith("kaito") or name.startswith("kaito.presets"), (
                    f"{source.name} imports {name}"
                )
                assert name.split(".")[0] not in {"torch", "transformers"}, source.name


# -- the built-in presets --------------------------------------------------------------------

REQUIRED_PRESETS = [
    "phi-3-mini-4k-instruct",
    "phi-3-mini-128k-instruct",
    "phi-3-medium-4k-instruct",
    "phi-3-medium-128k-instruct",
    "phi-3.5-mini-instruct",
    "phi-4",
    "phi-4-mini-instruct",
    "llama-3.1-8b",
    "llama-3.1-8b-instruct",
    "llama-3.3-70b-instruct",
    "mistral-7b",
    "mistral-7b-instruct",
    "ministral-3-3b-instruct",
    "ministral-3-8b-instruct",
    "ministral-3-14b-instruct",
    "qwen2.5-coder-7b-instruct",
    "qwen2.5-coder-32b-instruct",
    "qwen3-8b-awq",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-qwen-14b",
    "gemma-3-4b-instruct",
    "gemma-3-27b-instruct",
    "gpt-oss-20b",
    "gpt-oss-120b",
    "falcon-7b",
    "falcon-7b-instruct",
    "falcon-40b",
    "falcon-40b-instruct",
]


def test_builtin_catalog_covers_the_upstream_families() -> None:
    catalog = builtin_presets()
    # The generated tiny presets (the local mode's, tested in tests/local) come on top.
    upstream = [n for n in catalog.names() if not catalog[n].generated]
    assert upstream == sorted(REQUIRED_PRESETS)
    assert list(catalog) == catalog.names()
    assert len(upstream) == len(REQUIRED_PRESETS)


def test_builtin_catalog_is_loaded_once() -> None:
    assert builtin_presets() is builtin_presets()
    assert builtin_skus() is builtin_skus()


def test_phi3_mini_numbers_are_upstreams() -> None:
    p = builtin_presets()["phi-3-mini-4k-instruct"]
    assert p.hf_id == "microsoft/Phi-3-mini-4k-instruct"
    assert p.revision == "0a67737cc96d2554230f90338b163bc6380a2a85"
    assert (p.family, p.model_type, p.architecture) == ("phi-3", "phi3", "Phi3ForCausalLM")
    # "7.12Gi" as resource.Quantity.Value(): 7.12 x 2^30 = 7645041786.88, rounded up.
    assert p.weight_bytes == 7645041787
    assert (p.layers, p.hidden_size, p.attention_heads, p.kv_heads, p.head_dim) == (
        32,
        3072,
        32,
        32,
        96,
    )
    assert p.context_length == 4096
    assert p.dtype == "bfloat16"
    assert p.runtimes[:2] == ("hf", "vllm")
    assert p.supports_tuning
    assert not p.supports_distributed
    assert p.disk_gib == 80
    assert p.chat_template_name == "phi-3"
    assert p.chat_template is not None
    assert "<|assistant|>" in p.chat_template


# BytesPerToken from upstream's per-model model.go files, for the presets whose value there
# follows the 2 x layers x kv_heads x head_dim x dtype formula.
UPSTREAM_BYTES_PER_TOKEN = {
    "phi-3-mini-4k-instruct": 393216,
    "phi-3-mini-128k-instruct": 393216,
    "phi-3.5-mini-instruct": 393216,
    "phi-3-medium-4k-instruct": 204800,
    "phi-3-medium-128k-instruct": 204800,
    "phi-4": 204800,
    "phi-4-mini-instruct": 131072,
    "llama-3.1-8b-instruct": 131072,
    "llama-3.3-70b-instruct": 327680,
    "mistral-7b": 131072,
    "mistral-7b-instruct": 131072,
    "ministral-3-3b-instruct": 106496,
    "ministral-3-8b-instruct": 139264,
    "ministral-3-14b-instruct": 163840,
    "qwen2.5-coder-7b-instruct": 57344,
    "qwen2.5-coder-32b-instruct": 262144,
    "deepseek-r1-distill-llama-8b": 131072,
    "deepseek-r1-distill-qwen-14b": 196608,
    "falcon-7b": 8192,
    "falcon-7b-instruct": 8192,
}


@pytest.mark.parametrize(("name", "expected"), sorted(UPSTREAM_BYTES_PER_TOKEN.items()))
def test_kv_bytes_per_token_matches_upstream(name: str, expected: int) -> None:
    assert builtin_presets()[name].kv_bytes_per_token() == expected


UPSTREAM_WEIGHTS_GIB = {
    "phi-3-mini-4k-instruct": "7.12",
    "phi-3-medium-4k-instruct": "26.00",
    "phi-4": "27.31",
    "phi-4-mini-instruct": "7.15",
    "llama-3.1-8b-instruct": "14.96",
    "llama-3.3-70b-instruct": "131.42",
    "mistral-7b-instruct": "13.50",
    "ministral-3-14b-instruct": "14.65",
    "qwen2.5-coder-32b-instruct": "61.03",
    "qwen3-8b-awq": "5.68",
    "deepseek-r1-distill-qwen-14b": "27.51",
    "gemma-3-27b-instruct": "51.10",
    "gpt-oss-20b": "12.9",
    "gpt-oss-120b": "60.77",
    "falcon-40b": "77.9",
}


@pytest.mark.parametrize(("name", "gib"), sorted(UPSTREAM_WEIGHTS_GIB.items()))
def test_weight_sizes_are_upstreams(name: str, gib: str) -> None:
    from decimal import Decimal
    from math import ceil

    assert builtin_presets()[name].weight_bytes == ceil(Decimal(gib) * GIB)


def test_tuning_and_distributed_flags_follow_upstream() -> None:
    catalog = builtin_presets()
    tunable = {n for n in catalog if catalog[n].supports_tuning and not catalog[n].generated}
    # The tiny generated presets are tunable too (kaito's own: the local tuning loop runs them).
    assert all(catalog[n].supports_tuning for n in catalog if catalog[n].generated)
    assert tunable == {
        "phi-3-mini-4k-instruct",
        "phi-3-mini-128k-instruct",
        "phi-3-medium-4k-instruct",
        "phi-3-medium-128k-instruct",
        "phi-3.5-mini-instruct",
        "phi-4",
        "phi-4-mini-instruct",
        "mistral-7b",
        "qwen2.5-coder-7b-instruct",
        "qwen2.5-coder-32b-instruct",
        "falcon-7b",
        "falcon-40b",
    }
    distributed = {n for n in catalog if catalog[n].supports_distributed}
    assert distributed == {
        "llama-3.1-8b",
        "llama-3.1-8b-instruct",
        "llama-3.3-70b-instruct",
        "qwen3-8b-awq",
    }


def test_every_builtin_preset_is_consistent() -> None:
    templates = builtin_chat_templates()
    for preset in builtin_presets().values():
        if preset.generated:
            continue  # no checkpoint to describe; tests/local checks the generated models
        assert preset.hf_id is not None, preset.name
        assert "/" in preset.hf_id, preset.name
        assert preset.chat_template_name is not None, preset.name
        assert preset.chat_template == templates[preset.chat_template_name]
        assert {"hf", "vllm"} <= set(preset.runtimes), preset.name
        # bf16/fp16 checkpoints hold about two bytes per parameter; quantized ones less.
        ratio = preset.weight_bytes / preset.parameters
        if preset.quantization is None:
            assert 1.9 < ratio < 2.1, (preset.name, ratio)
        else:
            assert ratio < 1.3, (preset.name, ratio)
        assert preset.disk_gib * GIB > preset.weight_bytes, preset.name


def test_lookup_forgives_case_and_accepts_the_hugging_face_id() -> None:
    catalog = builtin_presets()
    phi4 = catalog["phi-4"]
    assert catalog["PHI-4"] is phi4
    assert catalog["microsoft/phi-4"] is phi4
    assert catalog.get("Microsoft/Phi-4") is phi4
    assert "microsoft/phi-4" in catalog
    assert catalog.get("no-such-model") is None
    assert 42 not in catalog


def test_unknown_preset_suggests_close_names() -> None:
    with pytest.raises(UnknownPresetError) as info:
        builtin_presets()["phi-3-mini-4k-instuct"]
    err = info.value
    assert isinstance(err, KeyError)
    assert err.close_matches[0] == "phi-3-mini-4k-instruct"
    assert str(err) == (
        "unknown preset 'phi-3-mini-4k-instuct'; did you mean 'phi-3-mini-4k-instruct' or "
        + " or ".join(repr(m) for m in err.close_matches[1:])
        + "?"
    )
    with pytest.raises(UnknownPresetError, match=r"^unknown preset 'zzz'$"):
        builtin_presets()["zzz"]


def test_merged_returns_a_new_catalog_and_rejects_duplicates() -> None:
    catalog = builtin_presets()
    extra = _preset(name="my-phi", hf_id="me/my-phi")
    bigger = catalog.merged(extra)
    assert len(bigger) == len(catalog) + 1
    assert "my-phi" not in catalog
    assert bigger["me/my-phi"] is extra
    with pytest.raises(ValueError, match="duplicate preset name 'phi-4'"):
        catalog.merged(_preset(name="phi-4"))
    with pytest.raises(ValueError, match="duplicate preset name") as info:
        catalog.merged(_preset(name="PHI-4"))
    assert "'PHI-4'" in str(info.value)
    assert "'phi-4'" in str(info.value)
    assert PresetCatalog(()).merged(extra).names() == ["my-phi"]
    assert PresetCatalog([extra]) == PresetCatalog([extra])


def test_a_shared_hugging_face_id_finds_neither_preset() -> None:
    a = _preset(name="a", hf_id="org/model")
    b = _preset(name="b", hf_id="org/model")
    catalog = PresetCatalog([a, b])
    assert catalog.get("org/model") is None
    assert catalog["a"] is a
    # An id never shadows a real preset name.
    c = _preset(name="c", hf_id="a")
    assert PresetCatalog([a, c])["a"] is a


# -- Preset validation -----------------------------------------------------------------------


def test_head_dim_and_disk_have_sensible_defaults() -> None:
    p = Preset(
        name="tiny",
        hf_id=None,
        family="llama-3",
        model_type="llama",
        architecture="LlamaForCausalLM",
        parameters=1_000_000,
        weight_bytes=3 * GIB,
        dtype="float32",
        layers=2,
        hidden_size=64,
        attention_heads=4,
        kv_heads=2,
        context_length=256,
    )
    assert p.head_dim == 16
    assert p.disk_gib == 83  # upstream's rule: weights in GiB + 80
    assert p.runtimes == ("hf", "vllm")
    assert p.kv_bytes_per_token() == 2 * 2 * 2 * 16 * 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kv_heads": 5}, "kv_heads .5. must divide attention_heads .32."),
        ({"kv_heads": 64}, "kv_heads .64. must divide"),
        ({"dtype": "int3"}, "dtype must be one of"),
        ({"runtimes": ("hf", "ollama")}, "unknown runtimes"),
        ({"runtimes": ()}, "at least one runtime"),
        ({"runtimes": ("hf", "hf")}, "lists a name twice"),
        ({"layers": 0}, "layers must be a positive integer"),
        ({"weight_bytes": -1}, "weight_bytes must be a positive integer"),
        ({"context_length": True}, "context_length must be a positive integer"),
        ({"name": "has space"}, "name must be letters"),
        ({"family": ""}, "family must be a non-empty string"),
        ({"hf_id": ""}, "hf_id must be a non-empty string or None"),
    ],
)
def test_invalid_presets_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _preset(**changes)


def test_runtimes_must_be_a_sequence_not_a_string() -> None:
    with pytest.raises(TypeError):
        _preset(runtimes="hf")


# -- the loader ------------------------------------------------------------------------------

_MINIMAL = """
presets:
  - name: tiny-llama
    hf_id: me/tiny-llama
    family: llama-3
    model_type: llama
    architecture: LlamaForCausalLM
    parameters: 1000000
    weights: 2Mi
    dtype: float32
    layers: 2
    hidden_size: 64
    attention_heads: 4
    kv_heads: 2
    context_length: 512
{extra}
"""


def test_load_presets_reads_a_pack_and_reuses_packaged_templates() -> None:
    catalog = load_presets(
        _MINIMAL.format(extra="    chat_template: llama-3\n    runtimes: [hf]\n    tuning: true")
    )
    tiny = catalog["tiny-llama"]
    assert tiny.weight_bytes == 2 * 2**20
    assert tiny.runtimes == ("hf",)
    assert tiny.supports_tuning
    assert not tiny.supports_distributed
    assert tiny.chat_template == builtin_chat_templates()["llama-3"]
    own = load_presets(
        _MINIMAL.format(extra="    chat_template: mine"), templates={"mine": "{{ messages }}"}
    )
    assert own["tiny-llama"].chat_template == "{{ messages }}"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    weight: 1Gi", r"unknown keys \['weight'\]"),
        ("    tuning: yes please", "tuning must be true or false"),
        ("    chat_template: nope", "no chat template 'nope'"),
        ("    kv_heads_extra: 1", "unknown keys"),
        ("    disk_gib: 0", "disk_gib must be a positive integer"),
    ],
)
def test_load_presets_rejects_mistakes_naming_the_entry(extra: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        load_presets(_MINIMAL.format(extra=extra), source="pack.yaml")
    assert "pack.yaml: preset #1 (tiny-llama)" in str(info.value)


def test_load_presets_rejects_missing_keys_floats_and_duplicates() -> None:
    with pytest.raises(ValueError, match=r"missing keys \['dtype'\]"):
        load_presets(_MINIMAL.format(extra="").replace("    dtype: float32\n", ""))
    with pytest.raises(ValueError, match="write weights as a quantity string"):
        load_presets(_MINIMAL.format(extra="").replace("2Mi", "1.5"))
    with pytest.raises(ValueError, match="unknown suffix 'Xi'"):
        load_presets(_MINIMAL.format(extra="").replace("2Mi", "2Xi"))
    doubled = _MINIMAL.format(extra="") + _MINIMAL.format(extra="").replace("presets:\n", "")
    with pytest.raises(ValueError, match="duplicate preset name 'tiny-llama'"):
        load_presets(doubled)
    with pytest.raises(ValueError, match="a mapping with a single key 'presets'"):
        load_presets("models: []")
    with pytest.raises(ValueError, match="must be a list of mappings"):
        load_presets("presets: [1, 2]")


# -- instance types --------------------------------------------------------------------------


def test_sku_catalog_has_the_upstream_instance_types() -> None:
    skus = builtin_skus()
    for name in [
        "Standard_NC6s_v3",
        "Standard_NC12s_v3",
        "Standard_NC24s_v3",
        "Standard_NC4as_T4_v3",
        "Standard_NV36ads_A10_v5",
        "Standard_NV72ads_A10_v5",
        "Standard_NC24ads_A100_v4",
        "Standard_NC48ads_A100_v4",
        "Standard_NC96ads_A100_v4",
        "Standard_NC40ads_H100_v5",
        "Standard_NC80adis_H100_v5",
        "Standard_ND96asr_v4",
        "Standard_ND96amsr_A100_v4",
        "Standard_ND96isr_H100_v5",
        "Standard_ND96isr_H200_v5",
        "p4d.24xlarge",
        "p4de.24xlarge",
        "p5.48xlarge",
        "p5e.48xlarge",
        "g5.xlarge",
        "g5.48xlarge",
        "g6.xlarge",
        "g6.48xlarge",
    ]:
        assert name in skus, name


@pytest.mark.parametrize(
    ("name", "cloud", "model", "count", "gib", "capability", "vcpus", "nvme"),
    [
        ("Standard_NC6s_v3", "azure", "NVIDIA V100", 1, 16, "7.0", 6, False),
        ("Standard_NC24ads_A100_v4", "azure", "NVIDIA A100", 1, 80, "8.0", 24, True),
        ("Standard_ND96asr_v4", "azure", "NVIDIA A100", 8, 40, "8.0", 96, False),
        ("Standard_ND96amsr_A100_v4", "azure", "NVIDIA A100", 8, 80, "8.0", 96, True),
        ("Standard_NC80adis_H100_v5", "azure", "NVIDIA H100", 2, 94, "9.0", 80, True),
        ("Standard_ND96isr_H200_v5", "azure", "NVIDIA H200", 8, 141, "9.0", 96, True),
        ("Standard_NV72ads_A10_v5", "azure", "NVIDIA A10", 2, 24, "8.6", 72, False),
        ("p4d.24xlarge", "aws", "NVIDIA A100", 8, 40, "8.0", 96, True),
        ("p5e.48xlarge", "aws", "NVIDIA H200", 8, 141, "9.0", 192, True),
        ("g6.12xlarge", "aws", "NVIDIA L4", 4, 24, "8.9", 48, True),
        ("g5.xlarge", "aws", "NVIDIA A10G", 1, 24, "8.6", 4, True),
    ],
)
def test_sku_facts(
    name: str,
    cloud: str,
    model: str,
    count: int,
    gib: int,
    capability: str,
    vcpus: int,
    nvme: bool,
) -> None:
    sku = builtin_skus()[name]
    assert (sku.cloud, sku.gpu_model, sku.gpu_count) == (cloud, model, count)
    assert sku.gpu_memory_bytes == gib * GIB
    assert sku.total_gpu_memory_bytes == count * gib * GIB
    assert (sku.compute_capability, sku.vcpus, sku.nvme) == (capability, vcpus, nvme)
    assert sku.supports_bfloat16 == (capability >= "8.0")


def test_sku_lookup_is_case_insensitive_and_knows_upstreams_spelling() -> None:
    skus = builtin_skus()
    nd = skus["Standard_ND96asr_v4"]
    assert skus["standard_nd96asr_v4"] is nd
    assert skus["Standard_ND96asr_A100_v4"] is nd  # upstream's table spells it so
    assert "Standard_ND96asr_A100_v4" not in skus.names()
    with pytest.raises(UnknownSkuError, match="did you mean 'Standard_NC6s_v3'"):
        skus["Standard_NC6_v3"]


def test_for_cloud_splits_the_catalog() -> None:
    skus = builtin_skus()
    azure, aws = skus.for_cloud("azure"), skus.for_cloud("AWS")
    assert isinstance(azure, SkuCatalog)
    assert len(azure) + len(aws) == len(skus)
    assert all(s.name.startswith("Standard_") for s in azure.values())
    assert "p5.48xlarge" in aws
    assert "p5.48xlarge" not in azure
    assert len(skus.for_cloud("gcp")) == 0


def test_sku_merged_and_validation() -> None:
    custom = GpuSku(
        name="local-rtx",
        cloud="local",
        gpu_model="NVIDIA RTX 4090",
        gpu_count=1,
        gpu_memory_bytes=24 * GIB,
        compute_capability="8.9",
    )
    merged = builtin_skus().merged(custom)
    assert merged["local-rtx"] is custom
    assert "local-rtx" not in builtin_skus()
    assert merged.for_cloud("local").names() == ["local-rtx"]
    with pytest.raises(ValueError, match="duplicate instance type name"):
        builtin_skus().merged(attrs.evolve(custom, name="Standard_NC6s_v3"))
    with pytest.raises(ValueError, match="compute_capability must look like"):
        attrs.evolve(custom, compute_capability="eight")
    with pytest.raises(ValueError, match="gpu_count must be a positive integer"):
        attrs.evolve(custom, gpu_count=0)
    with pytest.raises(ValueError, match="vcpus must be a positive integer or None"):
        attrs.evolve(custom, vcpus=-2)


def test_load_skus_reads_quantities_and_rejects_mistakes() -> None:
    text = (
        "skus:\n  - {name: box, cloud: local, gpu_model: X, gpu_count: 2, gpu_memory: 12Gi,"
        ' compute_capability: "8.0"%s}\n'
    )
    box = load_skus(text % "")["box"]
    assert box.gpu_memory_bytes == 12 * GIB
    assert box.vcpus is None
    assert not box.nvme
    with pytest.raises(ValueError, match=r"instance type #1 \(box\): nvme must be true or false"):
        load_skus(text % ", nvme: 1")
    with pytest.raises(ValueError, match="compute_capability must look like"):
        load_skus(text.replace('"8.0"', "8"))
