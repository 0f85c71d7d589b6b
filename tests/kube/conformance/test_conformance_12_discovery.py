"""12. Discovery: kubernetes_asyncio's DynamicClient finds kinds from the server's discovery
documents alone, and can use them; the built-in kind table agrees with what is discovered."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes_asyncio.dynamic import DynamicClient

from kaito.kube import BUILTIN_KINDS, CONFIG_MAP, KubeClient

from .conftest import WIDGET

pytestmark = pytest.mark.timeout(60)


async def test_dynamic_client_uses_a_built_in_kind(
    client: KubeClient, ns: str, tmp_path: Path
) -> None:
    async with DynamicClient(client.api_client, cache_file=str(tmp_path / "cache.json")) as dyn:
        assert dyn.version["kubernetes"]["major"]
        config_maps = await dyn.resources.get(api_version="v1", kind="ConfigMap")
        assert config_maps.name == "configmaps"
        assert config_maps.namespaced
        await dyn.create(
            config_maps,
            body={
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "dyn"},
                "data": {"k": "v"},
            },
            namespace=ns,
        )
        fetched = await dyn.get(config_maps, name="dyn", namespace=ns)
        assert fetched.metadata.name == "dyn"
        assert fetched.data.k == "v"
    assert (await client.get(CONFIG_MAP, "dyn", namespace=ns))["data"] == {"k": "v"}


async def test_dynamic_client_discovers_a_custom_resource(
    client: KubeClient, ns: str, tmp_path: Path
) -> None:
    async with DynamicClient(client.api_client, cache_file=str(tmp_path / "cache.json")) as dyn:
        widgets = await dyn.resources.get(api_version=WIDGET.api_version, kind="Widget")
        assert widgets.name == "widgets"
        assert widgets.namespaced
        assert "status" in widgets.subresources
        await dyn.create(
            widgets,
            body={
                "apiVersion": WIDGET.api_version,
                "kind": "Widget",
                "metadata": {"name": "w"},
                "spec": {"size": 2},
            },
            namespace=ns,
        )
    stored = await client.get(WIDGET, "w", namespace=ns)
    assert stored["spec"] == {"size": 2, "maxSize": 50, "color": "blue"}


async def test_built_in_kind_table_matches_discovery(client: KubeClient, tmp_path: Path) -> None:
    async with DynamicClient(client.api_client, cache_file=str(tmp_path / "cache.json")) as dyn:
        for kind in BUILTIN_KINDS:
            found = await dyn.resources.get(api_version=kind.api_version, kind=kind.kind)
            assert found.name == kind.plural, kind
            assert found.namespaced == kind.namespaced, kind
            assert set(kind.subresources) <= set(found.subresources), kind
            assert set(kind.verbs) <= set(found.verbs), kind
