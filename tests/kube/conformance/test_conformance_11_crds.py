"""11. CustomResourceDefinitions: creating one serves its kind; the schema validates (with
field paths), prunes unknown fields, applies defaults, and checks CEL rules."""

from __future__ import annotations

import secrets

import pytest

from kaito.kube import CUSTOM_RESOURCE_DEFINITION, Invalid, KubeClient, NotFound, ResourceKind

from .conftest import WIDGET, Backend, widget_crd

pytestmark = pytest.mark.timeout(90)


def fresh_crd() -> dict:
    # A group of its own, so that a real cluster never sees the same CRD twice.
    return widget_crd(
        group=f"g{secrets.token_hex(4)}.conformance.kaito.sh", plural="gizmos", kind="Gizmo"
    )


async def test_creating_a_crd_serves_its_kind(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    crd = fresh_crd()
    gizmo = ResourceKind(
        group=crd["spec"]["group"], version="v1", kind="Gizmo", plural="gizmos", namespaced=True
    )
    with pytest.raises(NotFound):
        await client.list(gizmo, namespace=ns)
    installed = await backend.install_crd(crd)
    assert installed == ResourceKind(
        group=gizmo.group,
        version="v1",
        kind="Gizmo",
        plural="gizmos",
        namespaced=True,
        singular="gizmo",
        subresources=("status",),
    )
    created = await client.create(
        installed, {"metadata": {"name": "g", "namespace": ns}, "spec": {"size": 3}}
    )
    assert created["apiVersion"] == f"{gizmo.group}/v1"
    assert created["kind"] == "Gizmo"
    assert [o["metadata"]["name"] for o in (await client.list(installed, namespace=ns)).items] == [
        "g"
    ]

    stored = await client.get(CUSTOM_RESOURCE_DEFINITION, crd["metadata"]["name"])
    conditions = {c["type"]: c["status"] for c in stored.get("status", {}).get("conditions", [])}
    assert conditions.get("Established") == "True"
    assert stored["status"]["acceptedNames"]["kind"] == "Gizmo"


async def test_deleting_a_crd_stops_serving_its_kind(
    backend: Backend, client: KubeClient, ns: str
) -> None:
    crd = fresh_crd()
    gizmo = await backend.install_crd(crd)
    await client.create(gizmo, {"metadata": {"name": "g", "namespace": ns}, "spec": {"size": 3}})
    await client.delete(CUSTOM_RESOURCE_DEFINITION, crd["metadata"]["name"])

    async def gone() -> None:
        try:
            await client.list(gizmo, namespace=ns)
        except NotFound:
            return
        raise AssertionError("still served")

    await backend.eventually(gone)


async def test_schema_validation_reports_field_paths(client: KubeClient, ns: str) -> None:
    with pytest.raises(Invalid) as caught:
        await client.create(
            WIDGET,
            {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": "big", "tags": [1]}},
        )
    fields = {c.field for c in caught.value.causes}
    assert "spec.size" in fields
    assert "spec.tags[0]" in fields
    with pytest.raises(Invalid) as too_big:
        await client.create(
            WIDGET,
            {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 101, "maxSize": 200}},
        )
    assert [c.field for c in too_big.value.causes] == ["spec.size"]


async def test_schema_validation_on_update_and_patch(client: KubeClient, ns: str) -> None:
    created = await client.create(
        WIDGET, {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 1}}
    )
    with pytest.raises(Invalid):
        await client.update(WIDGET, {**created, "spec": {**created["spec"], "color": "purple"}})
    with pytest.raises(Invalid):
        await client.patch(WIDGET, "w", {"spec": {"size": -1}}, namespace=ns)
    assert (await client.get(WIDGET, "w", namespace=ns))["spec"]["size"] == 1


async def test_unknown_fields_are_pruned(client: KubeClient, ns: str) -> None:
    created = await client.create(
        WIDGET,
        {
            "metadata": {"name": "w", "namespace": ns},
            "spec": {"size": 1, "surprise": True},
            "extra": {"top": "level"},
        },
    )
    assert "surprise" not in created["spec"]
    assert "extra" not in created
    patched = await client.patch(WIDGET, "w", {"spec": {"another": 1}}, namespace=ns)
    assert "another" not in patched["spec"]


async def test_defaults_are_applied(client: KubeClient, ns: str) -> None:
    created = await client.create(
        WIDGET, {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 1}}
    )
    assert created["spec"]["color"] == "blue"
    assert created["spec"]["maxSize"] == 50
    explicit = await client.create(
        WIDGET,
        {"metadata": {"name": "x", "namespace": ns}, "spec": {"size": 1, "color": "red"}},
    )
    assert explicit["spec"]["color"] == "red"


async def test_cel_rule(client: KubeClient, ns: str) -> None:
    with pytest.raises(Invalid) as caught:
        await client.create(
            WIDGET,
            {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 20, "maxSize": 10}},
        )
    assert any("size > maxSize" in c.message for c in caught.value.causes)
    assert any(c.field == "spec" for c in caught.value.causes)
    ok = await client.create(
        WIDGET, {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 20}}
    )
    assert ok["spec"]["maxSize"] == 50


async def test_invalid_crd_is_rejected(backend: Backend, client: KubeClient) -> None:
    crd = fresh_crd()
    crd["spec"]["names"]["plural"] = "Not Plural"
    with pytest.raises(Invalid):
        await client.create(CUSTOM_RESOURCE_DEFINITION, crd)
