"""The distribution as kaito sees it: the `aws` entry point, the registry's answer when the
plugin is not registered, the factory's contract, and the exact public names of `kaito_aws`."""

from __future__ import annotations

import kaito_aws
import pytest
from kaito_aws import EKSProvisioner

from kaito.plugins import PluginNotFound, Registry
from kaito.provisioners import Provisioner, ProvisionerContext

pytestmark = pytest.mark.timeout(10)

OPTIONS = {
    "region": "us-east-1",
    "cluster-name": "prod",
    "subnet-ids": "subnet-0123456789abcdef0",
    "node-role-arn": "arn:aws:iam::123456789012:role/eks-gpu-nodes",
}


def test_the_entry_point_registers_the_provisioner_as_aws() -> None:
    registry = Registry(builtin_catalog=False).load_entry_points()
    assert registry.provisioner("aws") is EKSProvisioner
    prov = registry.provisioner("aws")(ProvisionerContext(None, OPTIONS))  # type: ignore[arg-type]
    assert isinstance(prov, Provisioner)
    assert prov.name == "aws"


def test_without_the_plugin_the_registry_names_the_extra() -> None:
    with pytest.raises(PluginNotFound) as err:
        Registry(builtin_catalog=False).provisioner("aws")
    assert "pip install 'kaito[aws]'" in str(err.value)


def test_the_factory_rejects_bad_settings_with_value_error() -> None:
    with pytest.raises(ValueError, match="needs the option"):
        EKSProvisioner(ProvisionerContext(None, {}), environ={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown option"):
        EKSProvisioner(ProvisionerContext(None, {**OPTIONS, "cloud": "aws"}), environ={})  # type: ignore[arg-type]


def test_the_factory_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAITO_AWS_CLUSTER_NAME", "from-env")
    options = {k: v for k, v in OPTIONS.items() if k != "cluster-name"}
    prov = EKSProvisioner(ProvisionerContext(None, options))  # type: ignore[arg-type]
    assert prov.config.cluster_name == "from-env"


def test_the_public_names_are_exactly_these() -> None:
    assert sorted(kaito_aws.__all__) == sorted(
        [
            "ENV_PREFIX",
            "GPU_AMI_TYPES",
            "NODEGROUP_LABEL",
            "OPTIONS",
            "RECHECK_INTERVAL",
            "AwsError",
            "EKSConfig",
            "EKSProvisioner",
            "NodegroupSpec",
            "Quota",
            "QuotaSource",
            "default_ami_type",
            "env_name",
            "nodegroup_name",
            "quota_for",
            "retry_config",
        ]
    )
    for name in kaito_aws.__all__:
        assert getattr(kaito_aws, name) is not None
    public = {n for n in dir(kaito_aws) if not n.startswith("_")}
    assert public - set(kaito_aws.__all__) == set()
