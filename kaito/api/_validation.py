"""Semantic validation of workspaces, on create and on update (the admission webhook's rules).

The validator is pure: it takes the workspace (and on update the stored one), the preset and
SKU catalogs, and whether nodes are auto-provisioned, and returns every problem it finds. It
never talks to a cluster, so it runs the same in the webhook, in `kaito up`, in the CLI's
`validate` and in tests. Catalogs are parameters (defaulting to the built-ins) so a plugin's
presets or a cloud's SKU list are validated against exactly what the reconciler will use.

Rules that look at a single field and can be checked by the API server itself are also CEL
rules in the CRD (see `_crd`); the ones here that need catalogs (preset names, instance types,
does the model fit the GPUs) exist only in this module.

Deliberate leniencies, both for documents from the project's own quickstart:
- image references are checked case-insensitively (the quickstart's
  `ACR_REPO_HERE.azurecr.io/IMAGE_NAME_HERE:0.0.1` must pass);
- `tuning.output.imagePushSecret` is checked for shape only, not as a DNS-1123 name (the
  quickstart's `ACR_REGISTRY_SECRET_HERE` must pass; the push job reports a missing Secret).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel

from kaito.api._checks import (
    check_data_url,
    check_dns1123_label,
    check_dns1123_subdomain,
    check_image_reference,
    check_label_key,
    check_label_value,
    check_secret_reference,
    check_strength,
)
from kaito.api._constants import BYPASS_RESOURCE_CHECKS_ANNOTATION
from kaito.api._errors import FieldError
from kaito.api._workspace import (
    AdapterSpec,
    DataDestination,
    DataSource,
    InferenceSpec,
    LabelSelector,
    PartitionMode,
    PresetOptions,
    PresetSpec,
    ResourceSpec,
    TuningMethod,
    TuningSpec,
    Workspace,
)
from kaito.presets import (
    GpuSku,
    PlanError,
    PlanOptions,
    Preset,
    PresetCatalog,
    SkuCatalog,
    builtin_presets,
    builtin_skus,
    plan,
)

MAX_ADAPTERS = 10
"""Most adapters one inference workspace may load."""
MAX_DATA_URLS = 100
"""Most URLs one tuning input may list (bounds the cost of the CRD's CEL rule per URL)."""

_MIG_PROFILE_RE = re.compile(r"^[1-7]g\.[0-9]+gb$")
_GENERATED_SUFFIX = 5  # characters the API server appends to generateName


def validate_create(
    ws: Workspace,
    *,
    presets: PresetCatalog | None = None,
    skus: SkuCatalog | None = None,
    auto_provisioning: bool = True,
    private_data_urls: bool = False,
) -> list[FieldError]:
    """Every problem with a workspace that is about to be created (empty list: valid).

    `auto_provisioning=False` is bring-your-own-nodes mode (upstream's
    disableNodeAutoProvisioning feature gate): `resource.instanceType` must then be empty.
    `private_data_urls=True` accepts tuning data URLs on loopback and private addresses (the
    local mode: the machine that downloads is the user's own).
    """
    checker = _Checker(
        _catalog(presets, skus), auto_provisioning, old=None, private_data_urls=private_data_urls
    )
    checker.workspace(ws)
    return checker.errors


def validate_update(
    old: Workspace,
    new: Workspace,
    *,
    presets: PresetCatalog | None = None,
    skus: SkuCatalog | None = None,
    auto_provisioning: bool = True,
    private_data_urls: bool = False,
) -> list[FieldError]:
    """Every problem with replacing `old` by `new`: all create checks on `new`, plus the
    fields that may not change after creation."""
    checker = _Checker(
        _catalog(presets, skus), auto_provisioning, old=old, private_data_urls=private_data_urls
    )
    checker.workspace(new)
    checker.immutability(old, new)
    return checker.errors


def bypasses_resource_checks(ws: Workspace) -> bool:
    """Whether the workspace asks to skip the GPU-memory fit check.

    Upstream treats the annotation's presence as the switch; an explicit "false" is honoured
    here as well, because reading `bypass: "false"` as "bypass" would surprise anyone.
    """
    value = (ws.metadata.annotations or {}).get(BYPASS_RESOURCE_CHECKS_ANNOTATION)
    return value is not None and value.strip().lower() != "false"


# ---------------------------------------------------------------------------------------------


def _catalog(
    presets: PresetCatalog | None, skus: SkuCatalog | None
) -> tuple[PresetCatalog, SkuCatalog]:
    return (
        presets if presets is not None else builtin_presets(),
        skus if skus is not None else builtin_skus(),
    )


def _close_matches(name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name.lower(), [n.lower() for n in names], n=3)
        close = [n for n in names if n.lower() in close]
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    sample = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    return f"known: {sample}" if names else "the catalog is empty"


def _plain(value: Any) -> Any:
    """A value as it appears on the wire, for comparing and for messages."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True)
    if isinstance(value, StrEnum):
        return value.value
    return value


class _Checker:
    def __init__(
        self,
        catalogs: tuple[PresetCatalog, SkuCatalog],
        auto_provisioning: bool,
        old: Workspace | None,
        *,
        private_data_urls: bool = False,
    ) -> None:
        self.presets, self.skus = catalogs
        self.auto_provisioning = auto_provisioning
        self.private_data_urls = private_data_urls
        self.old = old
        self.errors: list[FieldError] = []

    def add(self, path: str, message: str | None) -> None:
        if message:
            self.errors.append(FieldError(path, message))

    # -- the whole object -----------------------------------------------------------------

    def workspace(self, ws: Workspace) -> None:
        self.metadata(ws)
        if ws.inference is None and ws.tuning is None:
            self.add(
                "inference",
                "one of inference or tuning is required: inference serves a model, "
                "tuning fine-tunes one",
            )
        if ws.inference is not None and ws.tuning is not None:
            self.add(
                "tuning",
                "must not be set together with inference: a workspace either serves a model "
                "(inference) or fine-tunes one (tuning); use two workspaces for both",
            )
        self.resource(ws)
        if ws.inference is not None:
            self.inference(ws.inference)
        if ws.tuning is not None:
            self.tuning(ws.tuning, ws.resource)
        if not bypasses_resource_checks(ws):
            self.capacity(ws)

    def metadata(self, ws: Workspace) -> None:
        meta = ws.metadata
        if meta.name:
            self.add("metadata.name", check_dns1123_label(meta.name))
        elif meta.generate_name:
            prefix = meta.generate_name
            if len(prefix) + _GENERATED_SUFFIX > 63:
                self.add("metadata.generateName", f"must be at most {63 - _GENERATED_SUFFIX} chars")
            else:
                self.add("metadata.generateName", check_dns1123_label(prefix.rstrip("-") or "a"))
        else:
            self.add(
                "metadata.name",
                "required: a DNS-1123 label such as 'workspace-phi-3' (or set generateName)",
            )

    # -- resource -----------------------------------------------------------------------------

    def resource(self, ws: Workspace) -> None:
        resource = ws.resource
        if resource is None:
            needed = "instanceType and labelSelector" if self.auto_provisioning else "labelSelector"
            self.add("resource", f"required: the GPU nodes to run on ({needed})")
            return
        if resource.count is not None and resource.count < 1:
            self.add("resource.count", f"must be at least 1, got {resource.count}")
        self.instance_type(resource)
        self.label_selector(resource.label_selector)
        if resource.partition is not None:
            self.partition(resource, tuning=ws.tuning is not None)

    def instance_type(self, resource: ResourceSpec) -> None:
        path = "resource.instanceType"
        instance_type = resource.instance_type or ""
        if not self.auto_provisioning:
            old_type = self.old.resource.instance_type if self.old and self.old.resource else None
            if instance_type and instance_type != old_type:
                self.add(
                    path,
                    "must be empty when bringing your own nodes (node auto-provisioning is "
                    "disabled); select the nodes with resource.labelSelector instead",
                )
            return
        if not instance_type:
            example = ", ".join(sorted(self.skus.names())[:3])
            self.add(
                path,
                "required when GPU nodes are auto-provisioned: a GPU instance type from the "
                f"SKU catalog (e.g. {example})",
            )
        elif self.skus.get(instance_type) is None:
            hint = _close_matches(instance_type, self.skus.names())
            self.add(path, f"unknown instance type {instance_type!r}; {hint}")

    def label_selector(self, selector: LabelSelector | None) -> None:
        path = "resource.labelSelector"
        if selector is None:
            self.add(path, "required: labels of the GPU nodes, e.g. matchLabels: {apps: phi-3}")
            return
        for key, value in (selector.match_labels or {}).items():
            self.add(f"{path}.matchLabels[{key}]", check_label_key(key) or check_label_value(value))
        for index, requirement in enumerate(selector.match_expressions or []):
            here = f"{path}.matchExpressions[{index}]"
            if requirement.operator != "In" or len(requirement.values or []) != 1:
                self.add(
                    here,
                    f"operator {requirement.operator!r} with {len(requirement.values or [])} "
                    "value(s) is not supported: use matchLabels, or operator 'In' with exactly "
                    "one value (provisioned nodes get these labels)",
                )
            self.add(f"{here}.key", check_label_key(requirement.key))
            for v_index, value in enumerate(requirement.values or []):
                self.add(f"{here}.values[{v_index}]", check_label_value(value))
        if not selector.match_labels and not selector.match_expressions:
            self.add(
                path,
                "must select by at least one label; an empty selector matches every node",
            )

    def partition(self, resource: ResourceSpec, *, tuning: bool) -> None:
        partition = resource.partition
        assert partition is not None
        path = "resource.partition"
        if self.auto_provisioning:
            self.add(
                path,
                "GPU partitions need bring-your-own nodes (node auto-provisioning disabled); "
                "remove partition or run with auto-provisioning off",
            )
        if tuning:
            self.add(path, "GPU partitioning is not supported for tuning; remove partition")
        if partition.mode is PartitionMode.MIG:
            if partition.count is not None:
                self.add(f"{path}.count", "only valid in accelerator mode; remove it for mig")
            if not partition.profile:
                self.add(f"{path}.profile", "required in mig mode, e.g. '1g.10gb' or '3g.40gb'")
            elif not _MIG_PROFILE_RE.match(partition.profile):
                self.add(
                    f"{path}.profile",
                    f"{partition.profile!r} is not a MIG profile; use e.g. '1g.10gb' or '3g.40gb'",
                )
        else:
            if partition.profile is not None:
                self.add(f"{path}.profile", "only valid in mig mode; remove it for accelerator")
            if partition.count is None:
                self.add(f"{path}.count", "required in accelerator mode: the number of whole GPUs")
            elif partition.count < 1:
                self.add(f"{path}.count", f"must be at least 1, got {partition.count}")

    # -- inference ----------------------------------------------------------------------------

    def inference(self, inference: InferenceSpec) -> None:
        if inference.preset is None and inference.template is None:
            self.add(
                "inference",
                "set one of inference.preset (a model from the preset catalog) or "
                "inference.template (a custom pod template)",
            )
        if inference.preset is not None and inference.template is not None:
            self.add(
                "inference.template",
                "must not be set together with inference.preset; use one or the other",
            )
        if inference.preset is not None:
            self.preset("inference.preset", inference.preset)
        if inference.config is not None:
            self.add("inference.config", check_dns1123_subdomain(inference.config))
        self.adapters(inference.adapters or [])

    def preset(self, path: str, preset: PresetSpec) -> Preset | None:
        found = self.presets.get(preset.name)
        if found is None:
            hint = _close_matches(preset.name, self.presets.names())
            self.add(f"{path}.name", f"unknown preset {preset.name!r}; {hint}")
        if preset.preset_options is not None:
            self.preset_options(f"{path}.presetOptions", preset.preset_options)
        return found

    def preset_options(self, path: str, options: PresetOptions) -> None:
        if options.model_access_secret is not None:
            self.add(
                f"{path}.modelAccessSecret", check_dns1123_subdomain(options.model_access_secret)
            )
        if options.image is not None:
            self.add(f"{path}.image", check_image_reference(options.image))
        self.secret_names(f"{path}.imagePullSecrets", options.image_pull_secrets)

    def secret_names(self, path: str, names: Sequence[str] | None) -> None:
        for index, name in enumerate(names or []):
            self.add(f"{path}[{index}]", check_dns1123_subdomain(name))

    def adapters(self, adapters: Sequence[AdapterSpec]) -> None:
        if len(adapters) > MAX_ADAPTERS:
            self.add(
                "inference.adapters",
                f"at most {MAX_ADAPTERS} adapters are supported, got {len(adapters)}",
            )
        first_use: dict[str, int] = {}
        for index, adapter in enumerate(adapters):
            path = f"inference.adapters[{index}]"
            if adapter.strength is not None:
                self.add(f"{path}.strength", check_strength(adapter.strength))
            source = adapter.source
            if source is None:
                self.add(f"{path}.source", "required: the adapter's name and image or volumeSource")
                continue
            if not source.name:
                self.add(
                    f"{path}.source.name", "required: a DNS-1123 subdomain such as 'my-adapter'"
                )
            else:
                self.add(f"{path}.source.name", check_dns1123_subdomain(source.name))
                if source.name in first_use:
                    self.add(
                        f"{path}.source.name",
                        f"duplicate adapter name {source.name!r} (already used by "
                        f"inference.adapters[{first_use[source.name]}]); names must be unique",
                    )
                else:
                    first_use[source.name] = index
            if source.urls:
                self.add(
                    f"{path}.source.urls",
                    "URLs are not supported for adapters; use source.image or source.volumeSource",
                )
            has_image, has_volume = bool(source.image), source.volume_source is not None
            if not has_image and not has_volume:
                self.add(f"{path}.source", "set one of image or volumeSource for the adapter")
            elif has_image and has_volume:
                self.add(f"{path}.source", "set only one of image or volumeSource, not both")
            self.image_and_pull_secrets(f"{path}.source", source)

    def image_and_pull_secrets(self, path: str, source: DataSource) -> None:
        if source.image:
            self.add(f"{path}.image", check_image_reference(source.image))
        self.secret_names(f"{path}.imagePullSecrets", source.image_pull_secrets)

    # -- tuning -------------------------------------------------------------------------------

    def tuning(self, tuning: TuningSpec, resource: ResourceSpec | None) -> None:
        if tuning.preset is None:
            self.add(
                "tuning.preset", "required: a model from the preset catalog that supports tuning"
            )
        else:
            found = self.preset("tuning.preset", tuning.preset)
            if found is not None and not found.supports_tuning:
                tunable = sorted(n for n in self.presets.names() if self._tunable(n))
                listed = ", ".join(tunable[:6]) + (", ..." if len(tunable) > 6 else "")
                self.add(
                    "tuning.preset.name",
                    f"preset {tuning.preset.name!r} does not support tuning; presets that do: "
                    f"{listed or 'none in this catalog'}",
                )
        if tuning.method is None:
            methods = ", ".join(m.value for m in TuningMethod)
            self.add("tuning.method", f"required: one of {methods}")
        if tuning.config is not None:
            self.add("tuning.config", check_dns1123_subdomain(tuning.config))
        if tuning.input is None:
            self.add("tuning.input", "required: the training data (urls, image or volumeSource)")
        else:
            self.tuning_input(tuning.input)
        if tuning.output is None:
            self.add("tuning.output", "required: where to put the adapter (image or volumeSource)")
        else:
            self.tuning_output(tuning.output)
        if resource is not None and resource.count is not None and resource.count > 1:
            self.add(
                "resource.count",
                "tuning runs on a single node; set count to 1 or leave it unset "
                f"(got {resource.count})",
            )

    def _tunable(self, name: str) -> bool:
        preset = self.presets.get(name)
        return preset is not None and preset.supports_tuning

    def tuning_input(self, source: DataSource) -> None:
        path = "tuning.input"
        kinds = [
            kind
            for kind, present in (
                ("urls", bool(source.urls)),
                ("image", bool(source.image)),
                ("volumeSource", source.volume_source is not None),
            )
            if present
        ]
        if len(kinds) != 1:
            got = " and ".join(kinds) if kinds else "none"
            self.add(path, f"set exactly one of urls, image or volumeSource (got {got})")
        if len(source.urls or []) > MAX_DATA_URLS:
            self.add(
                f"{path}.urls",
                f"at most {MAX_DATA_URLS} URLs are supported, got {len(source.urls or [])}",
            )
        for index, url in enumerate(source.urls or []):
            self.add(
                f"{path}.urls[{index}]",
                check_data_url(url, allow_private=self.private_data_urls),
            )
        if source.name is not None:
            self.add(f"{path}.name", check_dns1123_subdomain(source.name))
        self.image_and_pull_secrets(path, source)

    def tuning_output(self, destination: DataDestination) -> None:
        path = "tuning.output"
        has_image, has_volume = bool(destination.image), destination.volume_source is not None
        if has_image == has_volume:
            got = "both" if has_image else "neither"
            self.add(path, f"set exactly one of image or volumeSource (got {got})")
        if destination.image:
            self.add(f"{path}.image", check_image_reference(destination.image))
            if not destination.image_push_secret:
                self.add(
                    f"{path}.imagePushSecret",
                    "required with output.image: the Secret with the registry credentials "
                    "for pushing the adapter image",
                )
        if destination.image_push_secret:
            self.add(
                f"{path}.imagePushSecret", check_secret_reference(destination.image_push_secret)
            )

    # -- does the model fit the GPUs ------------------------------------------------------

    def capacity(self, ws: Workspace) -> None:
        resource = ws.resource
        if not self.auto_provisioning or resource is None or resource.partition is not None:
            return
        sku = self.skus.get(resource.instance_type or "")
        if sku is None:
            return
        count = resource.count
        if count is not None and count < 1:
            return  # reported on resource.count; the planner cannot size it
        if ws.inference is not None and ws.inference.preset is not None:
            preset = self.presets.get(ws.inference.preset.name)
            options = PlanOptions(node_count=count, mode="inference")
        elif ws.tuning is not None and ws.tuning.preset is not None and ws.tuning.method:
            preset = self.presets.get(ws.tuning.preset.name)
            if preset is None or not preset.supports_tuning:
                return
            method: Literal["lora", "qlora"] = (
                "qlora" if ws.tuning.method is TuningMethod.QLORA else "lora"
            )
            options = PlanOptions(node_count=1, mode="tuning", tuning_method=method)
        else:
            return
        if preset is None:
            return
        self._fits(preset, sku, options)

    def _fits(self, preset: Preset, sku: GpuSku, options: PlanOptions) -> None:
        try:
            plan(preset, sku, options)
        except PlanError as exc:
            self.add(
                "resource.instanceType",
                f"{sku.name} cannot run preset {preset.name!r}: {exc}. Choose an instance type "
                "with more GPU memory, or add the annotation "
                f'{BYPASS_RESOURCE_CHECKS_ANNOTATION}: "True" to skip this check',
            )

    # -- update -------------------------------------------------------------------------------

    def immutability(self, old: Workspace, new: Workspace) -> None:
        for block in ("inference", "tuning"):
            if (getattr(old, block) is None) != (getattr(new, block) is None):
                self.add(
                    block,
                    f"{block} cannot be added or removed after creation; create a new workspace",
                )
        self.resource_immutability(old.resource, new.resource)
        if old.inference is not None and new.inference is not None:
            self.unchanged("inference.preset", old.inference.preset, new.inference.preset)
            if (old.inference.template is None) != (new.inference.template is None):
                self.add(
                    "inference.template",
                    "cannot be added or removed after creation (its content may change)",
                )
        if old.tuning is not None and new.tuning is not None:
            self.unchanged("tuning.preset", old.tuning.preset, new.tuning.preset)
            self.unchanged("tuning.method", old.tuning.method, new.tuning.method)
            old_name = old.tuning.input.name if old.tuning.input else None
            new_name = new.tuning.input.name if new.tuning.input else None
            self.unchanged("tuning.input.name", old_name, new_name)

    def resource_immutability(self, old: ResourceSpec | None, new: ResourceSpec | None) -> None:
        old = old or ResourceSpec()
        new = new or ResourceSpec()
        self.unchanged("resource.count", old.count or 1, new.count or 1)
        if old.instance_type and new.instance_type and old.instance_type != new.instance_type:
            self.add(
                "resource.instanceType",
                f"immutable after creation (was {old.instance_type!r}, now "
                f"{new.instance_type!r}); create a new workspace for another instance type",
            )
        old_map = old.label_selector.as_map() if old.label_selector else {}
        new_map = new.label_selector.as_map() if new.label_selector else {}
        if old_map is not None and new_map is not None and old_map != new_map:
            self.add(
                "resource.labelSelector",
                f"immutable after creation (was {old_map}, now {new_map})",
            )
        self.unchanged("resource.partition", old.partition, new.partition)

    def unchanged(self, path: str, old: Any, new: Any) -> None:
        before, after = _plain(old), _plain(new)
        if before != after:
            self.add(
                path,
                f"immutable after creation (was {before!r}, now {after!r}); "
                "create a new workspace instead",
            )
