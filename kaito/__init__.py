"""kaito: the Kubernetes AI Toolchain Operator as a typed Python library.

Declare a `Workspace` (a model preset on a GPU instance type, optionally with adapters, or a
fine-tuning job); kaito sizes it (`plan`), provisions nodes, deploys an inference server and
reports readiness in status conditions. This module is the stable facade: the names in `__all__`
are the public API; everything in underscore modules may change.

`import kaito` stays light: it does not import torch, transformers or any cloud SDK.
"""

from kaito._version import __version__
from kaito.api import (
    ConditionType,
    FieldError,
    Workspace,
    WorkspaceInvalid,
    validate_create,
    validate_update,
)
from kaito.plugins import PluginError, PluginNotFound, Registry, default_registry
from kaito.presets import (
    GpuSku,
    Plan,
    PlanError,
    PlanOptions,
    Preset,
    builtin_presets,
    builtin_skus,
    plan,
    rank_skus,
)
from kaito.reconcile import Reconciler, Result, TerminalError

__all__ = [
    "ConditionType",
    "FieldError",
    "GpuSku",
    "Plan",
    "PlanError",
    "PlanOptions",
    "PluginError",
    "PluginNotFound",
    "Preset",
    "Reconciler",
    "Registry",
    "Result",
    "TerminalError",
    "Workspace",
    "WorkspaceInvalid",
    "__version__",
    "builtin_presets",
    "builtin_skus",
    "default_registry",
    "plan",
    "rank_skus",
    "validate_create",
    "validate_update",
]
