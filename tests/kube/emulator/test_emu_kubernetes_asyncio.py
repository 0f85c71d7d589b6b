"""kubernetes_asyncio against the emulator: the dynamic client (discovery-driven), typed APIs,
the status subresource and the watch helper, including its 410 handling."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from emu_support import gadget
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

from kaito.kube.emulator import Emulator


@pytest.fixture
async def api(emu: Emulator, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(emu.write_kubeconfig(tmp_path / "kubeconfig")),
        client_configuration=configuration,
    )
    async with client.ApiClient(configuration) as api_client:
        yield api_client


async def test_dynamic_client_finds_custom_resources(api: client.ApiClient) -> None:
    dynamic = await DynamicClient(api)
    gadgets = await dynamic.resources.get(api_version="test.kaito.sh/v1", kind="Gadget")
    created = await gadgets.create(body=gadget("g1"), namespace="default")
    assert created.spec.limit == 10
    listed = await gadgets.get(namespace="default")
    assert [item.metadata.name for item in listed.items] == ["g1"]
    patched = await gadgets.status.patch(
        name="g1",
        namespace="default",
        body={"status": {"phase": "Up"}},
        content_type="application/merge-patch+json",
    )
    assert patched.status.phase == "Up"


async def test_typed_api_and_error_status(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {}})
    with pytest.raises(ApiException) as caught:
        await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    assert caught.value.status == 409
    assert '"reason":"AlreadyExists"' in caught.value.body


async def test_watch_helper_streams_and_raises_gone(emu: Emulator, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    await core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    events = []
    async with watch.Watch() as w:
        async for event in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=1):
            events.append((event["type"], event["object"].metadata.name))
    assert events == [("ADDED", "c")]
    emu.store.history_limit = 1
    for i in range(3):
        emu.store.patch("configmaps", "default", "c", {"data": {"i": str(i)}})

    async def stale_watch() -> None:
        async with watch.Watch() as w:
            async for _ in w.stream(
                core.list_namespaced_config_map, "default", resource_version="2", timeout_seconds=1
            ):
                pass

    with pytest.raises(ApiException) as caught:
        await stale_watch()
    assert caught.value.status == 410
