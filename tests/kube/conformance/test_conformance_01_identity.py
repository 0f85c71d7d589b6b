"""1. Identity: names and namespaces, generateName, uid, creationTimestamp, re-creation."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from kaito.kube import (
    CLUSTER_ROLE,
    CONFIG_MAP,
    NAMESPACE,
    SECRET,
    AlreadyExists,
    KubeClient,
    NotFound,
)

from .conftest import Backend

pytestmark = pytest.mark.timeout(30)

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_namespaced_object_gets_identity(client: KubeClient, ns: str) -> None:
    created = await client.create(
        CONFIG_MAP, {"metadata": {"name": "one", "namespace": ns}, "data": {"k": "v"}}
    )
    meta = created["metadata"]
    assert meta["name"] == "one"
    assert meta["namespace"] == ns
    assert meta["uid"]
    assert meta["resourceVersion"]
    assert RFC3339.match(meta["creationTimestamp"])
    assert created["data"] == {"k": "v"}
    fetched = await client.get(CONFIG_MAP, "one", namespace=ns)
    assert fetched["metadata"]["uid"] == meta["uid"]
    assert fetched["metadata"]["creationTimestamp"] == meta["creationTimestamp"]


async def test_same_name_in_two_namespaces_are_two_objects(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    other = f"{ns}-b"
    await client.create(NAMESPACE, {"metadata": {"name": other}})
    backend.delete_later(NAMESPACE, other)
    a = await client.create(CONFIG_MAP, {"metadata": {"name": "same", "namespace": ns}})
    b = await client.create(CONFIG_MAP, {"metadata": {"name": "same", "namespace": other}})
    assert a["metadata"]["uid"] != b["metadata"]["uid"]
    with pytest.raises(AlreadyExists):
        await client.create(CONFIG_MAP, {"metadata": {"name": "same", "namespace": ns}})


async def test_generate_name_picks_distinct_names(client: KubeClient, ns: str) -> None:
    names = set()
    for _ in range(3):
        obj = await client.create(
            CONFIG_MAP, {"metadata": {"generateName": "gen-", "namespace": ns}}
        )
        name = obj["metadata"]["name"]
        assert name.startswith("gen-")
        assert len(name) > len("gen-")
        assert obj["metadata"]["generateName"] == "gen-"
        names.add(name)
    assert len(names) == 3
    for name in names:
        await client.get(CONFIG_MAP, name, namespace=ns)


async def test_cluster_scoped_object(backend: Backend, client: KubeClient) -> None:
    name = backend.unique("conformance")
    created = await client.create(
        CLUSTER_ROLE, {"metadata": {"name": name, "labels": backend.label()}, "rules": []}
    )
    backend.delete_later(CLUSTER_ROLE, name)
    assert "namespace" not in created["metadata"] or not created["metadata"]["namespace"]
    assert created["metadata"]["uid"]
    listed = await client.list(CLUSTER_ROLE, label_selector=backend.label())
    assert [o["metadata"]["name"] for o in listed.items] == [name]


async def test_recreated_object_has_a_new_uid(client: KubeClient, ns: str) -> None:
    first = await client.create(CONFIG_MAP, {"metadata": {"name": "again", "namespace": ns}})
    result = await client.delete(CONFIG_MAP, "again", namespace=ns)
    assert result.gone
    with pytest.raises(NotFound):
        await client.get(CONFIG_MAP, "again", namespace=ns)
    second = await client.create(CONFIG_MAP, {"metadata": {"name": "again", "namespace": ns}})
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    fetched = await client.get(CONFIG_MAP, "again", namespace=ns)
    assert fetched["metadata"]["uid"] == second["metadata"]["uid"]
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_list_across_namespaces(backend: Backend, client: KubeClient, ns: str) -> None:
    await client.create(
        CONFIG_MAP, {"metadata": {"name": "everywhere", "namespace": ns, "labels": backend.label()}}
    )
    everywhere = await client.list(CONFIG_MAP, label_selector=backend.label())
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in everywhere.items] == [
        (ns, "everywhere")
    ]


@pytest.mark.emulator_only("seeding the store")
async def test_seeded_objects_have_the_same_identity(
    emulator: Any, client: KubeClient, ns: str
) -> None:
    (seeded,) = emulator.store.seed(
        [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seed", "namespace": ns}}]
    )
    fetched = await client.get(CONFIG_MAP, "seed", namespace=ns)
    assert fetched["metadata"]["uid"] == seeded["metadata"]["uid"]
    assert fetched["metadata"]["resourceVersion"] == seeded["metadata"]["resourceVersion"]
    assert RFC3339.match(fetched["metadata"]["creationTimestamp"])
    later = await client.create(CONFIG_MAP, {"metadata": {"name": "later", "namespace": ns}})
    assert int(later["metadata"]["resourceVersion"]) > int(seeded["metadata"]["resourceVersion"])


async def test_secret_string_data_is_folded_into_data(client: KubeClient, ns: str) -> None:
    created = await client.create(
        SECRET,
        {
            "metadata": {"name": "creds", "namespace": ns},
            "data": {"kept": base64.b64encode(b"old").decode(), "user": "b2xk"},
            "stringData": {"user": "tuner", "config.json": '{"auths": {}}'},
        },
    )
    assert "stringData" not in created
    assert created["type"] == "Opaque"
    decoded = {k: base64.b64decode(v).decode() for k, v in created["data"].items()}
    assert decoded == {"kept": "old", "user": "tuner", "config.json": '{"auths": {}}'}
    updated = await client.patch(
        SECRET, "creds", {"stringData": {"kept": "new"}}, namespace=ns, field_manager="test"
    )
    assert "stringData" not in updated
    assert base64.b64decode(updated["data"]["kept"]) == b"new"
    assert base64.b64decode(updated["data"]["user"]) == b"tuner"
