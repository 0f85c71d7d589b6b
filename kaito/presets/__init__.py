"""kaito.presets: the model catalog, the GPU instance-type catalog and the sizing planner.

This is kaito's lowest layer: it imports no other kaito package, does no I/O beyond reading its
own packaged data files, and never imports torch. The catalogs are loaded lazily on first use.

    >>> from kaito.presets import builtin_presets, builtin_skus, plan
    >>> p = plan(builtin_presets()["phi-3-mini-4k-instruct"], builtin_skus()["Standard_NC6s_v3"])
    >>> (p.node_count, p.gpus_per_node)
    (1, 1)
"""

from kaito.presets._catalog import (
    PresetCatalog,
    SkuCatalog,
    UnknownPresetError,
    UnknownSkuError,
    builtin_chat_templates,
    builtin_presets,
    builtin_skus,
    load_presets,
    load_skus,
)
from kaito.presets._model import GpuSku, Preset
from kaito.presets._planner import (
    MemoryBudget,
    Plan,
    PlanError,
    PlanOptions,
    max_context,
    plan,
    rank_skus,
)

__all__ = [
    "GpuSku",
    "MemoryBudget",
    "Plan",
    "PlanError",
    "PlanOptions",
    "Preset",
    "PresetCatalog",
    "SkuCatalog",
    "UnknownPresetError",
    "UnknownSkuError",
    "builtin_chat_templates",
    "builtin_presets",
    "builtin_skus",
    "load_presets",
    "load_skus",
    "max_context",
    "plan",
    "rank_skus",
]
