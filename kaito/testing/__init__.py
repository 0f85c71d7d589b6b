"""Testing helpers for code built on kaito: an emulated cluster with kaito's CRDs installed.

    from kaito.testing import kaito_cluster

    async def test_my_controller(tmp_path):
        async with kaito_cluster() as cluster:
            await cluster.client.create(WORKSPACE, workspace)
            await cluster.simulators.idle()

With pytest and pytest-asyncio, the fixtures of `kaito.testing.pytest_plugin` give the same
without boilerplate: add `pytest_plugins = ["kaito.testing.pytest_plugin"]` to a conftest.py
and ask for `kaito_cluster`, `kaito_client` or `kaito_emulator`.
"""

from __future__ import annotations

from typing import Any

from kaito.api import workspace_crd
from kaito.kube.emulated import EmulatedCluster


def kaito_crds() -> list[dict[str, Any]]:
    """The CRDs kaito installs in a cluster (Karpenter's NodeClaim CRD is Karpenter's own)."""
    return [workspace_crd()]


def kaito_cluster(**options: Any) -> EmulatedCluster:
    """An `EmulatedCluster` with kaito's CRDs and Karpenter's NodeClaim CRD installed and the
    lifecycle simulators running; `options` go to `EmulatedCluster`."""
    return EmulatedCluster(kaito_crds(), **options)


__all__ = ["EmulatedCluster", "kaito_cluster", "kaito_crds"]
