"""resourceVersion, optimistic concurrency, metadata.generation and the status subresource."""

from __future__ import annotations

from emu_support import CM, DEPLOYMENTS, GADGETS, PODS, Http, configmap, gadget, pod

from kaito.kube.emulator import Emulator


def deployment(name: str, replicas: int = 1) -> dict[str, object]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }


# --- resourceVersion -------------------------------------------------------------------------


async def test_one_counter_for_the_whole_store_bumped_on_every_write(
    emu: Emulator, http: Http
) -> None:
    start = emu.store.resource_version
    a = (await http.post(CM, configmap("a"))).body
    b = (await http.post(PODS, pod("p"))).body
    c = (await http.patch(f"{CM}/a", {"data": {"x": "1"}}, "application/merge-patch+json")).body
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (a, b, c)]
    assert rvs == [start + 1, start + 2, start + 3]
    listed = (await http.get(CM)).body
    assert listed["metadata"]["resourceVersion"] == str(start + 3)


async def test_update_with_stale_resource_version_conflicts(http: Http) -> None:
    created = (await http.post(CM, configmap("a"))).body
    first = {**created, "data": {"k": "1"}}
    assert (await http.put(f"{CM}/a", first)).status == 200
    stale = {**created, "data": {"k": "2"}}
    reply = await http.put(f"{CM}/a", stale)
    assert reply.status == 409
    assert reply.body["reason"] == "Conflict"
    assert reply.body["message"] == (
        'Operation cannot be fulfilled on configmaps "a": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    assert reply.body["details"] == {"name": "a", "kind": "configmaps"}


async def test_update_without_resource_version_is_unconditional(http: Http) -> None:
    await http.post(CM, configmap("a"))
    await http.patch(f"{CM}/a", {"data": {"k": "1"}}, "application/merge-patch+json")
    body = configmap("a")
    body["data"] = {"k": "2"}
    reply = await http.put(f"{CM}/a", body)
    assert reply.status == 200
    assert reply.body["data"] == {"k": "2"}


async def test_create_with_resource_version_is_bad_request(http: Http) -> None:
    body = configmap("a")
    body["metadata"]["resourceVersion"] = "5"
    reply = await http.post(CM, body)
    assert reply.status == 400
    assert reply.body["reason"] == "BadRequest"
    assert "resourceVersion should not be set" in reply.body["message"]


async def test_no_op_update_does_not_bump_resource_version(emu: Emulator, http: Http) -> None:
    created = (await http.post(CM, configmap("a"))).body
    before = emu.store.resource_version
    same = await http.put(f"{CM}/a", created)
    assert same.body["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert emu.store.resource_version == before


async def test_patch_with_stale_resource_version_conflicts(http: Http) -> None:
    created = (await http.post(CM, configmap("a"))).body
    await http.patch(f"{CM}/a", {"data": {"k": "1"}}, "application/merge-patch+json")
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    reply = await http.patch(f"{CM}/a", stale, "application/merge-patch+json")
    assert reply.status == 409


async def test_update_with_a_foreign_uid_is_a_precondition_conflict(http: Http) -> None:
    created = (await http.post(CM, configmap("a"))).body
    body = {**created, "metadata": {**created["metadata"], "uid": "other"}}
    reply = await http.put(f"{CM}/a", body)
    assert reply.status == 409
    assert "Precondition failed: UID in precondition: other" in reply.body["message"]


async def test_update_of_missing_object_is_not_found(http: Http) -> None:
    reply = await http.put(f"{CM}/ghost", configmap("ghost"))
    assert reply.status == 404
    assert reply.body["message"] == 'configmaps "ghost" not found'


async def test_name_in_body_must_match_url(http: Http) -> None:
    await http.post(CM, configmap("a"))
    reply = await http.put(f"{CM}/a", configmap("b"))
    assert reply.status == 400


# --- generation ------------------------------------------------------------------------------


async def test_generation_starts_at_one_and_follows_spec_changes(http: Http) -> None:
    created = (await http.post(DEPLOYMENTS, deployment("d"))).body
    assert created["metadata"]["generation"] == 1
    path = f"{DEPLOYMENTS}/d"
    labeled = await http.patch(
        path, {"metadata": {"labels": {"x": "y"}}}, "application/merge-patch+json"
    )
    assert labeled.body["metadata"]["generation"] == 1
    scaled = await http.patch(path, {"spec": {"replicas": 3}}, "application/merge-patch+json")
    assert scaled.body["metadata"]["generation"] == 2
    status = await http.patch(
        f"{path}/status", {"status": {"replicas": 3}}, "application/merge-patch+json"
    )
    assert status.body["metadata"]["generation"] == 2


async def test_custom_resource_without_status_subresource_bumps_on_any_non_metadata_change() -> (
    None
):
    from emu_support import gadget_crd

    async with Emulator(crds=[gadget_crd(status=False)]) as emu:
        store = emu.store
        store.create("gadgets", gadget("g"))
        patched = store.patch("gadgets", "default", "g", {"status": {"phase": "Up"}})
        assert patched["metadata"]["generation"] == 2
        assert patched["status"] == {"phase": "Up"}
        labeled = store.patch("gadgets", "default", "g", {"metadata": {"labels": {"a": "b"}}})
        assert labeled["metadata"]["generation"] == 2


async def test_generation_cannot_be_written(http: Http) -> None:
    created = (await http.post(DEPLOYMENTS, deployment("d"))).body
    body = {**created, "metadata": {**created["metadata"], "generation": 42}}
    reply = await http.put(f"{DEPLOYMENTS}/d", body)
    assert reply.body["metadata"]["generation"] == 1


# --- status subresource ----------------------------------------------------------------------


async def test_main_writes_ignore_status(http: Http) -> None:
    created = (await http.post(GADGETS, {**gadget("g"), "status": {"phase": "Up"}})).body
    assert "status" not in created
    body = {**created, "status": {"phase": "Up"}, "spec": {"size": 4}}
    updated = (await http.put(f"{GADGETS}/g", body)).body
    assert updated["spec"]["size"] == 4
    assert "status" not in updated


async def test_status_writes_change_only_status(http: Http) -> None:
    created = (await http.post(GADGETS, gadget("g"))).body
    body = {
        **created,
        "spec": {"size": 9},
        "metadata": {**created["metadata"], "labels": {"a": "b"}},
        "status": {"phase": "Up"},
    }
    reply = await http.put(f"{GADGETS}/g/status", body)
    assert reply.status == 200
    assert reply.body["status"] == {"phase": "Up"}
    assert reply.body["spec"]["size"] == 3
    assert "labels" not in reply.body["metadata"]
    assert reply.body["metadata"]["generation"] == 1


async def test_status_of_kind_without_status_subresource_is_not_found(http: Http) -> None:
    await http.post(CM, configmap("a"))
    reply = await http.put(f"{CM}/a/status", configmap("a"))
    assert reply.status == 404


async def test_pod_status_starts_pending_and_is_written_through_status(http: Http) -> None:
    created = (await http.post(PODS, {**pod("p"), "status": {"phase": "Running"}})).body
    assert created["status"] == {"phase": "Pending"}
    running = await http.patch(
        f"{PODS}/p/status", {"status": {"phase": "Running"}}, "application/merge-patch+json"
    )
    assert running.body["status"]["phase"] == "Running"
