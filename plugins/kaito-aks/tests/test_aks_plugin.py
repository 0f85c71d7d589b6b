"""The plugin as kaito finds it: the `aks` entry point, the error that names the extra when it
is missing, the provisioner built from options alone (static token from the environment) doing
a real pass, the default credential, and the package's public names."""

from __future__ import annotations

import importlib.resources

import kaito_aks
import pytest
from aks_standin import ArmStandIn
from aks_support import CLUSTER, RESOURCE_GROUP, SUBSCRIPTION, TOKEN, request
from kaito_aks import AKSProvisioner

from kaito import PluginNotFound, Registry
from kaito.provisioners import Provisioner, ProvisionerContext
from kaito.provisioners.byo import BYOProvisioner
from kaito.provisioners.fake import FakeProvisioner
from kaito.provisioners.karpenter import KarpenterProvisioner
from kaito.testing import EmulatedCluster

pytestmark = pytest.mark.timeout(30)


def test_without_the_plugin_the_registry_names_the_extra() -> None:
    registry = Registry()
    for name, factory in (
        ("karpenter", KarpenterProvisioner),
        ("byo", BYOProvisioner),
        ("fake", FakeProvisioner),
    ):
        registry.add_provisioner(name, factory)
    with pytest.raises(PluginNotFound) as info:
        registry.provisioner("aks")
    assert "install it with: pip install 'kaito[aks]'" in str(info.value)
    assert "available: byo, fake, karpenter" in str(info.value)


def test_the_installed_plugin_is_the_aks_entry_point() -> None:
    registry = Registry(builtin_catalog=False).load_entry_points()
    assert registry.provisioner("aks") is AKSProvisioner
    assert "aks" in registry.provisioner_names


async def test_built_from_options_with_a_static_token_from_the_environment(
    cluster: EmulatedCluster, arm: ArmStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = Registry(builtin_catalog=False).load_entry_points().provisioner("aks")
    options = {
        "subscription-id": SUBSCRIPTION,
        "resource-group": RESOURCE_GROUP,
        "cluster-name": CLUSTER,
        "arm-endpoint": arm.url,
        "credential": "static",
    }
    monkeypatch.delenv("KAITO_AKS_ACCESS_TOKEN", raising=False)
    with pytest.raises(ValueError, match="KAITO_AKS_ACCESS_TOKEN, which is not set"):
        factory(ProvisionerContext(cluster.client, options))

    monkeypatch.setenv("KAITO_AKS_ACCESS_TOKEN", TOKEN)
    prov = factory(ProvisionerContext(cluster.client, options))
    assert isinstance(prov, Provisioner)
    assert prov.name == "aks"
    status = await prov.provision(request())
    assert status.reason == "AgentPoolCreating"
    assert len(arm.pool_calls("PUT")) == 1


async def test_the_default_credential_is_created_lazily_and_closed(
    cluster: EmulatedCluster, arm: ArmStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a credential option, azure-identity's DefaultAzureCredential is used. Narrowed
    to its environment credential with nothing configured (so it reaches no network), it finds
    no identity: the pass fails as an authorization problem and no request goes out."""
    for var in (
        "AZURE_SUBSCRIPTION_ID",
        "KAITO_AKS_SUBSCRIPTION_ID",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_CLIENT_CERTIFICATE_PATH",
        "AZURE_USERNAME",
        "AZURE_FEDERATED_TOKEN_FILE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
    options = {
        "subscription-id": SUBSCRIPTION,
        "resource-group": RESOURCE_GROUP,
        "cluster-name": CLUSTER,
        "arm-endpoint": arm.url,
        "max-retries": "0",
    }
    async with AKSProvisioner(ProvisionerContext(cluster.client, options)) as prov:
        assert prov.settings.credential == "default"
        status = await prov.provision(request())
    assert (status.failed, status.reason) == (True, "AzureAuthorizationFailed")
    assert "could not obtain an Azure access token" in status.message
    assert "EnvironmentCredential" in status.message
    assert "\n" not in status.message
    assert arm.log == []
    await prov.aclose()  # closing twice is harmless


async def test_an_invalid_request_fails_without_calling_azure(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    from aks_support import provisioner

    prov = provisioner(cluster, arm)
    no_type = await prov.provision(request(instance_type=""))
    assert (no_type.failed, no_type.reason) == (True, "InvalidNodeRequest")
    assert "resource.instanceType" in no_type.message
    contradiction = await prov.provision(
        request(
            labels={"team": "a"},
            expressions=[{"key": "team", "operator": "NotIn", "values": ["a"]}],
        )
    )
    assert contradiction.reason == "InvalidNodeRequest"
    assert "contradicts" in contradiction.message
    assert arm.log == []


def test_public_names() -> None:
    assert set(kaito_aks.__all__) == {
        "ACCESS_TOKEN_ENV",
        "AGENTPOOL_LABEL",
        "OPTIONS",
        "REASON_QUOTA_EXCEEDED",
        "REASON_SKU_NOT_AVAILABLE",
        "TAG_WORKSPACE",
        "TAG_WORKSPACE_NAMESPACE",
        "AKSProvisioner",
        "AKSSettings",
        "ArmRetryPolicy",
        "AzureError",
        "CapacityProblem",
        "PoolView",
        "StaticTokenCredential",
        "Throttled",
        "VmSize",
        "agent_pool_body",
        "agent_pool_name",
        "check_quota",
        "check_vm_size",
        "env_name",
    }
    for name in kaito_aks.__all__:
        assert getattr(kaito_aks, name) is not None
    assert importlib.resources.files("kaito_aks").joinpath("py.typed").is_file()
