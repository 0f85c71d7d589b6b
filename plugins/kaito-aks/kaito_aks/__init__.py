"""kaito's AKS provisioner: GPU nodes as one Azure Kubernetes Service agent pool per workspace.

Installed, it registers itself as the `aks` entry point of `kaito.provisioners`, so
`kaito operator run --provisioner aks` finds it like any built-in. The package is split into a
pure part (the pool's name, tags and body in `_pool`; the VM size and quota checks in
`_capacity`; settings in `_config`) and a thin executor (`_arm`, the Azure SDKs' async
clients), so what kaito asks Azure for is testable without Azure; the provisioner itself
(`_provisioner`) decides each pass from what ARM and the cluster report.
"""

from kaito_aks._arm import ArmRetryPolicy, AzureError, Throttled
from kaito_aks._capacity import (
    REASON_QUOTA_EXCEEDED,
    REASON_SKU_NOT_AVAILABLE,
    CapacityProblem,
    VmSize,
    check_quota,
    check_vm_size,
)
from kaito_aks._config import ACCESS_TOKEN_ENV, OPTIONS, AKSSettings, env_name
from kaito_aks._credential import StaticTokenCredential
from kaito_aks._pool import (
    AGENTPOOL_LABEL,
    TAG_WORKSPACE,
    TAG_WORKSPACE_NAMESPACE,
    PoolView,
    agent_pool_body,
    agent_pool_name,
)
from kaito_aks._provisioner import AKSProvisioner

__all__ = [
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
]
