"""Names that identify the Workspace resource on the wire.

Kept apart from the models so that dict-level code (conversion, the CRD) can use them without
importing the models, and the models can import that code without a cycle.
"""

from __future__ import annotations

API_GROUP = "kaito.sh"
KIND = "Workspace"
STORAGE_VERSION = "v1beta1"
SERVED_VERSIONS = ("v1alpha1", "v1beta1")

BYPASS_RESOURCE_CHECKS_ANNOTATION = f"{API_GROUP}/bypass-resource-checks"
"""Present on a workspace, it skips the check that the instance type's GPUs can hold the model."""

COMPANION_KINDS = (("v1", "ConfigMap"), ("v1", "Secret"))
"""(apiVersion, kind) of the objects a workspace file may carry beside the Workspace: what it
refers to (a push or pull secret, a tuning config). `kaito up` creates them first; `kaito
validate` passes over them."""
