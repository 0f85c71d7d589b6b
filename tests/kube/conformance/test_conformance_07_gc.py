"""7. Garbage collection by ownerReference: background, foreground and orphan propagation.

On a real cluster the garbage collector runs in the controller manager, so every effect on
dependents is awaited with `eventually`.
"""

from __future__ import annotations

from typing import Any

import pytest

from kaito.kube import CONFIG_MAP, KubeClient, NotFound, PropagationPolicy

from .conftest import Backend

pytestmark = pytest.mark.timeout(90)


async def family(client: KubeClient, ns: str, *, block: bool = False) -> dict[str, Any]:
    owner = await client.create(CONFIG_MAP, {"metadata": {"name": "owner", "namespace": ns}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    if block:
        ref["blockOwnerDeletion"] = True
    for name in ("child-a", "child-b"):
        await client.create(
            CONFIG_MAP, {"metadata": {"name": name, "namespace": ns, "ownerReferences": [ref]}}
        )
    return owner


async def missing(client: KubeClient, ns: str, name: str) -> None:
    try:
        await client.get(CONFIG_MAP, name, namespace=ns)
    except NotFound:
        return
    raise AssertionError(f"{name} still exists")


async def test_background_deletes_owner_then_dependents(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    await family(client, ns)
    result = await client.delete(
        CONFIG_MAP, "owner", namespace=ns, propagation_policy=PropagationPolicy.BACKGROUND
    )
    assert result.gone
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "owner", namespace=ns)

    async def dependents_gone() -> None:
        await missing(client, ns, "child-a")
        await missing(client, ns, "child-b")

    await backend.eventually(dependents_gone)


async def test_default_propagation_is_background(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    await family(client, ns)
    assert (await client.delete(CONFIG_MAP, "owner", namespace=ns)).gone
    await backend.eventually(lambda: missing(client, ns, "child-a"))


async def test_foreground_keeps_owner_until_blocking_dependents_are_gone(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    await family(client, ns, block=True)
    # Hold one dependent with a finalizer so that the owner's wait can be observed.
    await client.patch(
        CONFIG_MAP,
        "child-a",
        {"metadata": {"finalizers": ["conformance.kaito.sh/hold"]}},
        namespace=ns,
    )
    result = await client.delete(
        CONFIG_MAP, "owner", namespace=ns, propagation_policy=PropagationPolicy.FOREGROUND
    )
    assert result.terminating
    owner = await client.get(CONFIG_MAP, "owner", namespace=ns)
    assert owner["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in owner["metadata"]["finalizers"]

    async def held_child_terminating() -> None:
        await missing(client, ns, "child-b")
        child = await client.get(CONFIG_MAP, "child-a", namespace=ns)
        assert child["metadata"].get("deletionTimestamp")

    await backend.eventually(held_child_terminating)
    # The owner waits for the held dependent.
    await client.get(CONFIG_MAP, "owner", namespace=ns)

    await client.patch(CONFIG_MAP, "child-a", {"metadata": {"finalizers": None}}, namespace=ns)

    async def all_gone() -> None:
        await missing(client, ns, "child-a")
        await missing(client, ns, "owner")

    await backend.eventually(all_gone)


async def test_orphan_keeps_dependents_and_drops_their_references(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    await family(client, ns)
    await client.delete(
        CONFIG_MAP, "owner", namespace=ns, propagation_policy=PropagationPolicy.ORPHAN
    )

    async def orphaned() -> None:
        await missing(client, ns, "owner")
        for name in ("child-a", "child-b"):
            child = await client.get(CONFIG_MAP, name, namespace=ns)
            assert not child["metadata"].get("ownerReferences"), child["metadata"]
            assert not child["metadata"].get("deletionTimestamp")

    await backend.eventually(orphaned)


async def test_dependent_with_a_remaining_owner_survives(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    first = await client.create(CONFIG_MAP, {"metadata": {"name": "first", "namespace": ns}})
    second = await client.create(CONFIG_MAP, {"metadata": {"name": "second", "namespace": ns}})
    refs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"],
         "uid": o["metadata"]["uid"]}
        for o in (first, second)
    ]  # fmt: skip
    await client.create(
        CONFIG_MAP, {"metadata": {"name": "shared", "namespace": ns, "ownerReferences": refs}}
    )
    await client.delete(CONFIG_MAP, "first", namespace=ns)

    async def reference_dropped() -> None:
        shared = await client.get(CONFIG_MAP, "shared", namespace=ns)
        names = [r["name"] for r in shared["metadata"].get("ownerReferences") or []]
        assert names == ["second"], names

    await backend.eventually(reference_dropped)
