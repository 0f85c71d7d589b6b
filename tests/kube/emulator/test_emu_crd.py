"""CustomResourceDefinitions: serving, status, versions, schema, pruning, defaults, CEL."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from emu_support import GADGET_GROUP, GADGETS, Http, gadget, gadget_crd

from kaito.kube.emulator import ApiError, Emulator, nodeclaim_crd

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def causes(reply_body: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["field"]: c for c in reply_body["details"]["causes"]}


async def test_created_crd_is_established_and_served(http: Http) -> None:
    crd = gadget_crd()
    crd["metadata"]["name"] = "things.test.kaito.sh"
    crd["spec"]["names"] = {"plural": "things", "kind": "Thing"}
    reply = await http.post(CRDS, crd)
    assert reply.status == 201
    conditions = {c["type"]: c for c in reply.body["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    assert reply.body["status"]["acceptedNames"]["singular"] == "thing"
    assert reply.body["status"]["acceptedNames"]["listKind"] == "ThingList"
    assert reply.body["status"]["storedVersions"] == ["v1"]
    assert reply.body["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]
    thing = {
        "apiVersion": f"{GADGET_GROUP}/v1",
        "kind": "Thing",
        "metadata": {"name": "t"},
        "spec": {"size": 1},
    }
    created = await http.post(f"/apis/{GADGET_GROUP}/v1/namespaces/default/things", thing)
    assert created.status == 201


async def test_invalid_crd_is_rejected(http: Http) -> None:
    crd = gadget_crd()
    crd["metadata"]["name"] = "wrong.name"
    crd["spec"]["versions"][0]["storage"] = False
    del crd["spec"]["versions"][0]["schema"]
    reply = await http.post(CRDS, crd)
    assert reply.status == 422
    fields = causes(reply.body)
    assert "metadata.name" in fields
    assert "spec.versions" in fields
    assert "spec.versions[0].schema.openAPIV3Schema" in fields


async def test_crd_with_an_uncompilable_rule_is_rejected(http: Http) -> None:
    crd = gadget_crd()
    crd["metadata"]["name"] = "things.test.kaito.sh"
    crd["spec"]["names"] = {"plural": "things", "kind": "Thing"}
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["x-kubernetes-validations"] = [{"rule": "self.size >"}]
    reply = await http.post(CRDS, crd)
    assert reply.status == 422


async def test_all_served_versions_share_one_storage() -> None:
    async with Emulator(crds=[gadget_crd(versions=("v1", "v2"))]) as emu:
        store = emu.store
        v2 = store.kinds.by_plural(GADGET_GROUP, "v2", "gadgets")
        assert v2 is not None
        body = gadget("g")
        body["apiVersion"] = f"{GADGET_GROUP}/v2"
        created = store.create(v2, body)
        assert created["apiVersion"] == f"{GADGET_GROUP}/v2"
        assert store.get("gadgets", "default", "g")["apiVersion"] == f"{GADGET_GROUP}/v1"  # type: ignore[index]
        with pytest.raises(ApiError) as caught:
            store.create(v2, gadget("h"))
        assert caught.value.code == 400


async def test_schema_violations_are_invalid_with_field_causes(http: Http) -> None:
    body = gadget("g", size=500, mode="warp", name="Ab1", tags=["a", "b", "c"], when="yesterday")
    body["spec"]["ports"] = [{"port": 1}]
    reply = await http.post(GADGETS, body)
    assert reply.status == 422
    assert reply.body["reason"] == "Invalid"
    assert reply.body["message"].startswith('Gadget.test.kaito.sh "g" is invalid: [')
    assert reply.body["details"]["kind"] == "Gadget"
    assert reply.body["details"]["group"] == GADGET_GROUP
    fields = causes(reply.body)
    assert fields["spec.size"]["reason"] == "FieldValueInvalid"
    assert "less than or equal to 100" in fields["spec.size"]["message"]
    assert fields["spec.mode"]["reason"] == "FieldValueNotSupported"
    assert fields["spec.mode"]["message"] == (
        'Unsupported value: "warp": supported values: "fast", "slow"'
    )
    assert "should match '^[a-z]+$'" in fields["spec.name"]["message"]
    assert fields["spec.tags"]["reason"] == "FieldValueTooMany"
    assert fields["spec.ports[0].name"]["reason"] == "FieldValueRequired"
    assert "date-time" in fields["spec.when"]["message"]


async def test_type_errors_and_required_fields(http: Http) -> None:
    body = gadget("g")
    body["spec"] = {"limit": "ten"}
    reply = await http.post(GADGETS, body)
    fields = causes(reply.body)
    assert fields["spec.size"] == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.size",
    }
    assert "must be of type integer" in fields["spec.limit"]["message"]


async def test_length_limits(http: Http) -> None:
    reply = await http.post(GADGETS, gadget("g", name="a"))
    assert "at least 2 chars" in causes(reply.body)["spec.name"]["message"]
    reply = await http.post(GADGETS, gadget("h", name="abcdefghij"))
    assert causes(reply.body)["spec.name"]["reason"] == "FieldValueTooLong"


async def test_unknown_fields_are_pruned_except_where_preserved(http: Http) -> None:
    body = gadget("g", bogus=1, extra={"anything": {"goes": True}})
    body["topLevel"] = "dropped"
    reply = await http.post(GADGETS, body)
    assert reply.status == 201
    assert "bogus" not in reply.body["spec"]
    assert "topLevel" not in reply.body
    assert reply.body["spec"]["extra"] == {"anything": {"goes": True}}


async def test_defaults_are_applied(http: Http) -> None:
    reply = await http.post(GADGETS, gadget("g"))
    assert reply.body["spec"]["limit"] == 10


async def test_cel_rule_with_message(http: Http) -> None:
    reply = await http.post(GADGETS, gadget("g", size=20))
    assert reply.status == 422
    cause = causes(reply.body)["spec"]
    assert cause == {
        "reason": "FieldValueInvalid",
        "message": 'Invalid value: "object": size must not exceed limit',
        "field": "spec",
    }


async def test_cel_transition_rule_uses_old_self_on_update_only(emu: Emulator) -> None:
    store = emu.store
    store.create("gadgets", gadget("g", mode="fast"))
    store.patch("gadgets", "default", "g", {"spec": {"size": 4}})
    with pytest.raises(ApiError) as caught:
        store.patch("gadgets", "default", "g", {"spec": {"mode": "slow"}})
    assert caught.value.code == 422
    assert "mode is immutable" in caught.value.message


async def test_cel_message_expression_and_reason() -> None:
    crd = gadget_crd()
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["x-kubernetes-validations"] = [
        {
            "rule": "self.size % 2 == 0",
            "messageExpression": "'size ' + string(self.size) + ' is odd'",
            "reason": "FieldValueForbidden",
            "fieldPath": ".size",
        }
    ]
    async with Emulator(crds=[crd]) as emu:
        with pytest.raises(ApiError) as caught:
            emu.store.create("gadgets", gadget("g", size=3))
        assert caught.value.details is not None
        assert caught.value.details["causes"] == [
            {
                "reason": "FieldValueForbidden",
                "message": "Forbidden: size 3 is odd",
                "field": "spec.size",
            }
        ]


async def test_status_updates_are_validated_too(emu: Emulator) -> None:
    emu.store.create("gadgets", gadget("g"))
    with pytest.raises(ApiError) as caught:
        emu.store.patch("gadgets", "default", "g", {"status": {"phase": 5}}, subresource="status")
    assert caught.value.code == 422


async def test_nodeclaim_crd_ships_the_upstream_schema_facts(emu: Emulator) -> None:
    crd = nodeclaim_crd()
    version = crd["spec"]["versions"][0]
    assert crd["metadata"]["name"] == "nodeclaims.karpenter.sh"
    assert crd["spec"]["scope"] == "Cluster"
    assert version["name"] == "v1"
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Type", "Capacity", "Zone", "Node", "Ready", "Age"]
    claim = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodeClaim",
        "metadata": {"name": "nc"},
        "spec": {
            "nodeClassRef": {"group": "karpenter.azure.com", "kind": "AKSNodeClass", "name": "d"},
            "requirements": [
                {
                    "key": "node.kubernetes.io/instance-type",
                    "operator": "In",
                    "values": ["Standard_NC24ads_A100_v4"],
                }
            ],
            "resources": {"requests": {"nvidia.com/gpu": 1, "memory": "8Gi"}},
            "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
        },
    }
    created = emu.store.create("nodeclaims", claim)
    assert created["spec"]["expireAfter"] == "720h"
    bad = copy.deepcopy(claim)
    bad["metadata"]["name"] = "bad"
    bad["spec"]["requirements"] = [{"key": "k", "operator": "In", "values": []}]
    bad["spec"]["taints"] = [{"key": "sku", "effect": "Sometimes"}]
    with pytest.raises(ApiError) as caught:
        emu.store.create("nodeclaims", bad)
    fields = {c["field"] for c in caught.value.details["causes"]}  # type: ignore[index]
    assert fields == {"spec.requirements", "spec.taints[0].effect"}
    with pytest.raises(ApiError) as immutable:
        emu.store.patch("nodeclaims", None, "nc", {"spec": {"expireAfter": "1h"}})
    assert "spec is immutable" in immutable.value.message
    status = {
        "status": {
            "nodeName": "aks-gpu-1",
            "providerID": "azure:///x",
            "capacity": {"nvidia.com/gpu": "1"},
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
            ],
        }
    }
    updated = emu.store.patch("nodeclaims", None, "nc", status, subresource="status")
    assert updated["status"]["nodeName"] == "aks-gpu-1"
