"""6. Finalizers and deletionTimestamp: deletion waits for finalizers to be removed."""

from __future__ import annotations

import pytest

from kaito.kube import CONFIG_MAP, Invalid, KubeClient, NotFound, PatchType

from .conftest import WIDGET

pytestmark = pytest.mark.timeout(30)

HOLD = "conformance.kaito.sh/hold"


async def test_delete_without_finalizers_is_immediate(client: KubeClient, ns: str) -> None:
    await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    result = await client.delete(CONFIG_MAP, "c", namespace=ns)
    assert result.gone
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "c", namespace=ns)
    with pytest.raises(NotFound):
        await client.delete(CONFIG_MAP, "c", namespace=ns)


async def test_finalizer_holds_the_object_until_removed(client: KubeClient, ns: str) -> None:
    created = await client.create(
        CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns, "finalizers": [HOLD]}}
    )
    result = await client.delete(CONFIG_MAP, "c", namespace=ns)
    assert result.terminating
    assert result.object is not None
    assert result.object["metadata"]["deletionTimestamp"]

    held = await client.get(CONFIG_MAP, "c", namespace=ns)
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == [HOLD]
    assert held["metadata"]["uid"] == created["metadata"]["uid"]

    # Deleting again changes nothing: still terminating, same deletionTimestamp.
    again = await client.delete(CONFIG_MAP, "c", namespace=ns)
    assert again.terminating
    assert again.object is not None
    assert again.object["metadata"]["deletionTimestamp"] == held["metadata"]["deletionTimestamp"]

    # Other fields may still change while terminating.
    await client.patch(CONFIG_MAP, "c", {"data": {"during": "termination"}}, namespace=ns)

    await client.patch(
        CONFIG_MAP,
        "c",
        [{"op": "remove", "path": "/metadata/finalizers"}],
        namespace=ns,
        patch_type=PatchType.JSON,
    )
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "c", namespace=ns)


async def test_no_new_finalizers_while_terminating(client: KubeClient, ns: str) -> None:
    await client.create(
        WIDGET,
        {"metadata": {"name": "w", "namespace": ns, "finalizers": [HOLD]}, "spec": {"size": 1}},
    )
    await client.delete(WIDGET, "w", namespace=ns)
    with pytest.raises(Invalid):
        await client.patch(
            WIDGET,
            "w",
            {"metadata": {"finalizers": [HOLD, "conformance.kaito.sh/late"]}},
            namespace=ns,
        )
    await client.patch(WIDGET, "w", {"metadata": {"finalizers": None}}, namespace=ns)
    with pytest.raises(NotFound):
        await client.get(WIDGET, "w", namespace=ns)


async def test_deletion_timestamp_cannot_be_set_by_a_write(client: KubeClient, ns: str) -> None:
    # Only a delete starts deletion; writing the timestamp is an immutable-field error.
    created = await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    meta = {**created["metadata"], "deletionTimestamp": "2020-01-01T00:00:00Z"}
    with pytest.raises(Invalid) as caught:
        await client.update(CONFIG_MAP, {**created, "metadata": meta})
    assert "metadata.deletionTimestamp" in [c.field for c in caught.value.causes]
    assert not (await client.get(CONFIG_MAP, "c", namespace=ns))["metadata"].get(
        "deletionTimestamp"
    )
