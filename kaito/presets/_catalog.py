"""Catalogs of presets and GPU instance types, and the loaders for kaito's packaged data.

The model and SKU tables are data, not code: `data/presets.yaml`, `data/skus.yaml` and the chat
templates in `data/chat_templates/` ship inside the package and are read with
`importlib.resources` the first time someone asks for them (then cached), so importing
`kaito.presets` costs no YAML parsing. The loaders are strict (unknown keys, wrong types and
duplicate names are errors naming the entry) because a typo in a size silently mis-plans a
cluster.

A catalog is an immutable, mapping-like collection keyed by name and iterated in name order.
Look-ups forgive case (cloud providers and upstream treat instance types and preset names
case-insensitively) and accept the other spellings a thing is known by: a preset's Hugging Face
id, an instance type's aliases. An unknown name raises a `KeyError` subclass that suggests the
closest names, because the usual cause is a typo.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from typing import Any, Generic, TypeVar

from kaito.presets._model import GpuSku, Preset
from kaito.presets._quantity import parse_quantity

T = TypeVar("T", Preset, GpuSku)


class UnknownNameError(KeyError):
    """A catalog has no entry by that name; `close_matches` lists the likeliest intended ones."""

    kind = "entry"

    def __init__(self, name: str, available: Iterable[str]) -> None:
        import difflib  # only a miss pays for it

        self.name = name
        self.close_matches = difflib.get_close_matches(name, list(available), n=3, cutoff=0.6)
        message = f"unknown {self.kind} {name!r}"
        if self.close_matches:
            message += "; did you mean " + " or ".join(repr(m) for m in self.close_matches) + "?"
        super().__init__(message)

    def __str__(self) -> str:
        # KeyError would print the repr of the message; show it as written.
        return str(self.args[0])


class UnknownPresetError(UnknownNameError):
    kind = "preset"


class UnknownSkuError(UnknownNameError):
    kind = "instance type"


class _Catalog(Generic[T]):
    """The shared mapping behaviour; subclasses say how an entry is known besides its name."""

    _error: type[UnknownNameError] = UnknownNameError

    def __init__(self, items: Iterable[T] = ()) -> None:
        ordered = sorted(items, key=lambda item: item.name)
        self._items: dict[str, T] = {}
        self._lookup: dict[str, str] = {}
        for item in ordered:
            key = item.name.lower()
            if key in self._lookup:
                raise ValueError(
                    f"duplicate {self._error.kind} name {item.name!r} "
                    f"(already have {self._lookup[key]!r})"
                )
            self._items[item.name] = item
            self._lookup[key] = item.name
        # Another spelling never shadows a real name, and one shared by two entries is dropped:
        # a look-up must never return a different entry than the caller meant.
        owners: dict[str, set[str]] = {}
        for item in ordered:
            for other in self._other_names(item):
                if other.lower() not in self._lookup:
                    owners.setdefault(other.lower(), set()).add(item.name)
        for key, names in owners.items():
            if len(names) == 1:
                self._lookup[key] = next(iter(names))

    def _other_names(self, item: T) -> Iterable[str]:
        return ()

    def get(self, name: str) -> T | None:
        """The entry called `name` (or known by that spelling), or None."""
        found = self._items.get(name)
        if found is not None:
            return found
        canonical = self._lookup.get(name.lower()) if isinstance(name, str) else None
        return self._items[canonical] if canonical is not None else None

    def __getitem__(self, name: str) -> T:
        found = self.get(name)
        if found is None:
            raise self._error(name, self._items)
        return found

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> list[str]:
        """Every entry's name, sorted."""
        return list(self._items)

    def values(self) -> list[T]:
        """Every entry, in name order."""
        return list(self._items.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Catalog) or type(other) is not type(self):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        return hash(tuple(self._items.values()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} entries)"


class PresetCatalog(_Catalog[Preset]):
    """Model presets by name; a preset can also be found by its Hugging Face id."""

    _error = UnknownPresetError

    def _other_names(self, item: Preset) -> Iterable[str]:
        return (item.hf_id,) if item.hf_id else ()

    def merged(self, *presets: Preset) -> PresetCatalog:
        """A new catalog with these presets added; a name already present is a ValueError."""
        return PresetCatalog([*self._items.values(), *presets])


class SkuCatalog(_Catalog[GpuSku]):
    """GPU instance types by name (case-insensitive, aliases accepted)."""

    _error = UnknownSkuError

    def _other_names(self, item: GpuSku) -> Iterable[str]:
        return item.aliases

    def merged(self, *skus: GpuSku) -> SkuCatalog:
        """A new catalog with these instance types added; a name already present is a ValueError."""
        return SkuCatalog([*self._items.values(), *skus])

    def for_cloud(self, cloud: str) -> SkuCatalog:
        """The instance types of one cloud ("azure", "aws"); empty for a cloud it does not know."""
        wanted = cloud.lower()
        return SkuCatalog(s for s in self._items.values() if s.cloud.lower() == wanted)


# -- loading ---------------------------------------------------------------------------------

_PRESET_KEYS: dict[str, str] = {
    # YAML key -> Preset field
    "name": "name",
    "hf_id": "hf_id",
    "revision": "revision",
    "family": "family",
    "model_type": "model_type",
    "architecture": "architecture",
    "parameters": "parameters",
    "weights": "weight_bytes",
    "dtype": "dtype",
    "quantization": "quantization",
    "layers": "layers",
    "hidden_size": "hidden_size",
    "attention_heads": "attention_heads",
    "kv_heads": "kv_heads",
    "head_dim": "head_dim",
    "context_length": "context_length",
    "runtimes": "runtimes",
    "tuning": "supports_tuning",
    "distributed": "supports_distributed",
    "disk_gib": "disk_gib",
    "chat_template": "chat_template_name",
    "generated_from": "generated_from",
    "description": "description",
}
_PRESET_REQUIRED = (
    "name", "hf_id", "family", "model_type", "architecture", "parameters", "weights", "dtype",
    "layers", "hidden_size", "attention_heads", "kv_heads", "context_length",
)  # fmt: skip

_SKU_KEYS: dict[str, str] = {
    "name": "name",
    "aliases": "aliases",
    "cloud": "cloud",
    "gpu_model": "gpu_model",
    "gpu_count": "gpu_count",
    "gpu_memory": "gpu_memory_bytes",
    "compute_capability": "compute_capability",
    "vcpus": "vcpus",
    "nvme": "nvme",
}
_SKU_REQUIRED = ("name", "cloud", "gpu_model", "gpu_count", "gpu_memory", "compute_capability")

_BOOL_KEYS = {"tuning", "distributed", "nvme"}
_QUANTITY_KEYS = {"weights", "gpu_memory"}


def _parse_yaml(text: str) -> Any:
    import yaml  # deferred: only loading a catalog needs it

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


def _entries(text: str, key: str, source: str) -> list[Mapping[str, Any]]:
    document = _parse_yaml(text)
    if not isinstance(document, dict) or set(document) != {key}:
        raise ValueError(f"{source}: expected a mapping with a single key {key!r}")
    entries = document[key]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{source}: {key!r} must be a list of mappings")
    return entries


def _fields(
    entry: Mapping[str, Any], keys: Mapping[str, str], required: Iterable[str], where: str
) -> dict[str, Any]:
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}")
    missing = [k for k in required if k not in entry]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    fields: dict[str, Any] = {}
    for key, value in entry.items():
        if key in _BOOL_KEYS and not isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
        if key in _QUANTITY_KEYS:
            if isinstance(value, float):
                raise ValueError(f"{where}: write {key} as a quantity string, e.g. '7.12Gi'")
            value = parse_quantity(value)
        fields[keys[key]] = value
    return fields


def load_presets(
    text: str, *, templates: Mapping[str, str] | None = None, source: str = "presets"
) -> PresetCatalog:
    """Parse a presets YAML document (the packaged `presets.yaml` format).

    `chat_template` in an entry names a template in `templates` (by default kaito's packaged
    templates, so a preset pack can reuse them).
    """
    available = builtin_chat_templates() if templates is None else templates
    presets: list[Preset] = []
    for index, entry in enumerate(_entries(text, "presets", source)):
        where = f"{source}: preset #{index + 1} ({entry.get('name', '?')})"
        fields = _fields(entry, _PRESET_KEYS, _PRESET_REQUIRED, where)
        template_name = fields.get("chat_template_name")
        if template_name is not None:
            if template_name not in available:
                known = ", ".join(sorted(available)) or "none"
                raise ValueError(f"{where}: no chat template {template_name!r} (known: {known})")
            fields["chat_template"] = available[template_name]
        try:
            presets.append(Preset(**fields))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
    try:
        return PresetCatalog(presets)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc


def load_skus(text: str, *, source: str = "skus") -> SkuCatalog:
    """Parse an instance-type YAML document (the packaged `skus.yaml` format)."""
    skus: list[GpuSku] = []
    for index, entry in enumerate(_entries(text, "skus", source)):
        where = f"{source}: instance type #{index + 1} ({entry.get('name', '?')})"
        fields = _fields(entry, _SKU_KEYS, _SKU_REQUIRED, where)
        try:
            skus.append(GpuSku(**fields))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
    try:
        return SkuCatalog(skus)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from exc


def _data_text(*parts: str) -> str:
    return resources.files("kaito.presets").joinpath("data", *parts).read_text(encoding="utf-8")


@functools.cache
def builtin_chat_templates() -> Mapping[str, str]:
    """kaito's packaged chat templates by name (the file name without `.jinja`)."""
    folder = resources.files("kaito.presets").joinpath("data", "chat_templates")
    found: dict[str, str] = {}
    for item in folder.iterdir():
        if item.name.endswith(".jinja"):
            # A file ends with a newline; the template itself must not emit one.
            found[item.name.removesuffix(".jinja")] = item.read_text(encoding="utf-8").rstrip("\n")
    return dict(sorted(found.items()))


@functools.cache
def builtin_presets() -> PresetCatalog:
    """kaito's own model presets (loaded once). Also the `kaito.presets` entry point."""
    return load_presets(_data_text("presets.yaml"), source="presets.yaml")


@functools.cache
def builtin_skus() -> SkuCatalog:
    """kaito's own GPU instance types, Azure and AWS (loaded once)."""
    return load_skus(_data_text("skus.yaml"), source="skus.yaml")
