"""5. Patches: JSON merge, JSON patch (with a failing `test`), strategic merge (lists keyed by
name), and server-side apply (field managers, conflicts, force, removal of unowned fields)."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.kube import (
    CONFIG_MAP,
    DEPLOYMENT,
    Conflict,
    Invalid,
    KubeClient,
    PatchType,
    UnsupportedMediaType,
)

from .conftest import WIDGET

pytestmark = pytest.mark.timeout(30)


async def test_merge_patch(client: KubeClient, ns: str) -> None:
    await client.create(
        CONFIG_MAP,
        {"metadata": {"name": "c", "namespace": ns}, "data": {"keep": "1", "drop": "2"}},
    )
    patched = await client.patch(
        CONFIG_MAP,
        "c",
        {"data": {"drop": None, "add": "3"}, "metadata": {"labels": {"l": "v"}}},
        namespace=ns,
    )
    assert patched["data"] == {"keep": "1", "add": "3"}
    assert patched["metadata"]["labels"] == {"l": "v"}


async def test_merge_patch_replaces_lists(client: KubeClient, ns: str) -> None:
    await client.create(
        WIDGET,
        {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 1, "tags": ["a", "b"]}},
    )
    patched = await client.patch(WIDGET, "w", {"spec": {"tags": ["c"]}}, namespace=ns)
    assert patched["spec"]["tags"] == ["c"]
    assert patched["spec"]["size"] == 1


async def test_json_patch(client: KubeClient, ns: str) -> None:
    await client.create(
        CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}, "data": {"a": "1", "b": "2"}}
    )
    patched = await client.patch(
        CONFIG_MAP,
        "c",
        [
            {"op": "test", "path": "/data/a", "value": "1"},
            {"op": "replace", "path": "/data/a", "value": "10"},
            {"op": "remove", "path": "/data/b"},
            {"op": "add", "path": "/data/c", "value": "3"},
        ],
        namespace=ns,
        patch_type=PatchType.JSON,
    )
    assert patched["data"] == {"a": "10", "c": "3"}


async def test_json_patch_failed_test_changes_nothing(client: KubeClient, ns: str) -> None:
    created = await client.create(
        CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}, "data": {"a": "1"}}
    )
    with pytest.raises(Invalid) as caught:
        await client.patch(
            CONFIG_MAP,
            "c",
            [
                {"op": "replace", "path": "/data/a", "value": "2"},
                {"op": "test", "path": "/data/a", "value": "1"},
            ],
            namespace=ns,
            patch_type=PatchType.JSON,
        )
    assert caught.value.code == 422
    after = await client.get(CONFIG_MAP, "c", namespace=ns)
    assert after["data"] == {"a": "1"}
    assert after["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def two_container_deployment(ns: str) -> dict[str, Any]:
    labels = {"app": "d"}
    return {
        "metadata": {"name": "d", "namespace": ns},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "web:1"},
                        {"name": "sidecar", "image": "sidecar:1"},
                    ]
                },
            },
        },
    }


async def test_strategic_merge_patch_merges_containers_by_name(client: KubeClient, ns: str) -> None:
    await client.create(DEPLOYMENT, two_container_deployment(ns))
    patched = await client.patch(
        DEPLOYMENT,
        "d",
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "sidecar", "image": "sidecar:2"}]}}
            }
        },
        namespace=ns,
        patch_type=PatchType.STRATEGIC,
    )
    containers = patched["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("web", "web:1"),
        ("sidecar", "sidecar:2"),
    ]
    removed = await client.patch(
        DEPLOYMENT,
        "d",
        {"spec": {"template": {"spec": {"containers": [{"name": "web", "$patch": "delete"}]}}}},
        namespace=ns,
        patch_type=PatchType.STRATEGIC,
    )
    assert [c["name"] for c in removed["spec"]["template"]["spec"]["containers"]] == ["sidecar"]


async def test_merge_patch_of_the_same_list_replaces_it(client: KubeClient, ns: str) -> None:
    # The contrast with the strategic patch above: a merge patch has no list keys.
    await client.create(DEPLOYMENT, two_container_deployment(ns))
    patched = await client.patch(
        DEPLOYMENT,
        "d",
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "sidecar", "image": "sidecar:2"}]}}
            }
        },
        namespace=ns,
    )
    assert [c["name"] for c in patched["spec"]["template"]["spec"]["containers"]] == ["sidecar"]


async def test_strategic_merge_patch_on_a_custom_resource_is_unsupported(
    client: KubeClient, ns: str
) -> None:
    await client.create(WIDGET, {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 1}})
    with pytest.raises(UnsupportedMediaType):
        await client.patch(
            WIDGET, "w", {"spec": {"size": 2}}, namespace=ns, patch_type=PatchType.STRATEGIC
        )


def applied(ns: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": ns},
        "data": data,
    }


async def apply(client: KubeClient, ns: str, manager: str, data: dict[str, str], **kw: Any) -> Any:
    return await client.patch(
        CONFIG_MAP,
        "c",
        applied(ns, data),
        namespace=ns,
        patch_type=PatchType.APPLY,
        field_manager=manager,
        **kw,
    )


def managers(obj: dict[str, Any]) -> set[str]:
    return {entry["manager"] for entry in obj["metadata"].get("managedFields") or []}


async def test_server_side_apply_creates_and_tracks_managers(client: KubeClient, ns: str) -> None:
    created = await apply(client, ns, "first", {"a": "1", "b": "2"})
    assert created["data"] == {"a": "1", "b": "2"}
    assert "first" in managers(created)
    entry = next(e for e in created["metadata"]["managedFields"] if e["manager"] == "first")
    assert entry["operation"] == "Apply"
    assert entry["fieldsType"] == "FieldsV1"

    second = await apply(client, ns, "second", {"c": "3"})
    assert second["data"] == {"a": "1", "b": "2", "c": "3"}
    assert {"first", "second"} <= managers(second)


async def test_server_side_apply_conflict_and_force(client: KubeClient, ns: str) -> None:
    await apply(client, ns, "first", {"a": "1"})
    with pytest.raises(Conflict) as caught:
        await apply(client, ns, "second", {"a": "2"})
    assert caught.value.code == 409
    assert "first" in caught.value.message
    assert (await client.get(CONFIG_MAP, "c", namespace=ns))["data"] == {"a": "1"}

    forced = await apply(client, ns, "second", {"a": "2"}, force=True)
    assert forced["data"] == {"a": "2"}
    # The first manager lost the field, so re-applying it now conflicts the other way round.
    with pytest.raises(Conflict):
        await apply(client, ns, "first", {"a": "1"})


async def test_applying_the_same_value_is_shared_ownership(client: KubeClient, ns: str) -> None:
    await apply(client, ns, "first", {"a": "1"})
    shared = await apply(client, ns, "second", {"a": "1"})
    assert shared["data"] == {"a": "1"}
    assert {"first", "second"} <= managers(shared)


async def test_server_side_apply_removes_fields_the_manager_stops_applying(
    client: KubeClient, ns: str
) -> None:
    await apply(client, ns, "first", {"a": "1", "b": "2"})
    narrowed = await apply(client, ns, "first", {"a": "1"})
    assert narrowed["data"] == {"a": "1"}


async def test_apply_and_update_managers_coexist(client: KubeClient, ns: str) -> None:
    await apply(client, ns, "first", {"a": "1"})
    # A plain merge patch by another manager takes the field over without a conflict.
    patched = await client.patch(
        CONFIG_MAP, "c", {"data": {"a": "9"}}, namespace=ns, field_manager="editor"
    )
    assert patched["data"] == {"a": "9"}
    assert "editor" in managers(patched)
    entry = next(e for e in patched["metadata"]["managedFields"] if e["manager"] == "editor")
    assert entry["operation"] == "Update"
