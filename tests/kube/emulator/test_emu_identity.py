"""Object identity: names, generateName, uid, creationTimestamp, scopes and namespaces."""

from __future__ import annotations

from emu_support import CM, Http, configmap

from kaito.kube.emulator import Emulator


async def test_create_assigns_uid_timestamp_and_resource_version(http: Http) -> None:
    reply = await http.post(CM, configmap("a"))
    assert reply.status == 201
    meta = reply.body["metadata"]
    assert len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    assert reply.body["apiVersion"] == "v1"
    assert reply.body["kind"] == "ConfigMap"


async def test_generate_name_appends_five_random_characters(http: Http) -> None:
    body = configmap("")
    body["metadata"] = {"generateName": "job-"}
    names = set()
    for _ in range(3):
        reply = await http.post(CM, body)
        assert reply.status == 201
        names.add(reply.body["metadata"]["name"])
    assert len(names) == 3
    for name in names:
        assert name.startswith("job-")
        assert len(name) == len("job-") + 5


async def test_recreated_object_gets_a_new_uid(http: Http) -> None:
    first = (await http.post(CM, configmap("a"))).body
    assert (await http.delete(f"{CM}/a")).status == 200
    second = (await http.post(CM, configmap("a"))).body
    assert first["metadata"]["uid"] != second["metadata"]["uid"]


async def test_cluster_scoped_kind_has_no_namespace(http: Http) -> None:
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "namespace": "x"}}
    reply = await http.post("/api/v1/nodes", node)
    assert reply.status == 201
    assert "namespace" not in reply.body["metadata"]
    assert (await http.get("/api/v1/nodes/n1")).status == 200
    # A cluster-scoped kind has no namespaced URL.
    assert (await http.get("/api/v1/namespaces/default/nodes/n1")).status == 404


async def test_initial_namespaces_exist(emu: Emulator) -> None:
    names = [o["metadata"]["name"] for o in emu.store.objects("namespaces")]
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
    assert all(o["status"]["phase"] == "Active" for o in emu.store.objects("namespaces"))


async def test_create_in_missing_namespace_is_not_found(http: Http) -> None:
    reply = await http.post("/api/v1/namespaces/nope/configmaps", configmap("a", "nope"))
    assert reply.status == 404
    assert reply.body["reason"] == "NotFound"
    assert reply.body["message"] == 'namespaces "nope" not found'
    assert reply.body["details"] == {"name": "nope", "kind": "namespaces"}


async def test_body_namespace_must_match_url(http: Http) -> None:
    reply = await http.post(CM, configmap("a", "kube-system"))
    assert reply.status == 400
    assert reply.body["reason"] == "BadRequest"


async def test_duplicate_create_is_already_exists(http: Http) -> None:
    await http.post(CM, configmap("a"))
    reply = await http.post(CM, configmap("a"))
    assert reply.status == 409
    assert reply.body["reason"] == "AlreadyExists"
    assert reply.body["message"] == 'configmaps "a" already exists'


async def test_invalid_name_is_rejected(http: Http) -> None:
    reply = await http.post(CM, configmap("Not_Valid"))
    assert reply.status == 422
    assert reply.body["details"]["causes"][0]["field"] == "metadata.name"


async def test_missing_name_is_required(http: Http) -> None:
    body = configmap("x")
    del body["metadata"]["name"]
    reply = await http.post(CM, body)
    assert reply.status == 422
    cause = reply.body["details"]["causes"][0]
    assert cause == {
        "reason": "FieldValueRequired",
        "message": "Required value: name or generateName is required",
        "field": "metadata.name",
    }


async def test_system_fields_in_the_body_are_replaced(http: Http) -> None:
    body = configmap("a")
    body["metadata"]["uid"] = "not-mine"
    body["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"
    reply = await http.post(CM, body)
    assert reply.body["metadata"]["uid"] != "not-mine"
    assert reply.body["metadata"]["creationTimestamp"] != "2000-01-01T00:00:00Z"


async def test_update_keeps_uid_and_creation_timestamp(http: Http) -> None:
    created = (await http.post(CM, configmap("a"))).body
    changed = {**created, "data": {"k": "w"}}
    changed["metadata"] = {**created["metadata"], "creationTimestamp": "2000-01-01T00:00:00Z"}
    reply = await http.put(f"{CM}/a", changed)
    assert reply.status == 200
    assert reply.body["metadata"]["uid"] == created["metadata"]["uid"]
    assert reply.body["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
