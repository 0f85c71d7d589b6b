"""10. Status error bodies: each failure maps to its exception class, with the details the
server sent (which object, which fields)."""

from __future__ import annotations

import pytest

from kaito.kube import (
    CONFIG_MAP,
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Invalid,
    KubeClient,
    NotFound,
    ResourceKind,
)

from .conftest import WIDGET

pytestmark = pytest.mark.timeout(30)


def assert_status_body(err: ApiError, code: int, reason: str) -> None:
    assert err.code == code
    assert err.reason == reason
    assert err.status["kind"] == "Status"
    assert err.status["status"] == "Failure"
    assert err.status["code"] == code
    assert err.message


async def test_not_found(client: KubeClient, ns: str) -> None:
    with pytest.raises(NotFound) as caught:
        await client.get(CONFIG_MAP, "missing", namespace=ns)
    assert_status_body(caught.value, 404, "NotFound")
    assert caught.value.details["name"] == "missing"
    assert caught.value.details["kind"] == "configmaps"
    assert "missing" in caught.value.message


async def test_not_found_for_a_custom_resource_names_its_group(client: KubeClient, ns: str) -> None:
    with pytest.raises(NotFound) as caught:
        await client.get(WIDGET, "missing", namespace=ns)
    assert caught.value.details["group"] == WIDGET.group
    assert caught.value.details["kind"] == WIDGET.plural


async def test_already_exists(client: KubeClient, ns: str) -> None:
    await client.create(CONFIG_MAP, {"metadata": {"name": "dup", "namespace": ns}})
    with pytest.raises(AlreadyExists) as caught:
        await client.create(CONFIG_MAP, {"metadata": {"name": "dup", "namespace": ns}})
    assert_status_body(caught.value, 409, "AlreadyExists")
    assert caught.value.details["name"] == "dup"


async def test_conflict(client: KubeClient, ns: str) -> None:
    created = await client.create(CONFIG_MAP, {"metadata": {"name": "c", "namespace": ns}})
    await client.update(CONFIG_MAP, {**created, "data": {"v": "1"}})
    with pytest.raises(Conflict) as caught:
        await client.update(CONFIG_MAP, {**created, "data": {"v": "2"}})
    assert_status_body(caught.value, 409, "Conflict")
    assert caught.value.details["name"] == "c"


async def test_invalid_name(client: KubeClient, ns: str) -> None:
    with pytest.raises(Invalid) as caught:
        await client.create(CONFIG_MAP, {"metadata": {"name": "Not_A_Name", "namespace": ns}})
    assert_status_body(caught.value, 422, "Invalid")
    assert caught.value.details["kind"] == "ConfigMap"
    assert "metadata.name" in [c.field for c in caught.value.causes]
    assert all(c.reason for c in caught.value.causes)


async def test_invalid_custom_resource_lists_every_field(client: KubeClient, ns: str) -> None:
    with pytest.raises(Invalid) as caught:
        await client.create(
            WIDGET,
            {
                "metadata": {"name": "w", "namespace": ns},
                "spec": {"size": 0, "color": "purple"},
            },
        )
    fields = {c.field for c in caught.value.causes}
    assert {"spec.size", "spec.color"} <= fields
    assert caught.value.details["kind"] == "Widget"
    assert caught.value.details["group"] == WIDGET.group


async def test_bad_request(client: KubeClient, ns: str) -> None:
    with pytest.raises(BadRequest) as caught:
        await client.list(CONFIG_MAP, namespace=ns, label_selector="a in b")
    assert_status_body(caught.value, 400, "BadRequest")


async def test_unknown_kind_is_not_found(client: KubeClient, ns: str) -> None:
    unknown = ResourceKind(
        group="nothing.conformance.kaito.sh",
        version="v1",
        kind="Nothing",
        plural="nothings",
        namespaced=True,
    )
    with pytest.raises(NotFound):
        await client.list(unknown, namespace=ns)
