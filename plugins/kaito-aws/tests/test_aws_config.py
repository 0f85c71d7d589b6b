"""The parts of the aws provisioner that need no AWS: settings from options and environment,
node group names, AMI types, the quota of an instance type, and the node group spec (the
CreateNodegroup and UpdateNodegroupConfig parameters) computed from a request."""

from __future__ import annotations

import re
from typing import Any

import attrs
import pytest
from aws_support import request
from hypothesis import given
from hypothesis import strategies as st
from kaito_aws import (
    GPU_AMI_TYPES,
    EKSConfig,
    NodegroupSpec,
    default_ami_type,
    env_name,
    nodegroup_name,
    quota_for,
)

from kaito.provisioners import Taint

pytestmark = pytest.mark.timeout(10)

ROLE = "arn:aws:iam::123456789012:role/eks-gpu-nodes"
SUBNETS = "subnet-0123456789abcdef0, subnet-89abcdef,subnet-0123456789abcdef0"
REQUIRED = {
    "region": "us-east-1",
    "cluster-name": "prod",
    "subnet-ids": SUBNETS,
    "node-role-arn": ROLE,
}
EKS_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,62}$")


def config(**options: str) -> EKSConfig:
    return EKSConfig.from_options({**REQUIRED, **options})


def test_options_make_the_config() -> None:
    cfg = config(
        **{
            "endpoint-url": "http://127.0.0.1:5000",
            "ami-type": "AL2_x86_64_GPU",
            "retry-mode": "adaptive",
            "max-attempts": "8",
            "poll-interval": "1m",
        }
    )
    assert cfg == EKSConfig(
        region="us-east-1",
        cluster_name="prod",
        subnet_ids=("subnet-0123456789abcdef0", "subnet-89abcdef"),
        node_role_arn=ROLE,
        endpoint_url="http://127.0.0.1:5000",
        ami_type="AL2_x86_64_GPU",
        retry_mode="adaptive",
        max_attempts=8,
        poll_interval=60.0,
    )
    defaults = config()
    assert (defaults.endpoint_url, defaults.ami_type) == (None, None)
    assert (defaults.retry_mode, defaults.max_attempts, defaults.poll_interval) == (
        "standard",
        5,
        30.0,
    )


def test_the_environment_fills_in_what_the_options_leave_out() -> None:
    assert env_name("subnet-ids") == "KAITO_AWS_SUBNET_IDS"
    environ = {
        "AWS_REGION": "eu-central-1",
        "KAITO_AWS_CLUSTER_NAME": "from-env",
        "KAITO_AWS_SUBNET_IDS": "subnet-0123456789abcdef0",
        "KAITO_AWS_NODE_ROLE_ARN": ROLE,
        "KAITO_AWS_RETRY_MODE": "adaptive",
    }
    cfg = EKSConfig.from_options({"cluster-name": "from-options"}, environ)
    assert cfg.region == "eu-central-1"
    assert cfg.cluster_name == "from-options"
    assert cfg.retry_mode == "adaptive"
    explicit = EKSConfig.from_options({}, {**environ, "KAITO_AWS_REGION": "us-west-2"})
    assert explicit.region == "us-west-2"
    fallback = EKSConfig.from_options(
        {}, {**environ, "AWS_REGION": "", "AWS_DEFAULT_REGION": "ap-south-1"}
    )
    assert fallback.region == "ap-south-1"


def test_missing_settings_are_all_named() -> None:
    with pytest.raises(ValueError, match="needs the option") as err:
        EKSConfig.from_options({"region": "us-east-1"}, {})
    assert str(err.value) == (
        "the aws provisioner needs the option(s) cluster-name (KAITO_AWS_CLUSTER_NAME), "
        "subnet-ids (KAITO_AWS_SUBNET_IDS), node-role-arn (KAITO_AWS_NODE_ROLE_ARN); set them "
        "with --provisioner-option NAME=VALUE or the environment variables in parentheses"
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("region", "US East", "option region='US East' of the aws provisioner is malformed"),
        ("cluster-name", "-bad", "option cluster-name='-bad'"),
        ("subnet-ids", "subnet-xyz,sg-123", "not subnet IDs: subnet-xyz, sg-123"),
        ("subnet-ids", " , ", r"not subnet IDs: \(none given\)"),
        ("node-role-arn", "arn:aws:iam::123:role/x", "option node-role-arn="),
        ("endpoint-url", "localhost:5000", "expected an http\\(s\\) URL"),
        ("ami-type", "AL2_x86_64", "is not a GPU AMI type; expected one of AL2023_x86_64_NVIDIA"),
        ("retry-mode", "legacy", "retry-mode='legacy' of the aws provisioner is not one of"),
        ("max-attempts", "0", "must be a whole number from 1 to 20"),
        ("max-attempts", "three", "must be a whole number from 1 to 20"),
        ("poll-interval", "soon", "option poll-interval of the aws provisioner: not a duration"),
    ],
)
def test_malformed_settings_are_rejected(option: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(**{option: value})


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) for the aws provisioner: zone"):
        config(zone="a")


def test_node_group_names_are_deterministic_and_fit_eks() -> None:
    name = nodegroup_name("default", "phi-3-mini")
    assert name == nodegroup_name("default", "phi-3-mini")
    assert re.fullmatch(r"kaito-phi-3-mini-[0-9a-f]{10}", name)
    assert nodegroup_name("team-a", "phi-3-mini") != name
    long = nodegroup_name("default", "a" * 253)
    assert len(long) == 63
    assert EKS_NAME.match(long)
    assert EKS_NAME.match(nodegroup_name("default", "llama.3.1-8b"))
    assert nodegroup_name("default", "...").startswith("kaito-")


@given(
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True),
    st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,200}[a-z0-9])?", fullmatch=True),
)
def test_any_workspace_gets_a_valid_name(namespace: str, name: str) -> None:
    assert EKS_NAME.match(nodegroup_name(namespace, name))


def test_the_ami_follows_the_architecture() -> None:
    assert default_ami_type("g5.xlarge") == "AL2023_x86_64_NVIDIA"
    assert default_ami_type("p4d.24xlarge") == "AL2023_x86_64_NVIDIA"
    assert default_ami_type("gr6.4xlarge") == "AL2023_x86_64_NVIDIA"
    assert default_ami_type("g4dn.xlarge") == "AL2023_x86_64_NVIDIA"
    assert default_ami_type("g5g.2xlarge") == "AL2023_ARM_64_NVIDIA"
    assert set(GPU_AMI_TYPES) >= {"AL2_x86_64_GPU", "AL2023_x86_64_NVIDIA"}


@pytest.mark.parametrize(
    ("instance_type", "code"),
    [
        ("p4d.24xlarge", "L-417A185B"),
        ("p6-b200.48xlarge", "L-417A185B"),
        ("g5.xlarge", "L-DB2E81BA"),
        ("gr6.4xlarge", "L-DB2E81BA"),
        ("vt1.3xlarge", "L-DB2E81BA"),
        ("inf2.xlarge", "L-1945791B"),
        ("trn1.32xlarge", "L-2C3B7624"),
        ("dl1.24xlarge", "L-6E869C2A"),
        ("m5.large", "L-1216C47A"),
        ("im4gn.large", "L-1216C47A"),
        ("u-6tb1.metal", None),
        ("mac1.metal", None),
        ("", None),
    ],
)
def test_each_instance_type_counts_against_its_quota(instance_type: str, code: str | None) -> None:
    quota = quota_for(instance_type)
    assert (quota.code if quota is not None else None) == code


def test_quota_names_are_the_console_names() -> None:
    names = {t: getattr(quota_for(t), "name", None) for t in ("g6.xlarge", "p5.48xlarge")}
    assert names == {
        "g6.xlarge": "Running On-Demand G and VT instances",
        "p5.48xlarge": "Running On-Demand P instances",
    }


def test_the_spec_turns_a_request_into_create_parameters() -> None:
    req = request(
        count=3,
        disk_gib=200,
        labels={"apps": "llama"},
        expressions=[
            {"key": "tier", "operator": "In", "values": ["gold", "silver"]},
            {"key": "ssd", "operator": "Exists"},
            {"key": "spot", "operator": "DoesNotExist"},
        ],
    )
    spec = NodegroupSpec.for_request(req, config())
    body = spec.create_request(["subnet-89abcdef"], "uid-1")
    assert body == {
        "clusterName": "prod",
        "nodegroupName": nodegroup_name("default", "phi"),
        "subnets": ["subnet-89abcdef"],
        "nodeRole": ROLE,
        "scalingConfig": {"minSize": 3, "maxSize": 3, "desiredSize": 3},
        "instanceTypes": ["g5.xlarge"],
        "amiType": "AL2023_x86_64_NVIDIA",
        "capacityType": "ON_DEMAND",
        "diskSize": 200,
        "labels": {
            "apps": "llama",
            "tier": "gold",
            "ssd": "true",
            "kaito.sh/workspace": "phi",
            "kaito.sh/workspacenamespace": "default",
        },
        "taints": [{"key": "sku", "value": "gpu", "effect": "NO_SCHEDULE"}],
        "tags": {
            "kaito.sh/workspace": "phi",
            "kaito.sh/workspacenamespace": "default",
            "kaito.sh/created-by": "kaito",
        },
        "clientRequestToken": spec.client_token("uid-1"),
    }
    assert "diskSize" not in NodegroupSpec.for_request(
        request(disk_gib=0), config()
    ).create_request(["subnet-89abcdef"], "u")
    assert NodegroupSpec.for_request(req, config(**{"ami-type": "AL2_x86_64_GPU"})).ami_type == (
        "AL2_x86_64_GPU"
    )


def test_the_token_changes_with_the_workspace_and_the_shape() -> None:
    spec = NodegroupSpec.for_request(request(), config())
    token = spec.client_token("uid-1")
    assert re.fullmatch(r"kaito-[0-9a-f]{32}", token)
    assert spec.client_token("uid-1") == token
    assert spec.client_token("uid-2") != token
    bigger = NodegroupSpec.for_request(request(count=2), config())
    assert bigger.client_token("uid-1") != token


def test_taint_effects_take_the_eks_spelling() -> None:
    req = attrs.evolve(
        request(), taints=(Taint("sku", "gpu"), Taint("dedicated", "ml", "NoExecute"))
    )
    body = NodegroupSpec.for_request(req, config()).create_request(["subnet-89abcdef"], "u")
    assert body["taints"] == [
        {"key": "sku", "value": "gpu", "effect": "NO_SCHEDULE"},
        {"key": "dedicated", "value": "ml", "effect": "NO_EXECUTE"},
    ]
    odd = attrs.evolve(req, taints=(Taint("a", "b", "Sometimes"),))
    with pytest.raises(ValueError, match="effect 'Sometimes'"):
        NodegroupSpec.for_request(odd, config())


def test_update_parameters_cover_only_what_differs() -> None:
    spec = NodegroupSpec.for_request(request(count=2), config())
    body = spec.create_request(["subnet-89abcdef"], "u")
    same: Any = {
        "scalingConfig": body["scalingConfig"],
        "labels": {**body["labels"], "added-by-someone": "x"},
        "taints": body["taints"],
    }
    assert spec.update_request(same) is None
    drifted: Any = {
        "scalingConfig": {"minSize": 1, "maxSize": 1, "desiredSize": 1},
        "labels": {"kaito.sh/workspace": "phi"},
        "taints": [],
    }
    assert spec.update_request(drifted) == {
        "clusterName": "prod",
        "nodegroupName": spec.name,
        "scalingConfig": {"minSize": 2, "maxSize": 2, "desiredSize": 2},
        "labels": {"addOrUpdateLabels": {"kaito.sh/workspacenamespace": "default"}},
        "taints": {"addOrUpdateTaints": [{"key": "sku", "value": "gpu", "effect": "NO_SCHEDULE"}]},
    }


def test_a_group_of_another_shape_is_stale() -> None:
    spec = NodegroupSpec.for_request(request(disk_gib=100), config())
    fits: Any = {"instanceTypes": ["g5.xlarge"], "amiType": "AL2023_x86_64_NVIDIA", "diskSize": 100}
    assert spec.stale_because(fits) is None
    assert spec.stale_because({**fits, "amiType": "AL2_x86_64_GPU"}) == (
        "has AMI type AL2_x86_64_GPU, not AL2023_x86_64_NVIDIA"
    )
    assert spec.stale_because({**fits, "diskSize": 20}) == ("has a 20 GiB disk, not 100 GiB")
    assert spec.stale_because({**fits, "instanceTypes": []}) == (
        "has instance type (none), not g5.xlarge"
    )
