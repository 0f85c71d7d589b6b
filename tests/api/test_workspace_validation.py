"""Workspace validation: one case per rule (create and update), each with its field path.

Catalogs are the built-in ones plus two presets made for these tests (one that cannot be tuned,
one too big for a single V100), so the cases do not depend on which models the built-in catalog
happens to list beyond the seed's phi-3 presets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import attrs
import pytest
from workspace_helpers import SEEDS, edited, inference_doc, load_seed, tuning_doc

from kaito.api import (
    BYPASS_RESOURCE_CHECKS_ANNOTATION,
    FieldError,
    Workspace,
    bypasses_resource_checks,
    validate_create,
    validate_update,
)
from kaito.presets import PresetCatalog, SkuCatalog, builtin_presets, builtin_skus

pytestmark = pytest.mark.timeout(30)

GIB = 1024**3


@pytest.fixture(scope="module")
def presets() -> PresetCatalog:
    base = builtin_presets()["phi-3-mini-4k-instruct"]
    return builtin_presets().merged(
        attrs.evolve(base, name="phi-3-no-tuning", hf_id=None, supports_tuning=False),
        attrs.evolve(
            base,
            name="huge-model",
            hf_id=None,
            weight_bytes=600 * GIB,
            parameters=300_000_000_000,
            supports_distributed=False,
        ),
    )


@pytest.fixture(scope="module")
def skus() -> SkuCatalog:
    return builtin_skus()


def _paths(errors: list[FieldError]) -> list[str]:
    return [e.path for e in errors]


# ---------------------------------------------------------------------------------------------
# Valid documents


@pytest.mark.parametrize("name", SEEDS)
def test_seed_documents_are_valid_with_the_builtin_catalogs(name: str) -> None:
    assert validate_create(Workspace.from_dict(load_seed(name))) == []


@pytest.mark.parametrize("document", [inference_doc(), tuning_doc()], ids=["inference", "tuning"])
def test_base_documents_are_valid(
    document: dict[str, Any], presets: PresetCatalog, skus: SkuCatalog
) -> None:
    assert validate_create(Workspace.from_dict(document), presets=presets, skus=skus) == []


def test_bring_your_own_nodes_needs_no_instance_type(presets: PresetCatalog) -> None:
    document = edited(inference_doc(), lambda d: d["resource"].pop("instanceType"))
    workspace = Workspace.from_dict(document)
    assert validate_create(workspace, presets=presets, auto_provisioning=False) == []
    errors = validate_create(workspace, presets=presets, auto_provisioning=True)
    assert _paths(errors) == ["resource.instanceType"]
    assert "Standard_" in errors[0].message  # names valid instance types


def test_generate_name_may_replace_name(presets: PresetCatalog) -> None:
    document = edited(
        inference_doc(), lambda d: d["metadata"].update(name=None, generateName="ws-")
    )
    document["metadata"].pop("name")
    assert validate_create(Workspace.from_dict(document), presets=presets) == []


def test_template_workspace_is_valid(presets: PresetCatalog) -> None:
    document = edited(
        inference_doc(),
        lambda d: d.update(
            inference={
                "template": {"spec": {"containers": [{"name": "srv", "image": "srv:1"}]}},
                "config": "inference-params",
            }
        ),
    )
    assert validate_create(Workspace.from_dict(document), presets=presets) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://huggingface.co/datasets/x/resolve/main/a.parquet?download=true",
        "http://data.example.com:8080/train.jsonl",
        "HTTPS://Data.Example.com/x",
        "https://8.8.8.8/data",
        "https://[2001:4860:4860::8888]/data",
    ],
)
def test_public_data_urls_are_accepted(url: str, presets: PresetCatalog) -> None:
    document = edited(tuning_doc(), lambda d: d["tuning"]["input"].update(urls=[url]))
    assert validate_create(Workspace.from_dict(document), presets=presets) == []


# ---------------------------------------------------------------------------------------------
# One violation per rule


@dataclass
class Case:
    id: str
    base: Callable[[], dict[str, Any]]
    edit: Callable[[dict[str, Any]], Any]
    path: str
    fragment: str
    options: dict[str, Any] = field(default_factory=dict)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets (or with value None, removes) a dotted path."""

    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = document
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        if value is None:
            target.pop(last)
        else:
            target[last] = value

    return edit


def _adapter(name: str, **extra: Any) -> dict[str, Any]:
    return {"source": {"name": name, "image": f"registry.example/adapters/{name}:1", **extra}}


INF, TUNE = inference_doc, tuning_doc
BYO = {"auto_provisioning": False}

CREATE_CASES = [
    Case(
        "name-not-dns-label",
        INF,
        _set("metadata.name", "Bad_Name"),
        "metadata.name",
        "DNS-1123 label",
    ),
    Case("name-too-long", INF, _set("metadata.name", "a" * 64), "metadata.name", "at most 63"),
    Case("name-missing", INF, _set("metadata.name", None), "metadata.name", "required"),
    Case(
        "neither-inference-nor-tuning",
        INF,
        _set("inference", None),
        "inference",
        "one of inference or tuning",
    ),
    Case(
        "both-inference-and-tuning",
        INF,
        lambda d: d.update(tuning=tuning_doc()["tuning"]),
        "tuning",
        "must not be set together with inference",
    ),
    Case("resource-missing", INF, _set("resource", None), "resource", "required"),
    Case(
        "instance-type-missing",
        INF,
        _set("resource.instanceType", None),
        "resource.instanceType",
        "required",
    ),
    Case(
        "instance-type-unknown",
        INF,
        _set("resource.instanceType", "Standard_NC6s_v4"),
        "resource.instanceType",
        "did you mean 'Standard_NC6s_v3'",
    ),
    Case(
        "instance-type-with-own-nodes",
        INF,
        lambda d: None,
        "resource.instanceType",
        "must be empty when bringing your own nodes",
        BYO,
    ),
    Case("count-zero", INF, _set("resource.count", 0), "resource.count", "at least 1"),
    Case(
        "label-selector-missing",
        INF,
        _set("resource.labelSelector", None),
        "resource.labelSelector",
        "required",
    ),
    Case(
        "label-selector-empty",
        INF,
        _set("resource.labelSelector", {}),
        "resource.labelSelector",
        "at least one label",
    ),
    Case(
        "label-selector-not-in",
        INF,
        _set(
            "resource.labelSelector",
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["b"]}]},
        ),
        "resource.labelSelector.matchExpressions[0]",
        "operator 'In' with exactly one value",
    ),
    Case(
        "label-selector-in-two-values",
        INF,
        _set(
            "resource.labelSelector",
            {"matchExpressions": [{"key": "a", "operator": "In", "values": ["b", "c"]}]},
        ),
        "resource.labelSelector.matchExpressions[0]",
        "2 value(s) is not supported",
    ),
    Case(
        "label-key-invalid",
        INF,
        _set("resource.labelSelector", {"matchLabels": {"bad key!": "x"}}),
        "resource.labelSelector.matchLabels[bad key!]",
        "label key",
    ),
    Case(
        "label-value-invalid",
        INF,
        _set("resource.labelSelector", {"matchLabels": {"apps": "-x-"}}),
        "resource.labelSelector.matchLabels[apps]",
        "label value",
    ),
    Case(
        "preset-and-template",
        INF,
        _set("inference.template", {"spec": {}}),
        "inference.template",
        "must not be set together with inference.preset",
    ),
    Case(
        "neither-preset-nor-template",
        INF,
        _set("inference", {"config": "cfg"}),
        "inference",
        "inference.preset",
    ),
    Case(
        "preset-unknown",
        INF,
        _set("inference.preset.name", "phi-3-mini-4k-instruc"),
        "inference.preset.name",
        "did you mean 'phi-3-mini-4k-instruct'",
    ),
    Case(
        "inference-config-name",
        INF,
        _set("inference.config", "My_Config"),
        "inference.config",
        "DNS-1123 subdomain",
    ),
    Case(
        "model-access-secret-name",
        INF,
        _set("inference.preset.presetOptions", {"modelAccessSecret": "HF Token"}),
        "inference.preset.presetOptions.modelAccessSecret",
        "DNS-1123 subdomain",
    ),
    Case(
        "preset-pull-secret-name",
        INF,
        _set("inference.preset.presetOptions", {"imagePullSecrets": ["ok", "Not_OK"]}),
        "inference.preset.presetOptions.imagePullSecrets[1]",
        "DNS-1123 subdomain",
    ),
    Case(
        "preset-image",
        INF,
        _set("inference.preset.presetOptions", {"image": "not an image"}),
        "inference.preset.presetOptions.image",
        "not an image reference",
    ),
    Case(
        "too-many-adapters",
        INF,
        _set("inference.adapters", [_adapter(f"a{i}") for i in range(11)]),
        "inference.adapters",
        "at most 10",
    ),
    Case(
        "adapter-without-source",
        INF,
        _set("inference.adapters", [{"strength": "0.5"}]),
        "inference.adapters[0].source",
        "required",
    ),
    Case(
        "adapter-without-name",
        INF,
        _set("inference.adapters.0.source.name", None),
        "inference.adapters[0].source.name",
        "required",
    ),
    Case(
        "adapter-name-invalid",
        INF,
        _set("inference.adapters.0.source.name", "Adapter_A"),
        "inference.adapters[0].source.name",
        "DNS-1123 subdomain",
    ),
    Case(
        "adapter-name-duplicate",
        INF,
        _set("inference.adapters", [_adapter("a"), _adapter("b"), _adapter("a")]),
        "inference.adapters[2].source.name",
        "duplicate adapter name 'a' (already used by inference.adapters[0])",
    ),
    Case(
        "adapter-urls",
        INF,
        _set("inference.adapters.0.source.urls", ["https://example.com/a.safetensors"]),
        "inference.adapters[0].source.urls",
        "not supported for adapters",
    ),
    Case(
        "adapter-without-image-or-volume",
        INF,
        _set("inference.adapters.0.source.image", None),
        "inference.adapters[0].source",
        "set one of image or volumeSource",
    ),
    Case(
        "adapter-with-image-and-volume",
        INF,
        _set("inference.adapters.0.source.volumeSource", {"emptyDir": {}}),
        "inference.adapters[0].source",
        "only one of image or volumeSource",
    ),
    Case(
        "adapter-image-invalid",
        INF,
        _set("inference.adapters.0.source.image", "registry.example/UPPER CASE"),
        "inference.adapters[0].source.image",
        "not an image reference",
    ),
    Case(
        "adapter-pull-secret",
        INF,
        _set("inference.adapters.0.source.imagePullSecrets", ["Bad Secret"]),
        "inference.adapters[0].source.imagePullSecrets[0]",
        "DNS-1123 subdomain",
    ),
    Case(
        "strength-above-one",
        INF,
        _set("inference.adapters.0.strength", "1.5"),
        "inference.adapters[0].strength",
        "between 0 and 1",
    ),
    Case(
        "strength-negative",
        INF,
        _set("inference.adapters.0.strength", "-0.1"),
        "inference.adapters[0].strength",
        "between 0 and 1",
    ),
    Case(
        "strength-not-a-number",
        INF,
        _set("inference.adapters.0.strength", "strong"),
        "inference.adapters[0].strength",
        "not a number",
    ),
    Case(
        "strength-nan",
        INF,
        _set("inference.adapters.0.strength", "nan"),
        "inference.adapters[0].strength",
        "not a number",
    ),
    Case("tuning-preset-missing", TUNE, _set("tuning.preset", None), "tuning.preset", "required"),
    Case(
        "tuning-preset-unknown",
        TUNE,
        _set("tuning.preset.name", "phi-4-mini"),
        "tuning.preset.name",
        "unknown preset 'phi-4-mini'",
    ),
    Case(
        "tuning-preset-not-tunable",
        TUNE,
        _set("tuning.preset.name", "phi-3-no-tuning"),
        "tuning.preset.name",
        "does not support tuning; presets that do: ",
    ),
    Case(
        "tuning-method-missing",
        TUNE,
        _set("tuning.method", None),
        "tuning.method",
        "one of lora, qlora",
    ),
    Case(
        "tuning-config-name",
        TUNE,
        _set("tuning.config", "Tuning Params"),
        "tuning.config",
        "DNS-1123 subdomain",
    ),
    Case("tuning-input-missing", TUNE, _set("tuning.input", None), "tuning.input", "required"),
    Case(
        "tuning-input-empty", TUNE, _set("tuning.input", {"name": "x"}), "tuning.input", "got none"
    ),
    Case(
        "tuning-input-two-kinds",
        TUNE,
        _set("tuning.input.image", "registry.example/data:1"),
        "tuning.input",
        "got urls and image",
    ),
    Case(
        "tuning-input-too-many-urls",
        TUNE,
        _set("tuning.input.urls", [f"https://data.example.com/{i}" for i in range(101)]),
        "tuning.input.urls",
        "at most 100 URLs",
    ),
    Case(
        "tuning-input-name",
        TUNE,
        _set("tuning.input.name", "Dolly_15k"),
        "tuning.input.name",
        "DNS-1123 subdomain",
    ),
    Case(
        "tuning-input-image",
        TUNE,
        _set("tuning.input", {"image": "registry.example/da ta:1"}),
        "tuning.input.image",
        "not an image reference",
    ),
    Case("tuning-output-missing", TUNE, _set("tuning.output", None), "tuning.output", "required"),
    Case("tuning-output-empty", TUNE, _set("tuning.output", {}), "tuning.output", "got neither"),
    Case(
        "tuning-output-two-kinds",
        TUNE,
        _set("tuning.output.volumeSource", {"persistentVolumeClaim": {"claimName": "out"}}),
        "tuning.output",
        "got both",
    ),
    Case(
        "tuning-output-image-without-secret",
        TUNE,
        _set("tuning.output.imagePushSecret", None),
        "tuning.output.imagePushSecret",
        "required with output.image",
    ),
    Case(
        "tuning-output-image-invalid",
        TUNE,
        _set("tuning.output.image", "registry.example/out:bad:tag"),
        "tuning.output.image",
        "not an image reference",
    ),
    Case(
        "tuning-push-secret-shape",
        TUNE,
        _set("tuning.output.imagePushSecret", "push creds"),
        "tuning.output.imagePushSecret",
        "whitespace",
    ),
    Case("tuning-multi-node", TUNE, _set("resource.count", 2), "resource.count", "single node"),
    Case(
        "partition-with-auto-provisioning",
        INF,
        _set("resource.partition", {"mode": "mig", "profile": "1g.10gb"}),
        "resource.partition",
        "bring-your-own nodes",
    ),
    Case(
        "partition-for-tuning",
        TUNE,
        lambda d: (
            d["resource"].pop("instanceType"),
            d["resource"].update(partition={"mode": "accelerator", "count": 1}),
        ),
        "resource.partition",
        "not supported for tuning",
        BYO,
    ),
    Case(
        "mig-with-count",
        INF,
        lambda d: (
            d["resource"].pop("instanceType"),
            d["resource"].update(partition={"mode": "mig", "profile": "1g.10gb", "count": 1}),
        ),
        "resource.partition.count",
        "only valid in accelerator mode",
        BYO,
    ),
    Case(
        "mig-without-profile",
        INF,
        lambda d: (
            d["resource"].pop("instanceType"),
            d["resource"].update(partition={"mode": "mig"}),
        ),
        "resource.partition.profile",
        "required in mig mode",
        BYO,
    ),
    Case(
        "mig-bad-profile",
        INF,
        lambda d: (
            d["resource"].pop("instanceType"),
            d["resource"].update(partition={"mode": "mig", "profile": "half"}),
        ),
        "resource.partition.profile",
        "not a MIG profile",
        BYO,
    ),
    Case(
        "accelerator-without-count",
        INF,
        lambda d: (
            d["resource"].pop("instanceType"),
            d["resource"].update(partition={"mode": "accelerator"}),
        ),
        "resource.partition.count",
        "required in accelerator mode",
        BYO,
    ),
    Case(
        "accelerator-with-profile",
        INF,
        lambda d: (
            d["resource"].pop("instanceType"),
            d["resource"].update(
                partition={"mode": "accelerator", "count": 2, "profile": "1g.10gb"}
            ),
        ),
        "resource.partition.profile",
        "only valid in mig mode",
        BYO,
    ),
    Case(
        "gpu-memory-too-small",
        INF,
        _set("inference.preset.name", "huge-model"),
        "resource.instanceType",
        "cannot run preset 'huge-model'",
    ),
]


@pytest.mark.parametrize("case", CREATE_CASES, ids=[c.id for c in CREATE_CASES])
def test_create_rule_rejects_with_field_path(
    case: Case, presets: PresetCatalog, skus: SkuCatalog
) -> None:
    workspace = Workspace.from_dict(edited(case.base(), case.edit))
    errors = validate_create(workspace, presets=presets, skus=skus, **case.options)
    matching = [e for e in errors if e.path == case.path]
    assert matching, f"no error at {case.path}: {errors}"
    assert any(case.fragment in e.message for e in matching), matching


BAD_URLS = [
    ("ftp://data.example.com/x", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("https:///no-host", "no host"),
    ("https://data.example.com:99999/x", "not a valid URL"),
    ("http://localhost/x", "localhost"),
    ("http://LOCALHOST./x", "localhost"),
    ("http://api.localhost/x", "localhost"),
    ("http://127.0.0.1/x", "loopback"),
    ("http://[::1]:8080/x", "loopback"),
    ("http://[::ffff:127.0.0.1]/x", "loopback"),
    ("http://2130706433/x", "loopback"),
    ("http://0x7f.1/x", "loopback"),
    ("http://10.0.0.5/x", "private"),
    ("http://192.168.1.10/x", "private"),
    ("http://172.16.0.1/x", "private"),
    ("http://[fd00:ec2::254]/x", "metadata"),
    ("http://10.1.2.3/x", "private"),
    ("http://100.100.100.200/x", "metadata"),
    ("http://100.64.0.1/x", "private or reserved"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1%25eth0]/x", "link-local"),
    ("http://0.0.0.0/x", "unspecified"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://instance-data.ec2.internal/", "metadata"),
]


@pytest.mark.parametrize(("url", "fragment"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_data_urls_must_be_public_http(url: str, fragment: str, presets: PresetCatalog) -> None:
    document = edited(
        tuning_doc(), lambda d: d["tuning"]["input"].update(urls=["https://ok.example/a", url])
    )
    errors = validate_create(Workspace.from_dict(document), presets=presets)
    assert _paths(errors) == ["tuning.input.urls[1]"]
    assert fragment in errors[0].message


PRIVATE_FRAGMENTS = ("localhost", "loopback", "private", "private or reserved")


@pytest.mark.parametrize(("url", "fragment"), BAD_URLS, ids=[u for u, _ in BAD_URLS])
def test_the_local_mode_accepts_loopback_and_private_data_urls_only(
    url: str, fragment: str, presets: PresetCatalog
) -> None:
    document = edited(tuning_doc(), lambda d: d["tuning"]["input"].update(urls=[url]))
    errors = validate_create(Workspace.from_dict(document), presets=presets, private_data_urls=True)
    if fragment in PRIVATE_FRAGMENTS:
        assert errors == []
    else:  # metadata services, link-local, other schemes stay refused
        assert _paths(errors) == ["tuning.input.urls[0]"]
        assert fragment in errors[0].message


def test_all_errors_are_collected(presets: PresetCatalog) -> None:
    document = edited(
        inference_doc(),
        lambda d: (
            d["metadata"].update(name="Bad"),
            d["resource"].update(instanceType="nope", count=0),
            d["inference"]["preset"].update(name="nope"),
            d["inference"].update(
                adapters=[{"source": {"name": "x", "urls": ["https://a.example"]}, "strength": "7"}]
            ),
        ),
    )
    errors = validate_create(Workspace.from_dict(document), presets=presets)
    assert set(_paths(errors)) >= {
        "metadata.name",
        "resource.instanceType",
        "resource.count",
        "inference.preset.name",
        "inference.adapters[0].strength",
        "inference.adapters[0].source.urls",
        "inference.adapters[0].source",
    }
    assert all(str(e).startswith(f"{e.path}: ") for e in errors)


def test_the_seed_placeholders_are_accepted() -> None:
    tuning = load_seed("phi-3-tuning.yaml")
    assert tuning["tuning"]["output"]["image"] == "ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1"
    assert validate_create(Workspace.from_dict(tuning)) == []


# ---------------------------------------------------------------------------------------------
# GPU memory and the bypass annotation


def _huge() -> dict[str, Any]:
    return edited(inference_doc(), _set("inference.preset.name", "huge-model"))


@pytest.mark.parametrize(("value", "bypassed"), [("True", True), ("", True), ("false", False)])
def test_bypass_annotation_skips_the_gpu_memory_check(
    value: str, bypassed: bool, presets: PresetCatalog
) -> None:
    document = edited(
        _huge(),
        lambda d: d["metadata"].update(annotations={BYPASS_RESOURCE_CHECKS_ANNOTATION: value}),
    )
    workspace = Workspace.from_dict(document)
    assert bypasses_resource_checks(workspace) is bypassed
    errors = validate_create(workspace, presets=presets)
    assert _paths(errors) == ([] if bypassed else ["resource.instanceType"])


def test_gpu_memory_check_names_the_bypass_and_passes_on_a_bigger_sku(
    presets: PresetCatalog,
) -> None:
    errors = validate_create(Workspace.from_dict(_huge()), presets=presets)
    assert BYPASS_RESOURCE_CHECKS_ANNOTATION == "kaito.sh/bypass-resource-checks"
    assert BYPASS_RESOURCE_CHECKS_ANNOTATION in errors[0].message
    small = edited(inference_doc(), _set("inference.preset.name", "phi-3-mini-4k-instruct"))
    assert validate_create(Workspace.from_dict(small), presets=presets) == []


def test_gpu_memory_is_not_checked_for_own_nodes(presets: PresetCatalog) -> None:
    document = edited(_huge(), lambda d: d["resource"].pop("instanceType"))
    assert (
        validate_create(Workspace.from_dict(document), presets=presets, auto_provisioning=False)
        == []
    )


# ---------------------------------------------------------------------------------------------
# Update


UPDATE_CASES = [
    Case("count", INF, _set("resource.count", 2), "resource.count", "immutable"),
    Case(
        "instance-type",
        INF,
        _set("resource.instanceType", "Standard_NC24ads_A100_v4"),
        "resource.instanceType",
        "immutable",
    ),
    Case(
        "label-selector",
        INF,
        _set("resource.labelSelector", {"matchLabels": {"apps": "other"}}),
        "resource.labelSelector",
        "immutable",
    ),
    Case(
        "inference-preset",
        INF,
        _set("inference.preset.name", "phi-3-mini-128k-instruct"),
        "inference.preset",
        "immutable",
    ),
    Case(
        "inference-preset-options",
        INF,
        _set("inference.preset.presetOptions", {"modelAccessSecret": "hf-token"}),
        "inference.preset",
        "immutable",
    ),
    Case(
        "template-added",
        INF,
        lambda d: d.update(inference={"template": {"spec": {}}}),
        "inference.template",
        "cannot be added or removed",
    ),
    Case(
        "inference-to-tuning",
        INF,
        lambda d: (d.pop("inference"), d.update(tuning=tuning_doc()["tuning"])),
        "inference",
        "cannot be added or removed after creation",
    ),
    Case(
        "tuning-to-inference",
        TUNE,
        lambda d: (d.pop("tuning"), d.update(inference=inference_doc()["inference"])),
        "tuning",
        "cannot be added or removed after creation",
    ),
    Case(
        "tuning-preset",
        TUNE,
        _set("tuning.preset.name", "phi-3-mini-128k-instruct"),
        "tuning.preset",
        "immutable",
    ),
    Case(
        "tuning-method",
        TUNE,
        _set("tuning.method", "lora"),
        "tuning.method",
        "was 'qlora', now 'lora'",
    ),
    Case(
        "tuning-input-name",
        TUNE,
        _set("tuning.input.name", "alpaca"),
        "tuning.input.name",
        "immutable",
    ),
]


@pytest.mark.parametrize("case", UPDATE_CASES, ids=[c.id for c in UPDATE_CASES])
def test_update_rejects_changing_an_immutable_field(case: Case, presets: PresetCatalog) -> None:
    old = Workspace.from_dict(case.base())
    new = Workspace.from_dict(edited(case.base(), case.edit))
    assert validate_create(new, presets=presets) == [] or case.id in ("template-added",)
    errors = validate_update(old, new, presets=presets)
    matching = [e for e in errors if e.path == case.path]
    assert matching, f"no error at {case.path}: {errors}"
    assert any(case.fragment in e.message for e in matching), matching


def test_partition_is_immutable(presets: PresetCatalog) -> None:
    def byo(profile: str) -> Workspace:
        document = edited(inference_doc(), lambda d: d["resource"].pop("instanceType"))
        document["resource"]["partition"] = {"mode": "mig", "profile": profile}
        return Workspace.from_dict(document)

    assert validate_create(byo("1g.10gb"), presets=presets, auto_provisioning=False) == []
    errors = validate_update(
        byo("1g.10gb"), byo("2g.20gb"), presets=presets, auto_provisioning=False
    )
    assert _paths(errors) == ["resource.partition"]


ALLOWED_UPDATES: list[tuple[str, Callable[[], dict[str, Any]], Callable[[dict[str, Any]], Any]]] = [
    ("adapters", INF, _set("inference.adapters", [_adapter("b"), _adapter("c")])),
    ("strength", INF, _set("inference.adapters.0.strength", "0.9")),
    ("inference-config", INF, _set("inference.config", "my-inference-params")),
    ("metadata", INF, lambda d: d["metadata"].update(labels={"x": "y"}, annotations={"a": "b"})),
    (
        "status",
        INF,
        _set(
            "status",
            {
                "conditions": [
                    {
                        "type": "WorkspaceReady",
                        "status": "True",
                        "reason": "Ready",
                        "message": "",
                        "lastTransitionTime": "2024-05-01T00:00:00Z",
                    }
                ]
            },
        ),
    ),
    ("count-explicit-default", INF, _set("resource.count", 1)),
    (
        "same-selector-other-spelling",
        INF,
        _set(
            "resource.labelSelector",
            {"matchExpressions": [{"key": "apps", "operator": "In", "values": ["phi-3"]}]},
        ),
    ),
    ("tuning-output", TUNE, _set("tuning.output", {"volumeSource": {"emptyDir": {}}})),
    ("tuning-config", TUNE, _set("tuning.config", "my-qlora-params")),
]


@pytest.mark.parametrize(
    ("base", "edit"),
    [(b, e) for _, b, e in ALLOWED_UPDATES],
    ids=[i for i, _, _ in ALLOWED_UPDATES],
)
def test_update_allows_mutable_fields(
    base: Callable[[], dict[str, Any]],
    edit: Callable[[dict[str, Any]], Any],
    presets: PresetCatalog,
) -> None:
    old = Workspace.from_dict(base())
    new = Workspace.from_dict(edited(base(), edit))
    assert validate_update(old, new, presets=presets) == []


def test_template_content_may_change(presets: PresetCatalog) -> None:
    def template(image: str) -> Workspace:
        document = edited(
            inference_doc(),
            _set(
                "inference", {"template": {"spec": {"containers": [{"name": "s", "image": image}]}}}
            ),
        )
        return Workspace.from_dict(document)

    assert validate_update(template("srv:1"), template("srv:2"), presets=presets) == []


def test_update_also_runs_the_create_checks(presets: PresetCatalog) -> None:
    old = Workspace.from_dict(inference_doc())
    new = Workspace.from_dict(edited(inference_doc(), _set("inference.adapters.0.strength", "2")))
    assert _paths(validate_update(old, new, presets=presets)) == ["inference.adapters[0].strength"]


def test_update_with_own_nodes_keeps_a_legacy_instance_type(presets: PresetCatalog) -> None:
    legacy = Workspace.from_dict(inference_doc())  # created before auto-provisioning was turned off
    same = Workspace.from_dict(inference_doc())
    cleared = Workspace.from_dict(edited(inference_doc(), _set("resource.instanceType", None)))
    changed = Workspace.from_dict(
        edited(inference_doc(), _set("resource.instanceType", "Standard_NC12s_v3"))
    )
    assert validate_update(legacy, same, presets=presets, auto_provisioning=False) == []
    assert validate_update(legacy, cleared, presets=presets, auto_provisioning=False) == []
    errors = validate_update(legacy, changed, presets=presets, auto_provisioning=False)
    assert "resource.instanceType" in _paths(errors)
    assert validate_create(same, presets=presets, auto_provisioning=False) != []
