"""Node provisioners: the protocol, and the built-in implementations registered through
the `kaito.provisioners` entry-point group."""

from kaito.provisioners._protocol import (
    GPU_RESOURCE,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    WORKSPACE_LABEL,
    WORKSPACE_NAMESPACE_LABEL,
    NodeDescriber,
    NodeFacts,
    NodeRequest,
    Provisioner,
    ProvisionerContext,
    ProvisionerFactory,
    ProvisionStatus,
    Taint,
)

__all__ = [
    "GPU_RESOURCE",
    "GPU_TAINT_KEY",
    "GPU_TAINT_VALUE",
    "WORKSPACE_LABEL",
    "WORKSPACE_NAMESPACE_LABEL",
    "NodeDescriber",
    "NodeFacts",
    "NodeRequest",
    "ProvisionStatus",
    "Provisioner",
    "ProvisionerContext",
    "ProvisionerFactory",
    "Taint",
]
