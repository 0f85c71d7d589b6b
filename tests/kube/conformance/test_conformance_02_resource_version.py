"""2. resourceVersion: it increases with every write and guards optimistic concurrency."""

from __future__ import annotations

import pytest

from kaito.kube import (
    CONFIG_MAP,
    BadRequest,
    Conflict,
    KubeClient,
    NotFound,
    PatchType,
    Preconditions,
)

pytestmark = pytest.mark.timeout(30)


def rv(obj: dict) -> int:
    # resourceVersion is opaque to clients in general; both etcd and the emulator use
    # increasing integers, which is what "increasing" below relies on.
    return int(obj["metadata"]["resourceVersion"])


async def test_every_write_increases_the_resource_version(client: KubeClient, ns: str) -> None:
    created = await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    updated = await client.update(CONFIG_MAP, {**created, "data": {"a": "1"}})
    patched = await client.patch(CONFIG_MAP, "c", {"data": {"b": "2"}}, namespace=ns)
    assert rv(created) < rv(updated) < rv(patched)
    assert rv(await client.get(CONFIG_MAP, "c", namespace=ns)) == rv(patched)
    # A list's resourceVersion is at least that of every item in it.
    page = await client.list(CONFIG_MAP, namespace=ns)
    assert int(page.resource_version) >= rv(patched)


async def test_other_objects_writes_increase_it_too(client: KubeClient, ns: str) -> None:
    a = await client.create(CONFIG_MAP, {"metadata": {"name": "a", "namespace": ns}})
    b = await client.create(CONFIG_MAP, {"metadata": {"name": "b", "namespace": ns}})
    assert rv(b) > rv(a)


async def test_stale_update_conflicts(client: KubeClient, ns: str) -> None:
    created = await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    await client.update(CONFIG_MAP, {**created, "data": {"winner": "first"}})
    with pytest.raises(Conflict) as caught:
        await client.update(CONFIG_MAP, {**created, "data": {"winner": "second"}})
    assert caught.value.code == 409
    assert caught.value.reason == "Conflict"
    assert (await client.get(CONFIG_MAP, "c", namespace=ns))["data"] == {"winner": "first"}


async def test_patch_with_a_stale_resource_version_conflicts(client: KubeClient, ns: str) -> None:
    created = await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    await client.patch(CONFIG_MAP, "c", {"data": {"x": "1"}}, namespace=ns)
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    with pytest.raises(Conflict):
        await client.patch(CONFIG_MAP, "c", {**stale, "data": {"x": "2"}}, namespace=ns)
    with pytest.raises(Conflict):
        await client.patch(
            CONFIG_MAP,
            "c",
            [{"op": "replace", "path": "/metadata/resourceVersion", "value": "1"}],
            namespace=ns,
            patch_type=PatchType.JSON,
        )


async def test_update_without_resource_version_is_unconditional(
    client: KubeClient, ns: str
) -> None:
    await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    await client.patch(CONFIG_MAP, "c", {"data": {"x": "1"}}, namespace=ns)
    blind = await client.update(
        CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}, "data": {"x": "blind"}}
    )
    assert blind["data"] == {"x": "blind"}


async def test_create_with_a_resource_version_is_a_bad_request(client: KubeClient, ns: str) -> None:
    # Kubernetes 1.29 and later answer 400 (older servers answered 500).
    with pytest.raises(BadRequest):
        await client.create(
            CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns, "resourceVersion": "5"}}
        )
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "c", namespace=ns)


async def test_delete_preconditions(client: KubeClient, ns: str) -> None:
    created = await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    updated = await client.patch(CONFIG_MAP, "c", {"data": {"x": "1"}}, namespace=ns)
    old_rv = created["metadata"]["resourceVersion"]
    with pytest.raises(Conflict):
        await client.delete(
            CONFIG_MAP, "c", namespace=ns, preconditions=Preconditions(resource_version=old_rv)
        )
    with pytest.raises(Conflict):
        await client.delete(
            CONFIG_MAP, "c", namespace=ns, preconditions=Preconditions(uid="not-the-uid")
        )
    await client.get(CONFIG_MAP, "c", namespace=ns)
    result = await client.delete(
        CONFIG_MAP,
        "c",
        namespace=ns,
        preconditions=Preconditions(
            uid=updated["metadata"]["uid"],
            resource_version=updated["metadata"]["resourceVersion"],
        ),
    )
    assert result.gone
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "c", namespace=ns)
