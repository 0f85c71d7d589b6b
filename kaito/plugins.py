"""The plugin registry: provisioners, runtimes and presets, found by name.

kaito's own provisioners, runtimes and presets are registered through the same entry-point
groups (`kaito.provisioners`, `kaito.runtimes`, `kaito.presets`) as third-party ones, so a plugin
can do anything a built-in does and nothing is special-cased. The registry is an explicit
object: the operator, the CLI and tests each hold one. `default_registry()` (loaded from the
installed entry points) is only a convenience; tests build a `Registry()` and add exactly the
plugins they mean to exercise.

Asking for a name that is not registered is a `PluginNotFound` that says what is available and,
for the plugins kaito knows to live in an optional extra, which `pip install kaito[extra]` brings
it in.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any, Literal

from kaito.presets import Preset, PresetCatalog, builtin_presets
from kaito.provisioners import ProvisionerFactory
from kaito.runtimes import RuntimeFactory

PluginKind = Literal["provisioner", "runtime"]

PROVISIONERS_GROUP = "kaito.provisioners"
RUNTIMES_GROUP = "kaito.runtimes"
PRESETS_GROUP = "kaito.presets"

KNOWN_EXTRAS: dict[tuple[PluginKind, str], str] = {
    ("provisioner", "aks"): "aks",
    ("provisioner", "aws"): "aws",
    ("runtime", "hf"): "hf",
    ("runtime", "tgi"): "tgi",
    ("runtime", "triton"): "triton",
}
"""Plugins that ship with kaito but need an optional extra, by (kind, name)."""

PresetSource = Callable[[], Iterable[Preset]]
"""What a `kaito.presets` entry point loads: a callable returning presets (or a catalog)."""


class PluginError(Exception):
    """A plugin could not be found or loaded."""


class PluginNotFound(PluginError, LookupError):
    """No plugin of that kind and name is registered."""

    def __init__(self, kind: PluginKind, name: str, available: Iterable[str]) -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        extra = KNOWN_EXTRAS.get((kind, name))
        parts = [f"no {kind} named {name!r} is installed"]
        if extra is not None:
            parts.append(f"install it with: pip install 'kaito[{extra}]'")
        else:
            close = difflib.get_close_matches(name, self.available, n=3)
            if close:
                parts.append("did you mean " + " or ".join(repr(c) for c in close) + "?")
        parts.append("available: " + (", ".join(self.available) or "none"))
        super().__init__("; ".join(parts))


class Registry:
    """Provisioner factories, runtime factories and presets, by name."""

    def __init__(self, *, builtin_catalog: bool = True) -> None:
        self._provisioners: dict[str, ProvisionerFactory] = {}
        self._runtimes: dict[str, RuntimeFactory] = {}
        self._presets = builtin_presets() if builtin_catalog else PresetCatalog(())

    # -- registration -------------------------------------------------------------------------

    def add_provisioner(self, name: str, factory: ProvisionerFactory) -> None:
        if name in self._provisioners:
            raise PluginError(f"a provisioner named {name!r} is already registered")
        self._provisioners[name] = factory

    def add_runtime(self, name: str, factory: RuntimeFactory) -> None:
        if name in self._runtimes:
            raise PluginError(f"a runtime named {name!r} is already registered")
        self._runtimes[name] = factory

    def add_presets(self, presets: Iterable[Preset]) -> None:
        """Add presets; a name that is already in the catalog is an error."""
        new = [p for p in presets if p.name not in self._presets or self._presets[p.name] != p]
        try:
            self._presets = self._presets.merged(*new)
        except ValueError as exc:
            raise PluginError(str(exc)) from exc

    def load_entry_points(self) -> Registry:
        """Register every plugin the installed distributions declare. Returns self."""
        for ep in metadata.entry_points(group=PROVISIONERS_GROUP):
            self.add_provisioner(ep.name, _load(ep))
        for ep in metadata.entry_points(group=RUNTIMES_GROUP):
            self.add_runtime(ep.name, _load(ep))
        for ep in metadata.entry_points(group=PRESETS_GROUP):
            source = _load(ep)
            try:
                found = source()
                presets = (
                    [found[n] for n in found] if isinstance(found, PresetCatalog) else list(found)
                )
            except Exception as exc:
                raise PluginError(
                    f"preset plugin {ep.name!r} ({ep.value}) failed to list its presets: {exc}"
                ) from exc
            wrong = [p for p in presets if not isinstance(p, Preset)]
            if wrong:
                raise PluginError(
                    f"preset plugin {ep.name!r} ({ep.value}) returned {type(wrong[0]).__name__}"
                    " objects; it must return kaito.Preset objects"
                )
            self.add_presets(presets)
        return self

    # -- look-up ------------------------------------------------------------------------------

    def provisioner(self, name: str) -> ProvisionerFactory:
        try:
            return self._provisioners[name]
        except KeyError:
            raise PluginNotFound("provisioner", name, self._provisioners) from None

    def runtime(self, name: str) -> RuntimeFactory:
        try:
            return self._runtimes[name]
        except KeyError:
            raise PluginNotFound("runtime", name, self._runtimes) from None

    @property
    def provisioner_names(self) -> list[str]:
        return sorted(self._provisioners)

    @property
    def runtime_names(self) -> list[str]:
        return sorted(self._runtimes)

    @property
    def presets(self) -> PresetCatalog:
        return self._presets


def _load(ep: metadata.EntryPoint) -> Any:
    dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
    try:
        obj = ep.load()
    except Exception as exc:
        raise PluginError(
            f"the {ep.group} plugin {ep.name!r} from {dist} failed to load ({ep.value}): {exc}"
        ) from exc
    if not callable(obj):
        raise PluginError(f"the {ep.group} plugin {ep.name!r} from {dist} is not callable")
    return obj


@functools.cache
def default_registry() -> Registry:
    """The registry of everything installed, built once. The built-in catalog comes in
    through its own entry point like any other preset pack."""
    return Registry(builtin_catalog=False).load_entry_points()
