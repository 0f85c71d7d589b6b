"""Discovery documents, health and version endpoints, and Table output with printer columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from emu_support import GADGET_GROUP, GADGETS, PODS, Http, gadget, pod

from kaito.kube.emulator import Emulator
from kaito.kube.emulator._tables import evaluate_jsonpath, human_duration, parse_jsonpath

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


async def test_core_discovery(http: Http) -> None:
    api = (await http.get("/api")).body
    assert api["kind"] == "APIVersions"
    assert api["versions"] == ["v1"]
    v1 = (await http.get("/api/v1")).body
    assert v1["kind"] == "APIResourceList"
    assert v1["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in v1["resources"]}
    pods = by_name["pods"]
    assert pods["namespaced"] is True
    assert pods["kind"] == "Pod"
    assert pods["singularName"] == "pod"
    assert pods["shortNames"] == ["po"]
    assert pods["categories"] == ["all"]
    assert set(pods["verbs"]) >= {"create", "delete", "get", "list", "patch", "update", "watch"}
    assert by_name["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert by_name["nodes"]["namespaced"] is False


async def test_group_discovery_includes_crds(http: Http) -> None:
    groups = {g["name"]: g for g in (await http.get("/apis")).body["groups"]}
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert GADGET_GROUP in groups
    assert "karpenter.sh" in groups
    group = (await http.get(f"/apis/{GADGET_GROUP}")).body
    assert group["kind"] == "APIGroup"
    resources = (await http.get(f"/apis/{GADGET_GROUP}/v1")).body["resources"]
    names = {r["name"]: r for r in resources}
    assert names["gadgets"]["shortNames"] == ["gd"]
    assert names["gadgets/status"]["kind"] == "Gadget"
    scale = {r["name"]: r for r in (await http.get("/apis/apps/v1")).body["resources"]}
    assert scale["deployments/scale"]["kind"] == "Scale"
    assert scale["deployments/scale"]["group"] == "autoscaling"


async def test_preferred_version_prefers_ga_over_beta() -> None:
    from emu_support import gadget_crd

    async with Emulator(crds=[gadget_crd(versions=("v1beta1", "v1", "v1alpha2"))]) as emu:
        from aiohttp import ClientSession

        async with ClientSession() as session, session.get(f"{emu.url}/apis/{GADGET_GROUP}") as r:
            group = await r.json()
        assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1", "v1alpha2"]
        assert group["preferredVersion"]["version"] == "v1"


async def test_unknown_paths_are_not_found(http: Http) -> None:
    for path in ("/apis/nope.example.com", "/apis/apps/v9", "/api/v1/widgets", "/openapi/v2"):
        reply = await http.get(path)
        assert reply.status == 404, path
        assert reply.body["kind"] == "Status"
        assert reply.body["reason"] == "NotFound"


async def test_health_and_version(http: Http) -> None:
    for path in ("/healthz", "/readyz", "/livez"):
        reply = await http.get(path)
        assert (reply.status, reply.body) == (200, "ok")
    version = (await http.get("/version")).body
    assert version["major"] == "1"
    assert version["gitVersion"].startswith("v1.")


async def test_unsupported_method_is_method_not_allowed(http: Http) -> None:
    reply = await http.call("POST", f"{PODS}/p")
    assert reply.status == 405
    assert reply.body["reason"] == "MethodNotAllowed"


# --- tables ----------------------------------------------------------------------------------


def test_jsonpath_subset() -> None:
    obj = {
        "metadata": {"labels": {"karpenter.sh/nodepool": "gpu"}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "F"}]
        },
        "items": [1, 2, 3],
    }
    assert evaluate_jsonpath(parse_jsonpath(r".metadata.labels.karpenter\.sh/nodepool"), obj) == [
        "gpu"
    ]
    ready = parse_jsonpath('.status.conditions[?(@.type=="Ready")].status')
    assert evaluate_jsonpath(ready, obj) == ["True"]
    assert evaluate_jsonpath(parse_jsonpath("{.items[*]}"), obj) == [1, 2, 3]
    assert evaluate_jsonpath(parse_jsonpath(".items[-1]"), obj) == [3]
    assert evaluate_jsonpath(parse_jsonpath(".items[0:2]"), obj) == [1, 2]
    assert evaluate_jsonpath(parse_jsonpath(".status['conditions'][1].type"), obj) == ["X"]
    assert evaluate_jsonpath(parse_jsonpath(".missing.field"), obj) == []


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (7200, "120m"),
        (4 * 3600 + 120, "4h2m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (40 * 86400, "40d"),
        (-5, "<invalid>"),
    ],
)
def test_human_duration(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


async def test_custom_resource_table_uses_printer_columns(emu: Emulator, http: Http) -> None:
    emu.store.create("gadgets", gadget("g", size=4))
    emu.store.patch(
        "gadgets",
        "default",
        "g",
        {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        subresource="status",
    )
    reply = await http.get(GADGETS, headers={"Accept": TABLE})
    table = reply.body
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size", "Ready", "Age"]
    assert table["columnDefinitions"][0]["format"] == "name"
    row = table["rows"][0]
    assert row["cells"][:3] == ["g", 4, "True"]
    assert row["cells"][3].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "g"
    one = await http.get(
        f"{GADGETS}/g", headers={"Accept": TABLE}, params={"includeObject": "Object"}
    )
    assert one.body["rows"][0]["object"]["spec"]["size"] == 4


async def test_builtin_tables_have_familiar_columns(emu: Emulator, http: Http) -> None:
    clock_start = datetime.now(UTC) - timedelta(minutes=5)
    body = pod("p")
    body["metadata"]["creationTimestamp"] = clock_start.strftime("%Y-%m-%dT%H:%M:%SZ")
    body["status"] = {
        "phase": "Running",
        "containerStatuses": [{"name": "main", "ready": True, "restartCount": 2}],
    }
    emu.store.seed([body])
    table = (await http.get(PODS, headers={"Accept": TABLE})).body
    names = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert names == ["Name", "Ready", "Status", "Restarts", "Age"]
    cells = table["rows"][0]["cells"]
    assert cells[:4] == ["p", "1/1", "Running", 2]
    assert cells[4] in ("5m", "5m1s", "5m2s")
    nodes = (await http.get("/api/v1/nodes", headers={"Accept": TABLE})).body
    assert [c["name"] for c in nodes["columnDefinitions"]] == [
        "Name",
        "Status",
        "Roles",
        "Age",
        "Version",
    ]
