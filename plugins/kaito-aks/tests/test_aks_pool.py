"""The agent pool as data: the name fits AKS's limits and is stable per workspace, the body
carries the plan and the workspace's labels, and pools read back from ARM are understood."""

from __future__ import annotations

import re

import attrs
import pytest
from aks_support import NC12, request
from hypothesis import given
from hypothesis import strategies as st
from kaito_aks import (
    TAG_WORKSPACE,
    TAG_WORKSPACE_NAMESPACE,
    PoolView,
    agent_pool_body,
    agent_pool_name,
)

from kaito.provisioners import Taint

_DNS_LABEL = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)

pytestmark = pytest.mark.timeout(30)


@given(namespace=_DNS_LABEL, name=_DNS_LABEL)
def test_pool_names_fit_aks_and_are_stable(namespace: str, name: str) -> None:
    pool = agent_pool_name(namespace, name)
    assert re.fullmatch(r"ws[0-9a-f]{10}", pool)
    assert len(pool) <= 12
    assert pool == agent_pool_name(namespace, name)


def test_pool_names_differ_between_workspaces() -> None:
    names = {agent_pool_name(ns, n) for ns in ("default", "team-a") for n in ("phi", "falcon")}
    assert len(names) == 4


def test_tags_are_the_workspace_labels_with_azure_legal_names() -> None:
    assert (TAG_WORKSPACE, TAG_WORKSPACE_NAMESPACE) == (
        "kaito.sh_workspace",
        "kaito.sh_workspacenamespace",
    )
    body = agent_pool_body(request(name="phi", namespace="team-a"))
    assert body["properties"]["tags"] == {
        "kaito.sh_workspace": "phi",
        "kaito.sh_workspacenamespace": "team-a",
    }


def test_selector_expressions_become_labels_that_satisfy_them() -> None:
    body = agent_pool_body(
        request(
            labels={"apps": "phi-3"},
            expressions=[
                {"key": "tier", "operator": "In", "values": ["gpu", "gpu-large"]},
                {"key": "dedicated", "operator": "Exists"},
                {"key": "spot", "operator": "DoesNotExist"},
                {"key": "apps", "operator": "NotIn", "values": ["other"]},
            ],
        ),
        zones=["1"],
    )
    props = body["properties"]
    assert props["nodeLabels"] == {
        "apps": "phi-3",
        "tier": "gpu",
        "dedicated": "true",
        "kaito.sh/workspace": "phi",
        "kaito.sh/workspacenamespace": "default",
    }
    assert props["availabilityZones"] == ["1"]


def test_disk_and_count_within_aks_bounds() -> None:
    assert agent_pool_body(request(disk_gib=10))["properties"]["osDiskSizeGB"] == 30
    assert agent_pool_body(request(disk_gib=5000))["properties"]["osDiskSizeGB"] == 2048
    assert "osDiskSizeGB" not in agent_pool_body(request(disk_gib=0))["properties"]
    with pytest.raises(ValueError, match="1 to 1000 nodes, not 0"):
        agent_pool_body(request(count=0))
    with pytest.raises(ValueError, match="AKS does not allow setting node label"):
        agent_pool_body(request(labels={"kubernetes.azure.com/mode": "user"}))


def test_taints_in_aks_notation() -> None:
    custom = attrs.evolve(
        request(), taints=(Taint("sku", "gpu"), Taint("dedicated", "ml", "NoExecute"))
    )
    assert agent_pool_body(custom)["properties"]["nodeTaints"] == [
        "sku=gpu:NoSchedule",
        "dedicated=ml:NoExecute",
    ]


def test_pools_read_back_from_arm() -> None:
    failed = PoolView.from_wire(
        {
            "name": "ws0123456789",
            "properties": {
                "count": 2,
                "vmSize": NC12,
                "provisioningState": "Failed",
                "tags": {TAG_WORKSPACE: "phi", TAG_WORKSPACE_NAMESPACE: "default"},
                "status": {"provisioningError": {"code": "QuotaExceeded", "message": "no"}},
            },
        }
    )
    assert failed.belongs_to(request())
    assert not failed.belongs_to(request(namespace="other"))
    assert not failed.busy
    assert failed.failure() == "QuotaExceeded: no"
    creating = PoolView.from_wire({"name": "x", "properties": {"provisioningState": "Creating"}})
    assert creating.busy
    assert not creating.deleting
    assert creating.failure() == "AKS reported no error details"
    assert PoolView.from_wire({"name": "y"}).count == 0
