"""A workspace file, made ready for this machine (pure: no I/O).

The local mode accepts the same workspace documents as a cluster (the seed's v1alpha1 YAML
loads unchanged), with one difference it says out loud: `resource.instanceType` names a cloud
machine, and here the machine is this one. The field is removed before the workspace is
created (the original is kept in the annotation `kaito.sh/local-ignored-instance-type`), the
reconciler runs without node auto-provisioning, and the model is sized against what the local
provisioner reports this machine offers. Everything else (labelSelector, preset, adapters,
config, template) is used as written.

Tuning workspaces are refused: this version of kaito does not run tuning jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from kaito.api import Workspace, WorkspaceInvalid, validate_create
from kaito.plugins import Registry
from kaito.presets import Preset
from kaito.runtimes import RUNTIME_ANNOTATION

IGNORED_INSTANCE_TYPE_ANNOTATION = "kaito.sh/local-ignored-instance-type"


class LocalModeError(ValueError):
    """A workspace (or a request) the local mode cannot run; the message says why."""


@attrs.frozen
class LocalWorkspace:
    """The workspace to create, and what the user should be told about it."""

    document: Mapping[str, Any]
    """The workspace in the stored version (v1beta1), ready to create."""
    name: str
    namespace: str
    preset: Preset | None
    runtime: str
    ignored_instance_type: str | None
    notes: tuple[str, ...]


def prepare_workspace(
    document: Mapping[str, Any], registry: Registry, *, default_runtime: str = "hf"
) -> LocalWorkspace:
    """Check a workspace document and adapt it to the local mode (see the module docstring).
    Raises `LocalModeError` with every problem found."""
    try:
        workspace = Workspace.from_dict(dict(document))
    except WorkspaceInvalid as exc:
        raise LocalModeError(_listing("the workspace is invalid", exc.errors)) from None
    if workspace.tuning is not None:
        raise LocalModeError(
            "kaito up serves inference workspaces; this one is a tuning workspace, and this "
            "version of kaito does not run tuning jobs"
        )
    data = workspace.to_dict()
    meta = data.setdefault("metadata", {})
    if not meta.get("name"):
        raise LocalModeError("the workspace needs metadata.name (kaito up names its run after it)")
    meta.setdefault("namespace", "default")
    notes: list[str] = []
    resource = data.get("resource") or {}
    ignored = resource.pop("instanceType", None) or None
    if ignored:
        meta.setdefault("annotations", {})[IGNORED_INSTANCE_TYPE_ANNOTATION] = ignored
        notes.append(
            f"resource.instanceType {ignored} is ignored in local mode: the workspace runs on "
            "this machine, and the model is sized for it"
        )
    local = Workspace.from_dict(data)
    errors = validate_create(local, presets=registry.presets, auto_provisioning=False)
    if errors:
        raise LocalModeError(_listing("the workspace cannot run locally", errors))
    preset: Preset | None = None
    inference = local.inference
    if inference is not None and inference.preset is not None:
        preset = registry.presets.get(inference.preset.name)
    runtime = (meta.get("annotations") or {}).get(RUNTIME_ANNOTATION) or default_runtime
    if preset is not None and preset.generated:
        notes.append(
            f"preset {preset.name} is a tiny model with random weights: it answers, but its "
            "text is meaningless"
        )
    return LocalWorkspace(
        document=data,
        name=str(meta["name"]),
        namespace=str(meta["namespace"]),
        preset=preset,
        runtime=str(runtime),
        ignored_instance_type=ignored,
        notes=tuple(notes),
    )


def _listing(title: str, errors: Any) -> str:
    lines = [str(e) for e in errors]
    return f"{title}: " + "; ".join(lines) if lines else title
