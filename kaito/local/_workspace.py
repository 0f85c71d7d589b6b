"""A workspace file, made ready for this machine (pure: no I/O).

The local mode accepts the same workspace documents as a cluster (the seed's v1alpha1 YAML
loads unchanged), with one difference it says out loud: `resource.instanceType` names a cloud
machine, and here the machine is this one. The field is removed before the workspace is
created (the original is kept in the annotation `kaito.sh/local-ignored-instance-type`), the
reconciler runs without node auto-provisioning, and the model is sized against what the local
provisioner reports this machine offers. Everything else (labelSelector, preset, adapters,
config, template) is used as written.

Tuning workspaces run too: the tuning Job's pod is a process here like any other (the data is
downloaded, the adapter written to the output volume or pushed to the output image), and the
run reports WorkspaceSucceeded when the Job completes. The volumes kaito mounts for a workspace
(tuning input and output, volume adapters) must be hostPath directories: the local kubelet has
no storage driver, and anything else would be an empty directory that vanishes with the run.

A workspace rarely comes alone: a push secret for the tuning output, a pull secret for an image
adapter, a tuning config, a model-access token. On a cluster they are created before the
workspace; the local mode's API server starts with `kaito up`, so the file given to it may hold
them as further YAML documents (ConfigMaps and Secrets of `v1`, in the workspace's namespace),
and they are created before the workspace.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from kaito.api import Workspace, WorkspaceInvalid, validate_create
from kaito.api._constants import COMPANION_KINDS
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
    objects: tuple[Mapping[str, Any], ...] = ()
    """ConfigMaps and Secrets to create (in order) before the workspace."""

    @property
    def tuning(self) -> bool:
        """Whether this is a tuning workspace (it succeeds, rather than serves)."""
        return self.document.get("tuning") is not None

    @property
    def output(self) -> str | None:
        """Where a tuning workspace's adapter goes: the output image, else the output
        directory of this machine (a hostPath volume), else None."""
        output = (self.document.get("tuning") or {}).get("output") or {}
        if output.get("image"):
            return str(output["image"])
        host_path = (output.get("volumeSource") or {}).get("hostPath") or {}
        return str(host_path["path"]) if host_path.get("path") else None


def prepare_documents(
    documents: Sequence[Mapping[str, Any]], registry: Registry, *, default_runtime: str = "hf"
) -> LocalWorkspace:
    """The workspace of a multi-document file with the ConfigMaps and Secrets beside it (see
    the module docstring). Raises `LocalModeError` naming the document that is wrong."""
    workspaces = [i for i, d in enumerate(documents) if d.get("kind") == "Workspace"]
    if len(workspaces) != 1:
        found = "no Workspace" if not workspaces else f"{len(workspaces)} Workspaces"
        raise LocalModeError(f"the file must hold exactly one Workspace, it holds {found}")
    index = workspaces[0]
    workspace = prepare_workspace(documents[index], registry, default_runtime=default_runtime)
    objects: list[Mapping[str, Any]] = []
    for number, doc in enumerate(documents, 1):
        if number - 1 == index:
            continue
        objects.append(_companion(doc, number, workspace.namespace))
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    for kind, name in dict.fromkeys(names):
        if names.count((kind, name)) > 1:
            raise LocalModeError(f"the file holds {kind} {name} more than once")
    return attrs.evolve(workspace, objects=tuple(objects))


def _companion(document: Mapping[str, Any], number: int, namespace: str) -> dict[str, Any]:
    where = f"document {number}"
    kind = document.get("kind")
    if (document.get("apiVersion"), kind) not in COMPANION_KINDS:
        raise LocalModeError(
            f"{where}: kind {kind!r} ({document.get('apiVersion')}) cannot go with the workspace; "
            "the file may hold one Workspace and v1 ConfigMaps and Secrets"
        )
    data = dict(document)
    raw_meta = data.get("metadata") or {}
    if not isinstance(raw_meta, Mapping):
        raise LocalModeError(f"{where}: {kind} metadata must be a mapping")
    meta = dict(raw_meta)
    name = meta.get("name")
    if not name or not isinstance(name, str):
        raise LocalModeError(f"{where}: {kind} needs metadata.name (a string)")
    given = meta.get("namespace")
    if given and given != namespace:
        raise LocalModeError(
            f"{where}: {kind} {name} is in namespace {given}; the workspace, which "
            f"refers to it, is in {namespace}"
        )
    meta["namespace"] = namespace
    data["metadata"] = meta
    # What each kind holds: a Secret data (base64) and stringData (plain text, folded into
    # data by the API server), a ConfigMap data only (binaryData is not read in local mode).
    fields = ("data", "stringData") if kind == "Secret" else ("data",)
    for field in ("data", "stringData", "binaryData"):
        value = data.get(field)
        if value is None:
            continue
        if field not in fields:
            raise LocalModeError(
                f"{where}: {kind} {name}: {field} is not supported here; use "
                + ("data or stringData" if kind == "Secret" else "data")
            )
        if not (isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values())):
            raise LocalModeError(f"{where}: {kind} {name}: {field} must map keys to strings")
        if kind == "Secret" and field == "data":
            for key, text in value.items():
                try:
                    base64.b64decode(text, validate=True)
                except binascii.Error:
                    raise LocalModeError(
                        f"{where}: Secret {name}: data.{key} is not base64; put plain text "
                        "under stringData"
                    ) from None
    return data


def prepare_workspace(
    document: Mapping[str, Any], registry: Registry, *, default_runtime: str = "hf"
) -> LocalWorkspace:
    """Check a workspace document and adapt it to the local mode (see the module docstring).
    Raises `LocalModeError` with every problem found."""
    try:
        workspace = Workspace.from_dict(dict(document))
    except WorkspaceInvalid as exc:
        raise LocalModeError(_listing("the workspace is invalid", exc.errors)) from None
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
    errors = validate_create(
        local, presets=registry.presets, auto_provisioning=False, private_data_urls=True
    )
    problems = [*map(str, errors), *_volume_problems(data)]
    if problems:
        raise LocalModeError(_listing("the workspace cannot run locally", problems))
    preset: Preset | None = None
    spec = local.inference.preset if local.inference is not None else None
    if local.tuning is not None:
        spec = local.tuning.preset
    if spec is not None:
        preset = registry.presets.get(spec.name)
    runtime = (meta.get("annotations") or {}).get(RUNTIME_ANNOTATION) or default_runtime
    if preset is not None and preset.generated:
        what = (
            "it trains and its adapter is real, but the text it learns to continue is noise"
            if local.tuning is not None
            else "it answers, but its text is meaningless"
        )
        notes.append(f"preset {preset.name} is a tiny model with random weights: {what}")
    return LocalWorkspace(
        document=data,
        name=str(meta["name"]),
        namespace=str(meta["namespace"]),
        preset=preset,
        runtime=str(runtime),
        ignored_instance_type=ignored,
        notes=tuple(notes),
    )


def _volume_problems(data: Mapping[str, Any]) -> list[str]:
    """The volumes kaito mounts for the workspace must be directories of this machine: the
    local kubelet has no storage driver, and an emptyDir output would vanish with the run."""
    sources: list[tuple[str, Any]] = []
    tuning = data.get("tuning") or {}
    for field in ("input", "output"):
        sources.append(
            (f"tuning.{field}.volumeSource", (tuning.get(field) or {}).get("volumeSource"))
        )
    for index, adapter in enumerate((data.get("inference") or {}).get("adapters") or []):
        source = adapter.get("source") if isinstance(adapter, Mapping) else None
        if isinstance(source, Mapping):
            sources.append(
                (f"inference.adapters[{index}].source.volumeSource", source.get("volumeSource"))
            )
    problems: list[str] = []
    for path, volume in sources:
        if volume is None:
            continue
        host_path = volume.get("hostPath") if isinstance(volume, Mapping) else None
        where = str(host_path.get("path") or "") if isinstance(host_path, Mapping) else ""
        if not where.startswith("/"):
            problems.append(
                f"{path}: the local mode mounts hostPath volumes only (an absolute directory "
                "of this machine, e.g. hostPath: {path: /data/adapter})"
            )
    return problems


def _listing(title: str, errors: Any) -> str:
    lines = [str(e) for e in errors]
    return f"{title}: " + "; ".join(lines) if lines else title
