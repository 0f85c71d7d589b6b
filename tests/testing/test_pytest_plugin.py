"""`kaito.testing`: the fixtures a library user enables in their own conftest.py."""

from __future__ import annotations

import pytest

USER_TESTS = """
import pytest
from kaito.kube import NODE, NODE_CLAIM, WORKSPACE

pytest_plugins = ["kaito.testing.pytest_plugin"]

async def test_workspace_crd_is_served(kaito_client):
    ws = {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
        "metadata": {"name": "ws", "namespace": "default"},
        "resource": {"instanceType": "Standard_NC6s_v3",
                     "labelSelector": {"matchLabels": {"app": "x"}}},
        "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}},
    }
    created = await kaito_client.create(WORKSPACE, ws)
    assert created["metadata"]["generation"] == 1

async def test_simulators_launch_nodes(kaito_cluster):
    claim = {
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "c1"},
        "spec": {"nodeClassRef": {"group": "karpenter.azure.com", "kind": "AKSNodeClass",
                                  "name": "default"},
                 "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                   "values": ["Standard_NC6s_v3"]}]},
    }
    await kaito_cluster.client.create(NODE_CLAIM, claim)
    await kaito_cluster.simulators.idle()
    nodes = (await kaito_cluster.client.list(NODE)).items
    assert [n["status"]["allocatable"]["nvidia.com/gpu"] for n in nodes] == ["1"]

async def test_each_test_gets_an_empty_cluster(kaito_emulator):
    assert kaito_emulator.store.objects("nodes") == []
"""


def test_fixtures_work_in_a_users_test_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
