"""Patch types: merge, JSON, strategic merge (built-ins only) and server-side apply."""

from __future__ import annotations

import json

import pytest
from emu_support import CM, DEPLOYMENTS, GADGETS, PODS, Http, configmap, gadget, pod

from kaito.kube.emulator import Emulator
from kaito.kube.emulator._fields import decode, encode
from kaito.kube.emulator._patch import json_patch, merge_patch, strategic_merge_patch
from kaito.kube.emulator._shapes import builtin_shape

MERGE = "application/merge-patch+json"
JSONP = "application/json-patch+json"
SMP = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


# --- merge patch -----------------------------------------------------------------------------


def test_merge_patch_rfc7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "l": [1, 2], "x": 1}
    patched = merge_patch(target, {"a": {"b": None, "d": 3}, "l": [3], "x": None})
    assert patched == {"a": {"c": 2, "d": 3}, "l": [3]}
    assert target == {"a": {"b": 1, "c": 2}, "l": [1, 2], "x": 1}


async def test_merge_patch_over_http(http: Http) -> None:
    await http.post(CM, configmap("a"))
    reply = await http.patch(f"{CM}/a", {"data": {"k": None, "n": "1"}}, MERGE)
    assert reply.status == 200
    assert reply.body["data"] == {"n": "1"}


async def test_patch_of_missing_object_is_not_found(http: Http) -> None:
    reply = await http.patch(f"{CM}/ghost", {"data": {}}, MERGE)
    assert reply.status == 404


async def test_unknown_patch_content_type_is_unsupported(http: Http) -> None:
    await http.post(CM, configmap("a"))
    reply = await http.patch(f"{CM}/a", {"data": {}}, "application/json")
    assert reply.status == 415
    assert reply.body["reason"] == "UnsupportedMediaType"


# --- JSON patch ------------------------------------------------------------------------------


def test_json_patch_operations() -> None:
    doc = {"a": [1, 2], "b": {"c": "x"}}
    ops = [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "add", "path": "/a/0", "value": 0},
        {"op": "replace", "path": "/b/c", "value": "y"},
        {"op": "copy", "from": "/b/c", "path": "/d"},
        {"op": "move", "from": "/d", "path": "/e"},
        {"op": "remove", "path": "/a/1"},
        {"op": "test", "path": "/e", "value": "y"},
        {"op": "add", "path": "/b/x~1y", "value": 1},
    ]
    assert json_patch(doc, ops) == {"a": [0, 2, 3], "b": {"c": "y", "x/y": 1}, "e": "y"}


async def test_json_patch_failed_test_is_unprocessable(http: Http) -> None:
    await http.post(CM, configmap("a"))
    ops = [{"op": "test", "path": "/data/k", "value": "other"}]
    reply = await http.patch(f"{CM}/a", ops, JSONP)
    assert reply.status == 422
    assert reply.body["reason"] == "Invalid"
    assert reply.body["details"]["causes"][0]["message"] == (
        "testing value /data/k failed: test failed"
    )
    ok = await http.patch(f"{CM}/a", [{"op": "test", "path": "/data/k", "value": "v"}], JSONP)
    assert ok.status == 200


async def test_json_patch_on_missing_path_is_unprocessable_and_malformed_is_bad_request(
    http: Http,
) -> None:
    await http.post(CM, configmap("a"))
    missing = await http.patch(f"{CM}/a", [{"op": "remove", "path": "/nope"}], JSONP)
    assert missing.status == 422
    malformed = await http.patch(f"{CM}/a", {"op": "remove"}, JSONP)
    assert malformed.status == 400


# --- strategic merge patch -------------------------------------------------------------------


def test_strategic_merge_merges_containers_by_name_and_env_by_name() -> None:
    shape = builtin_shape("", "pods")
    current = {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "image": "1"},
            ],
            "tolerations": [{"key": "t1"}],
        }
    }
    patch = {
        "spec": {
            "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}, {"name": "c"}],
            "tolerations": [{"key": "t2"}],
        }
    }
    result = strategic_merge_patch(current, patch, shape)
    containers = result["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a", "b", "c"]
    assert containers[0]["image"] == "1"
    assert containers[0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    # Tolerations have no merge key: the list is replaced.
    assert result["spec"]["tolerations"] == [{"key": "t2"}]


def test_strategic_merge_directives() -> None:
    shape = builtin_shape("", "pods")
    current = {
        "metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
        "spec": {
            "containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}],
            "volumes": [{"name": "v", "emptyDir": {}}],
            "securityContext": {"runAsUser": 1, "fsGroup": 2},
        },
    }
    patch = {
        "metadata": {
            "finalizers": ["c"],
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "labels": {"$patch": "replace", "z": "3"},
        },
        "spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "b", "$patch": "delete"}],
            "volumes": [
                {"name": "v", "configMap": {"name": "c"}, "$retainKeys": ["name", "configMap"]}
            ],
            "securityContext": {"$patch": "delete"},
        },
    }
    result = strategic_merge_patch(current, patch, shape)
    assert result["metadata"]["finalizers"] == ["b", "c"]
    assert result["metadata"]["labels"] == {"z": "3"}
    assert result["spec"]["containers"] == [{"name": "a", "image": "1"}]
    assert result["spec"]["volumes"] == [{"name": "v", "configMap": {"name": "c"}}]
    assert "securityContext" not in result["spec"]


def test_strategic_merge_list_replace_directive() -> None:
    shape = builtin_shape("", "pods")
    current = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    patch = {"spec": {"containers": [{"$patch": "replace"}, {"name": "c"}]}}
    assert strategic_merge_patch(current, patch, shape)["spec"]["containers"] == [{"name": "c"}]


async def test_strategic_merge_over_http_for_built_ins(http: Http) -> None:
    await http.post(PODS, pod("p"))
    patch = {"spec": {"containers": [{"name": "side", "image": "x"}]}}
    reply = await http.patch(f"{PODS}/p", patch, SMP)
    assert reply.status == 200
    assert [c["name"] for c in reply.body["spec"]["containers"]] == ["main", "side"]


async def test_strategic_merge_on_custom_resources_is_unsupported(http: Http) -> None:
    await http.post(GADGETS, gadget("g"))
    reply = await http.patch(f"{GADGETS}/g", {"spec": {"size": 4}}, SMP)
    assert reply.status == 415
    assert reply.body["reason"] == "UnsupportedMediaType"
    assert "application/merge-patch+json" in reply.body["message"]
    assert "strategic" not in reply.body["message"]


# --- server-side apply -----------------------------------------------------------------------


def _deployment(
    replicas: int | None = None, image: str = "i", **extra: object
) -> dict[str, object]:
    spec: dict[str, object] = {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {
            "metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        },
        **extra,
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default"},
        "spec": spec,
    }


async def _apply(http: Http, body: object, manager: str, force: bool = False, path: str = ""):  # type: ignore[no-untyped-def]
    params = {"fieldManager": manager}
    if force:
        params["force"] = "true"
    text = body if isinstance(body, str) else json.dumps(body)
    return await http.patch(path or f"{DEPLOYMENTS}/d", text, APPLY, params=params)


def test_fields_v1_round_trip() -> None:
    paths = {
        (("f", "spec"), ("f", "replicas")),
        (("f", "spec"), ("f", "containers"), ("k", '{"name":"c"}')),
        (("f", "spec"), ("f", "containers"), ("k", '{"name":"c"}'), ("f", "image")),
        (("f", "metadata"), ("f", "finalizers"), ("v", '"x"')),
    }
    doc = encode(paths)
    assert doc["f:spec"]["f:containers"]['k:{"name":"c"}'] == {".": {}, "f:image": {}}
    assert decode(doc) == paths


async def test_apply_creates_and_records_managed_fields(http: Http) -> None:
    reply = await _apply(http, _deployment(2), "alice")
    assert reply.status == 201
    entries = reply.body["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"], e["fieldsType"]) for e in entries] == [
        ("alice", "Apply", "FieldsV1")
    ]
    fields = entries[0]["fieldsV1"]
    assert "f:replicas" in fields["f:spec"]
    containers = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    assert 'k:{"name":"c"}' in containers
    again = await _apply(http, _deployment(2), "alice")
    assert again.status == 200
    assert again.body["metadata"]["resourceVersion"] == reply.body["metadata"]["resourceVersion"]


async def test_apply_accepts_yaml(http: Http) -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  namespace: default\n"
        "data:\n  a: '1'\n"
    )
    reply = await _apply(http, text, "yaml-user", path=f"{CM}/y")
    assert reply.status == 201
    assert reply.body["data"] == {"a": "1"}


async def test_apply_requires_field_manager(http: Http) -> None:
    reply = await http.patch(f"{DEPLOYMENTS}/d", json.dumps(_deployment(1)), APPLY)
    assert reply.status == 422
    assert reply.body["details"]["causes"][0]["field"] == "fieldManager"


async def test_apply_conflicts_with_another_manager_unless_forced(http: Http) -> None:
    await _apply(http, _deployment(2), "alice")
    conflict = await _apply(http, _deployment(3), "bob")
    assert conflict.status == 409
    assert conflict.body["reason"] == "Conflict"
    assert conflict.body["message"] == (
        'Apply failed with 1 conflict: conflict with "alice" using apps/v1: .spec.replicas'
    )
    assert conflict.body["details"]["causes"] == [
        {
            "reason": "FieldManagerConflict",
            "message": 'conflict with "alice" using apps/v1',
            "field": ".spec.replicas",
        }
    ]
    # The same value is shared ownership, not a conflict.
    shared = await _apply(http, _deployment(2), "bob")
    assert shared.status == 200
    forced = await _apply(http, _deployment(3), "bob", force=True)
    assert forced.status == 200
    assert forced.body["spec"]["replicas"] == 3
    owners = {e["manager"]: e["fieldsV1"] for e in forced.body["metadata"]["managedFields"]}
    assert "f:replicas" not in owners["alice"]["f:spec"]
    assert "f:replicas" in owners["bob"]["f:spec"]


async def test_apply_conflicts_with_fields_set_by_an_update(http: Http) -> None:
    await _apply(http, _deployment(2), "alice")
    await http.patch(
        f"{DEPLOYMENTS}/d", {"spec": {"replicas": 5}}, MERGE, params={"fieldManager": "scaler"}
    )
    reply = await _apply(http, _deployment(2), "alice")
    assert reply.status == 409
    assert '"scaler"' in reply.body["message"]


async def test_apply_removes_fields_the_manager_stopped_applying(http: Http) -> None:
    await _apply(http, _deployment(2, minReadySeconds=5), "alice")
    reply = await _apply(http, _deployment(2), "alice")
    assert "minReadySeconds" not in reply.body["spec"]
    assert reply.body["metadata"]["generation"] == 2


async def test_apply_keeps_fields_someone_else_still_owns(http: Http) -> None:
    await _apply(http, _deployment(2, minReadySeconds=5), "alice")
    await _apply(http, _deployment(2, minReadySeconds=5), "bob")
    reply = await _apply(http, _deployment(2), "alice")
    assert reply.body["spec"]["minReadySeconds"] == 5


async def test_apply_merges_containers_by_name_across_managers(http: Http) -> None:
    await _apply(http, _deployment(1), "alice")
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s"}]}}},
    }
    reply = await _apply(http, sidecar, "bob")
    names = [c["name"] for c in reply.body["spec"]["template"]["spec"]["containers"]]
    assert names == ["c", "side"]
    # alice re-applies without the sidecar: bob's container stays.
    again = await _apply(http, _deployment(1, image="j"), "alice")
    containers = again.body["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("c", "j"), ("side", "s")]


async def test_apply_to_status_subresource_only_touches_status(http: Http) -> None:
    await _apply(http, _deployment(1), "alice")
    status = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {"replicas": 9},
        "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]},
    }
    reply = await _apply(http, status, "controller", path=f"{DEPLOYMENTS}/d/status")
    assert reply.status == 200
    assert reply.body["spec"]["replicas"] == 1
    assert reply.body["status"]["replicas"] == 1
    entry = next(e for e in reply.body["metadata"]["managedFields"] if e["manager"] == "controller")
    assert entry["subresource"] == "status"
    assert list(entry["fieldsV1"]) == ["f:status"]


async def test_apply_honours_list_map_keys_of_custom_resources(emu: Emulator) -> None:
    store = emu.store
    first = gadget("g", ports=[{"name": "a", "port": 1}])
    store.patch("gadgets", "default", "g", first, APPLY, field_manager="alice")
    second = gadget("g", ports=[{"name": "b", "port": 2}])
    del second["spec"]["size"]
    merged = store.patch("gadgets", "default", "g", second, APPLY, field_manager="bob")
    assert merged["spec"]["ports"] == [{"name": "a", "port": 1}, {"name": "b", "port": 2}]


async def test_update_records_ownership_per_manager(emu: Emulator) -> None:
    store = emu.store
    store.create("configmaps", configmap("a"), field_manager="maker")
    updated = store.patch(
        "configmaps", "default", "a", {"data": {"n": "1"}}, MERGE, field_manager="editor"
    )
    owners = {e["manager"]: e for e in updated["metadata"]["managedFields"]}
    assert owners["maker"]["operation"] == "Update"
    assert owners["editor"]["fieldsV1"] == {"f:data": {"f:n": {}}}


@pytest.mark.parametrize("patch_type", [MERGE, JSONP, SMP])
async def test_dry_run_patch_changes_nothing(emu: Emulator, http: Http, patch_type: str) -> None:
    await http.post(CM, configmap("a"))
    before = emu.store.resource_version
    body: object = [{"op": "add", "path": "/data/z", "value": "1"}]
    if patch_type != JSONP:
        body = {"data": {"z": "1"}}
    reply = await http.patch(f"{CM}/a", body, patch_type, params={"dryRun": "All"})
    assert reply.body["data"]["z"] == "1"
    assert emu.store.resource_version == before
    assert "z" not in emu.store.read("configmaps", "default", "a")["data"]
