"""Putting the pieces together: provisioner plugin + `WorkspaceReconciler` + `Operator`.

This is what `kaito operator run` runs. The provisioner is looked up in the plugin registry
before anything connects to the cluster, so a misspelt or uninstalled provisioner fails at once
with the registry's `PluginNotFound` (which names the extra to install), not after a
connection attempt.
"""

from __future__ import annotations

import asyncio

from kaito.kube import Client
from kaito.operator._operator import run_operator
from kaito.operator._settings import OperatorSettings, SettingsError
from kaito.plugins import Registry, default_registry
from kaito.provisioners import ProvisionerContext, ProvisionerFactory
from kaito.reconcile import ReconcilerSettings, WorkspaceReconciler


def _provisioner_factory(settings: OperatorSettings, registry: Registry) -> ProvisionerFactory:
    return registry.provisioner(settings.provisioner)


def _reconciler(
    client: Client,
    factory: ProvisionerFactory,
    settings: OperatorSettings,
    registry: Registry,
) -> WorkspaceReconciler:
    try:
        provisioner = factory(ProvisionerContext(client, dict(settings.provisioner_options)))
    except ValueError as exc:
        raise SettingsError(f"provisioner {settings.provisioner!r}: {exc}") from exc
    return WorkspaceReconciler(
        client,
        provisioner=provisioner,
        registry=registry,
        settings=ReconcilerSettings(
            default_runtime=settings.runtime,
            auto_provisioning=not settings.disable_node_auto_provisioning,
        ),
    )


def workspace_reconciler(
    client: Client, settings: OperatorSettings, registry: Registry | None = None
) -> WorkspaceReconciler:
    """kaito's reconciler, with the provisioner and runtime the settings name.

    Raises `PluginNotFound` for an unknown provisioner and `SettingsError` when the
    provisioner rejects its options.
    """
    registry = registry if registry is not None else default_registry()
    return _reconciler(client, _provisioner_factory(settings, registry), settings, registry)


async def run_workspace_operator(
    settings: OperatorSettings,
    registry: Registry | None = None,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Run kaito's operator as configured until stopped (SIGTERM/SIGINT, or `stop`)."""
    registry = registry if registry is not None else default_registry()
    factory = _provisioner_factory(settings, registry)
    await run_operator(
        settings,
        lambda client: _reconciler(client, factory, settings, registry),
        stop=stop,
        handle_signals=handle_signals,
    )
