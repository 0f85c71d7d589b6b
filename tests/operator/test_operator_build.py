"""Building kaito's reconciler from the operator's settings and the plugin registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from operator_support import settings, wait_until

from kaito.kube import KubeClient
from kaito.kube.emulator import Emulator
from kaito.operator import (
    Operator,
    SettingsError,
    run_workspace_operator,
    workspace_reconciler,
)
from kaito.plugins import PluginNotFound, Registry
from kaito.provisioners.fake import FakeProvisioner
from kaito.reconcile import WorkspaceReconciler

pytestmark = pytest.mark.timeout(20)


def registry() -> Registry:
    reg = Registry()
    reg.add_provisioner("fake", FakeProvisioner)
    return reg


def test_the_settings_reach_the_provisioner_and_the_reconciler(client: KubeClient) -> None:
    reconciler = workspace_reconciler(
        client,
        settings(
            provisioner="fake",
            provisioner_options={"cpu": "16"},
            runtime="vllm",
            disable_node_auto_provisioning=True,
        ),
        registry(),
    )
    assert isinstance(reconciler, WorkspaceReconciler)
    assert isinstance(reconciler.provisioner, FakeProvisioner)
    assert reconciler.settings.default_runtime == "vllm"
    assert reconciler.settings.auto_provisioning is False


def test_an_unknown_provisioner_names_the_extra(client: KubeClient) -> None:
    with pytest.raises(PluginNotFound, match=r"pip install 'kaito\[aks\]'"):
        workspace_reconciler(client, settings(provisioner="aks"), registry())


def test_options_the_provisioner_rejects_are_a_settings_error(client: KubeClient) -> None:
    with pytest.raises(SettingsError, match="provisioner 'fake': unknown option"):
        workspace_reconciler(
            client, settings(provisioner="fake", provisioner_options={"colour": "red"}), registry()
        )


async def test_run_workspace_operator_until_stopped(emu: Emulator, kubeconfig: Path) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(
        run_workspace_operator(
            settings(kubeconfig=str(kubeconfig), provisioner="fake", leader_election=True),
            registry(),
            stop=stop,
            handle_signals=False,
        )
    )
    await wait_until(
        lambda: emu.store.get("leases", "kaito-system", "kaito-workspace-controller") is not None,
        what="the lease",
    )
    stop.set()
    await asyncio.wait_for(runner, 10)
    lease = emu.store.get("leases", "kaito-system", "kaito-workspace-controller")
    assert lease is not None
    assert "holderIdentity" not in lease["spec"]


async def test_stop_before_run_returns_at_once(client: KubeClient) -> None:
    operator = Operator(
        client, workspace_reconciler(client, settings(provisioner="fake"), registry()), settings()
    )
    operator.stop()
    await asyncio.wait_for(operator.run(), 5)
    assert operator.state == "stopped"
