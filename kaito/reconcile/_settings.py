"""The operator's settings for the reconciler.

Everything here is a deployment choice, not a property of one workspace: which runtime serves a
workspace that names none, how each runtime is configured, whether kaito creates GPU nodes or
the cluster brings its own, and whether Events are recorded. They come from the operator's flags
(or the local mode's defaults) and are the same for every workspace the reconciler sees.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs


def _frozen_options(value: Mapping[str, Mapping[str, str]]) -> Mapping[str, Mapping[str, str]]:
    return {str(name): dict(options) for name, options in value.items()}


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


@attrs.frozen(kw_only=True)
class ReconcilerSettings:
    """How the reconciler runs; the defaults suit a cluster with node auto-provisioning."""

    default_runtime: str = "hf"
    """The runtime for workspaces without the `kaito.sh/runtime` annotation."""
    runtime_options: Mapping[str, Mapping[str, str]] = attrs.field(
        factory=dict, converter=_frozen_options
    )
    """Options per runtime name, handed to the runtime's factory as `RuntimeContext.options`."""
    auto_provisioning: bool = True
    """True: kaito creates GPU nodes (resource.instanceType required). False: bring your own
    nodes (upstream's disableNodeAutoProvisioning; resource.instanceType must be empty)."""
    record_events: bool = True
    """Record a Kubernetes Event on the workspace for every condition transition."""
    model_sources: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    """Preset name -> a directory the server loads the model from instead of the preset's
    Hugging Face id (images that bake the weights in, or the local mode's generated models)."""
    private_data_urls: bool = False
    """Accept tuning data URLs on loopback and private addresses (the local mode, where the
    node that downloads is the user's own machine). Off on a cluster: a URL a user writes must
    not reach the node's own services or the cluster network."""
    release_requeue_seconds: float = attrs.field(default=5.0, validator=_positive)
    """How soon to look again while a provisioner is still releasing a deleted workspace's
    nodes and gave no hint of its own."""
    missing_config_requeue_seconds: float = attrs.field(default=30.0, validator=_positive)
    """How soon to look again for a user's inference ConfigMap that does not exist yet (it is
    not labelled for the workspace, so no watch reports its creation)."""
