"""kaito's `aws` provisioner: GPU nodes for workspaces as EKS managed node groups.

Installed with `pip install 'kaito[aws]'` (or this distribution, `kaito-aws`), it registers
`EKSProvisioner` under the `kaito.provisioners` entry-point group as `aws`; select it with
`kaito operator run --provisioner aws --provisioner-option cluster-name=... ...`. The README
lists the options and the IAM policy the operator's role needs.
"""

from kaito_aws._aws import AwsError, retry_config
from kaito_aws._config import ENV_PREFIX, GPU_AMI_TYPES, OPTIONS, EKSConfig, env_name
from kaito_aws._nodegroup import (
    NODEGROUP_LABEL,
    NodegroupSpec,
    default_ami_type,
    nodegroup_name,
)
from kaito_aws._provisioner import RECHECK_INTERVAL, EKSProvisioner
from kaito_aws._quotas import Quota, QuotaSource, quota_for

__all__ = [
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
