"""4. The status subresource: status is written only through it, and it writes only status."""

from __future__ import annotations

import pytest

from kaito.kube import CONFIG_MAP, Conflict, KubeClient, NotFound, PatchType

from .conftest import WIDGET

pytestmark = pytest.mark.timeout(30)


async def test_status_on_create_and_update_is_ignored(client: KubeClient, ns: str) -> None:
    created = await client.create(
        WIDGET,
        {
            "metadata": {"name": "w", "namespace": ns},
            "spec": {"size": 1},
            "status": {"phase": "Forged"},
        },
    )
    assert created.get("status", {}).get("phase") is None
    updated = await client.update(
        WIDGET, {**created, "spec": {**created["spec"], "size": 2}, "status": {"phase": "Forged"}}
    )
    assert updated["spec"]["size"] == 2
    assert updated.get("status", {}).get("phase") is None
    patched = await client.patch(WIDGET, "w", {"status": {"phase": "Forged"}}, namespace=ns)
    assert patched.get("status", {}).get("phase") is None


async def test_status_writes_change_only_status(client: KubeClient, ns: str) -> None:
    created = await client.create(
        WIDGET, {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 1}}
    )
    written = await client.update_status(
        WIDGET,
        {
            **created,
            "metadata": {**created["metadata"], "labels": {"sneaky": "yes"}},
            "spec": {**created["spec"], "size": 99},
            "status": {"phase": "Ready", "observedGeneration": 1},
        },
    )
    assert written["status"] == {"phase": "Ready", "observedGeneration": 1}
    assert written["spec"]["size"] == 1
    assert "sneaky" not in (written["metadata"].get("labels") or {})
    assert int(written["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert written["metadata"]["generation"] == created["metadata"]["generation"]

    patched = await client.patch_status(
        WIDGET, "w", {"status": {"phase": "Degraded"}, "spec": {"size": 42}}, namespace=ns
    )
    assert patched["status"] == {"phase": "Degraded", "observedGeneration": 1}
    assert patched["spec"]["size"] == 1
    fetched = await client.get(WIDGET, "w", namespace=ns)
    assert fetched["status"]["phase"] == "Degraded"


async def test_status_update_uses_optimistic_concurrency(client: KubeClient, ns: str) -> None:
    created = await client.create(
        WIDGET, {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 1}}
    )
    await client.patch(WIDGET, "w", {"spec": {"size": 2}}, namespace=ns)
    with pytest.raises(Conflict):
        await client.update_status(WIDGET, {**created, "status": {"phase": "Stale"}})


async def test_server_side_apply_of_status(client: KubeClient, ns: str) -> None:
    await client.create(WIDGET, {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 1}})
    applied = await client.patch_status(
        WIDGET,
        "w",
        {"metadata": {"name": "w", "namespace": ns}, "status": {"phase": "Applied"}},
        namespace=ns,
        patch_type=PatchType.APPLY,
        field_manager="status-owner",
    )
    assert applied["status"]["phase"] == "Applied"


async def test_kind_without_status_subresource(client: KubeClient, ns: str) -> None:
    created = await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    with pytest.raises(NotFound):
        await client.update_status(CONFIG_MAP, created)
