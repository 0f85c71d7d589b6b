"""Deletion: finalizers, preconditions, garbage collection, namespace and CRD termination."""

from __future__ import annotations

from typing import Any

from emu_support import CM, GADGETS, PODS, Http, configmap, gadget, pod

from kaito.kube.emulator import Emulator, Store


def owned(name: str, owner: dict[str, Any], *, block: bool = False) -> dict[str, Any]:
    body = configmap(name)
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if block:
        ref["blockOwnerDeletion"] = True
    body["metadata"]["ownerReferences"] = [ref]
    return body


def names(store: Store, kind: str = "configmaps") -> list[str]:
    return [o["metadata"]["name"] for o in store.objects(kind, "default")]


# --- finalizers ------------------------------------------------------------------------------


async def test_finalizers_keep_a_terminating_object(emu: Emulator, http: Http) -> None:
    body = configmap("a")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await http.post(CM, body)
    reply = await http.delete(f"{CM}/a")
    assert reply.status == 200
    meta = reply.body["metadata"]
    assert meta["deletionTimestamp"]
    assert meta["deletionGracePeriodSeconds"] == 0
    assert names(emu.store) == ["a"]
    # Deleting again changes nothing.
    again = await http.delete(f"{CM}/a")
    assert again.body["metadata"]["resourceVersion"] == meta["resourceVersion"]


async def test_terminating_object_rejects_new_finalizers_but_allows_other_changes(
    http: Http,
) -> None:
    body = configmap("a")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await http.post(CM, body)
    await http.delete(f"{CM}/a")
    added = await http.patch(
        f"{CM}/a",
        {"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}},
        "application/merge-patch+json",
    )
    assert added.status == 422
    cause = added.body["details"]["causes"][0]
    assert cause["reason"] == "FieldValueForbidden"
    assert cause["field"] == "metadata.finalizers"
    changed = await http.patch(f"{CM}/a", {"data": {"k": "w"}}, "application/merge-patch+json")
    assert changed.status == 200
    assert changed.body["data"] == {"k": "w"}


async def test_removing_the_last_finalizer_deletes_and_emits_deleted(emu: Emulator) -> None:
    store = emu.store
    body = configmap("a")
    body["metadata"]["finalizers"] = ["x/y"]
    store.create("configmaps", body)
    watcher, _ = store.watch("configmaps", "default", resource_version=store.resource_version)
    store.delete("configmaps", "default", "a")
    store.patch("configmaps", "default", "a", {"metadata": {"finalizers": None}})
    assert store.get("configmaps", "default", "a") is None
    first = await watcher.next_raw(1)
    second = await watcher.next_raw(1)
    assert first is not None
    assert second is not None
    assert [first.type, second.type] == ["MODIFIED", "DELETED"]
    watcher.close()


async def test_deletion_bumps_generation_of_objects_that_track_it(emu: Emulator) -> None:
    body = gadget("g")
    body["metadata"]["finalizers"] = ["x/y"]
    emu.store.create("gadgets", body)
    terminating, gone = emu.store.delete("gadgets", "default", "g")
    assert not gone
    assert terminating["metadata"]["generation"] == 2


async def test_a_write_cannot_start_deletion(http: Http) -> None:
    created = (await http.post(CM, configmap("a"))).body
    body = {
        **created,
        "metadata": {**created["metadata"], "deletionTimestamp": "2020-01-01T00:00:00Z"},
    }
    reply = await http.put(f"{CM}/a", body)
    assert reply.status == 422
    assert reply.body["details"]["causes"][0]["field"] == "metadata.deletionTimestamp"


async def test_delete_preconditions(http: Http) -> None:
    created = (await http.post(CM, configmap("a"))).body
    wrong_uid = {"preconditions": {"uid": "other"}}
    reply = await http.delete(f"{CM}/a", wrong_uid)
    assert reply.status == 409
    assert "Precondition failed: UID in precondition: other" in reply.body["message"]
    wrong_rv = {"preconditions": {"resourceVersion": "1"}}
    reply = await http.delete(f"{CM}/a", wrong_rv)
    assert reply.status == 409
    assert "ResourceVersion in precondition: 1" in reply.body["message"]
    right = {"preconditions": {"uid": created["metadata"]["uid"]}}
    assert (await http.delete(f"{CM}/a", right)).status == 200


async def test_delete_returns_status_or_the_object_as_upstream(http: Http) -> None:
    created = (await http.post(CM, configmap("a"))).body
    reply = await http.delete(f"{CM}/a")
    assert reply.body["kind"] == "Status"
    assert reply.body["status"] == "Success"
    assert reply.body["details"] == {
        "name": "a",
        "kind": "configmaps",
        "uid": created["metadata"]["uid"],
    }
    await http.post(PODS, pod("p"))
    deleted_pod = await http.delete(f"{PODS}/p")
    assert deleted_pod.body["kind"] == "Pod"


async def test_delete_of_missing_object_is_not_found(http: Http) -> None:
    reply = await http.delete(f"{CM}/ghost")
    assert reply.status == 404


async def test_delete_collection_by_label(emu: Emulator, http: Http) -> None:
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        await http.post(CM, configmap(name, tier=tier))
    reply = await http.delete(CM, params={"labelSelector": "tier=web"})
    assert reply.status == 200
    assert sorted(o["metadata"]["name"] for o in reply.body["items"]) == ["a", "b"]
    assert names(emu.store) == ["c"]


# --- garbage collection ----------------------------------------------------------------------


async def test_background_deletes_owner_first_then_dependents(emu: Emulator) -> None:
    store = emu.store
    owner = store.create("configmaps", configmap("owner"))
    child = store.create("configmaps", owned("child", owner))
    store.create("configmaps", owned("grandchild", child))
    watcher, _ = store.watch("configmaps", "default", resource_version=store.resource_version)
    store.delete("configmaps", "default", "owner")
    assert names(store) == []
    order = []
    for _ in range(3):
        event = await watcher.next_raw(1)
        assert event is not None
        order.append((event.type, event.object["metadata"]["name"]))
    assert order == [("DELETED", "owner"), ("DELETED", "child"), ("DELETED", "grandchild")]
    watcher.close()


async def test_dependent_with_another_live_owner_survives(emu: Emulator) -> None:
    store = emu.store
    a = store.create("configmaps", configmap("a"))
    b = store.create("configmaps", configmap("b"))
    body = owned("child", a)
    body["metadata"]["ownerReferences"].append(owned("x", b)["metadata"]["ownerReferences"][0])
    store.create("configmaps", body)
    store.delete("configmaps", "default", "a")
    child = store.read("configmaps", "default", "child")
    assert [r["name"] for r in child["metadata"]["ownerReferences"]] == ["b"]


async def test_foreground_waits_for_blocking_dependents(emu: Emulator) -> None:
    store = emu.store
    owner = store.create("configmaps", configmap("owner"))
    held = owned("held", owner, block=True)
    held["metadata"]["finalizers"] = ["x/hold"]
    store.create("configmaps", held)
    store.create("configmaps", owned("free", owner, block=True))
    terminating, gone = store.delete(
        "configmaps", "default", "owner", propagation_policy="Foreground"
    )
    assert not gone
    assert terminating["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert terminating["metadata"]["deletionTimestamp"]
    # The free dependent is gone; the held one is terminating and blocks its owner.
    assert names(store) == ["held", "owner"]
    assert store.read("configmaps", "default", "held")["metadata"]["deletionTimestamp"]
    store.patch("configmaps", "default", "held", {"metadata": {"finalizers": None}})
    assert names(store) == []


async def test_orphan_strips_owner_references(emu: Emulator, http: Http) -> None:
    store = emu.store
    owner = store.create("configmaps", configmap("owner"))
    store.create("configmaps", owned("child", owner))
    reply = await http.delete(f"{CM}/owner", {"propagationPolicy": "Orphan"})
    assert reply.status == 200
    child = store.read("configmaps", "default", "child")
    assert "ownerReferences" not in child["metadata"]
    assert names(store) == ["child"]


async def test_orphan_dependents_query_parameter(emu: Emulator, http: Http) -> None:
    owner = emu.store.create("configmaps", configmap("owner"))
    emu.store.create("configmaps", owned("child", owner))
    await http.delete(f"{CM}/owner", params={"orphanDependents": "true"})
    assert names(emu.store) == ["child"]


async def test_gc_crosses_kinds_and_follows_uid_not_name(emu: Emulator) -> None:
    store = emu.store
    owner = store.create("gadgets", gadget("g"))
    store.create("pods", {**pod("p"), "metadata": {**owned("p", owner)["metadata"], "name": "p"}})
    store.delete("gadgets", "default", "g")
    store.create("gadgets", gadget("g"))
    assert store.objects("pods", "default") == []


async def test_invalid_propagation_policy_is_rejected(emu: Emulator, http: Http) -> None:
    await http.post(CM, configmap("a"))
    reply = await http.delete(f"{CM}/a", {"propagationPolicy": "Sideways"})
    assert reply.status == 422


# --- namespaces and CRDs ---------------------------------------------------------------------


async def test_namespace_deletion_empties_it_and_blocks_new_content(
    emu: Emulator, http: Http
) -> None:
    await http.post("/api/v1/namespaces", {"metadata": {"name": "team"}})
    held = configmap("held", "team")
    held["metadata"]["finalizers"] = ["x/hold"]
    await http.post("/api/v1/namespaces/team/configmaps", held)
    await http.post("/api/v1/namespaces/team/configmaps", configmap("plain", "team"))
    reply = await http.delete("/api/v1/namespaces/team")
    assert reply.status == 200
    assert reply.body["status"]["phase"] == "Terminating"
    assert [o["metadata"]["name"] for o in emu.store.objects("configmaps", "team")] == ["held"]
    blocked = await http.post("/api/v1/namespaces/team/configmaps", configmap("new", "team"))
    assert blocked.status == 403
    assert blocked.body["reason"] == "Forbidden"
    assert "being terminated" in blocked.body["message"]
    emu.store.patch("configmaps", "team", "held", {"metadata": {"finalizers": None}})
    assert emu.store.get("namespaces", None, "team") is None


async def test_default_namespace_cannot_be_deleted(http: Http) -> None:
    reply = await http.delete("/api/v1/namespaces/default")
    assert reply.status == 403


async def test_deleting_a_crd_deletes_its_objects_and_stops_serving(
    emu: Emulator, http: Http
) -> None:
    await http.post(GADGETS, gadget("g"))
    reply = await http.delete(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.test.kaito.sh"
    )
    assert reply.status == 200
    assert (await http.get(GADGETS)).status == 404
    groups = (await http.get("/apis")).body["groups"]
    assert "test.kaito.sh" not in [g["name"] for g in groups]


async def test_crd_deletion_waits_for_finalizers_of_its_objects(emu: Emulator) -> None:
    store = emu.store
    body = gadget("g")
    body["metadata"]["finalizers"] = ["x/hold"]
    store.create("gadgets", body)
    store.delete("customresourcedefinitions", None, "gadgets.test.kaito.sh")
    crd = store.read("customresourcedefinitions", None, "gadgets.test.kaito.sh")
    assert crd["metadata"]["deletionTimestamp"]
    assert store.read("gadgets", "default", "g")["metadata"]["deletionTimestamp"]
    store.patch("gadgets", "default", "g", {"metadata": {"finalizers": None}})
    assert store.get("customresourcedefinitions", None, "gadgets.test.kaito.sh") is None
