"""3. metadata.generation counts changes of the desired state only (spec), not of metadata or
status; controllers compare it with status.observedGeneration."""

from __future__ import annotations

from typing import Any

import pytest

from kaito.kube import DEPLOYMENT, KubeClient, PatchType

from .conftest import WIDGET

pytestmark = pytest.mark.timeout(30)


def generation(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["generation"])


async def test_custom_resource_generation(client: KubeClient, ns: str) -> None:
    created = await client.create(
        WIDGET, {"metadata": {"name": "w", "namespace": ns}, "spec": {"size": 1}}
    )
    assert generation(created) == 1

    relabeled = await client.patch(
        WIDGET, "w", {"metadata": {"labels": {"a": "b"}, "annotations": {"n": "1"}}}, namespace=ns
    )
    assert generation(relabeled) == 1

    with_status = await client.patch_status(
        WIDGET, "w", {"status": {"phase": "Ready", "observedGeneration": 1}}, namespace=ns
    )
    assert generation(with_status) == 1

    resized = await client.patch(WIDGET, "w", {"spec": {"size": 2}}, namespace=ns)
    assert generation(resized) == 2

    same_again = await client.patch(WIDGET, "w", {"spec": {"size": 2}}, namespace=ns)
    assert generation(same_again) == 2

    replaced = await client.update(WIDGET, {**resized, "spec": {**resized["spec"], "size": 3}})
    assert generation(replaced) == 3


def deployment(name: str, ns: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            # No replicas: nothing needs to be scheduled on a real cluster.
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


async def test_built_in_kind_generation(client: KubeClient, ns: str) -> None:
    created = await client.create(DEPLOYMENT, deployment("d", ns, "busybox:1"))
    assert generation(created) == 1
    labeled = await client.patch(
        DEPLOYMENT, "d", {"metadata": {"labels": {"x": "y"}}}, namespace=ns
    )
    assert generation(labeled) == 1
    new_image = await client.patch(
        DEPLOYMENT,
        "d",
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}}}},
        namespace=ns,
        patch_type=PatchType.STRATEGIC,
    )
    assert generation(new_image) == 2
