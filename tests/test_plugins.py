"""The plugin registry: explicit registration, look-up errors that say what to install, and
entry-point loading with errors that name the broken plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaito import PluginError, PluginNotFound, Registry, builtin_presets
from kaito.presets import Preset
from kaito.provisioners import ProvisionerContext
from kaito.provisioners.fake import FakeProvisioner


def test_tests_register_plugins_themselves() -> None:
    registry = Registry()
    registry.add_provisioner("fake", FakeProvisioner)
    assert registry.provisioner("fake") is FakeProvisioner
    assert registry.provisioner_names == ["fake"]
    assert registry.runtime_names == []


def test_a_missing_cloud_provisioner_names_the_extra() -> None:
    with pytest.raises(PluginNotFound) as info:
        Registry().provisioner("aks")
    assert "pip install 'kaito[aks]'" in str(info.value)
    with pytest.raises(PluginNotFound, match=r"kaito\[tgi\]"):
        Registry().runtime("tgi")


def test_an_unknown_name_suggests_close_ones_and_lists_what_exists() -> None:
    registry = Registry()
    registry.add_provisioner("karpenter", FakeProvisioner)
    with pytest.raises(PluginNotFound) as info:
        registry.provisioner("karpentr")
    message = str(info.value)
    assert "did you mean 'karpenter'?" in message
    assert "available: karpenter" in message


def test_a_name_registers_once() -> None:
    registry = Registry()
    registry.add_provisioner("fake", FakeProvisioner)
    with pytest.raises(PluginError, match="already registered"):
        registry.add_provisioner("fake", FakeProvisioner)


def test_presets_add_to_the_catalog_and_clashes_are_errors() -> None:
    registry = Registry()
    phi = builtin_presets()["phi-3-mini-4k-instruct"]
    registry.add_presets([phi])  # the same preset again is harmless
    clash = Preset(**{**_fields(phi), "layers": phi.layers + 1})
    with pytest.raises(PluginError):
        registry.add_presets([clash])
    renamed = Preset(**{**_fields(phi), "name": "phi-3-mini-4k-instruct-copy"})
    registry.add_presets([renamed])
    assert registry.presets["phi-3-mini-4k-instruct-copy"].layers == phi.layers


def test_the_default_registry_holds_the_builtins_through_entry_points() -> None:
    registry = Registry(builtin_catalog=False).load_entry_points()
    assert {"karpenter", "byo", "fake"} <= set(registry.provisioner_names)
    assert {"hf", "vllm", "tgi", "triton"} <= set(registry.runtime_names)
    assert "phi-3-mini-4k-instruct" in registry.presets


def test_a_broken_entry_point_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[kaito.provisioners]\nbroken = kaito_no_such_module:Provisioner\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        Registry(builtin_catalog=False).load_entry_points()
    message = str(info.value)
    assert "'broken'" in message
    assert "broken-plugin" in message
    assert "kaito_no_such_module" in message


def test_provisioner_factories_take_a_context() -> None:
    context = ProvisionerContext(client=object())  # type: ignore[arg-type]
    assert FakeProvisioner(context).name == "fake"


def _fields(preset: Preset) -> dict[str, object]:
    import attrs

    return attrs.asdict(preset, recurse=False)
