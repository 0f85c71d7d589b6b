"""The thin step that makes the cluster match the desired objects, writing only on change.

Each desired object gets a `workspace.kaito.io/spec-hash` annotation: a hash of the object as
kaito wants it. An existing object is left alone when it carries the same hash *and* still
contains every field kaito wants with kaito's values (someone may have edited it since); the
live object may hold more (server defaults, fields other controllers own) without that counting
as a difference. Anything else is written with server-side apply under the field manager
`kaito`, forced, which creates a missing object, takes back fields someone changed, and drops
the fields kaito set before but no longer wants, in one request. A converged workspace therefore
costs reads only.

Objects of the same name that kaito does not control (no controller ownerReference to this
workspace) are never overwritten or deleted: that is a `ForeignObject`, reported on the
workspace for the user to resolve.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kaito.kube import Client, NotFound, PatchType, PropagationPolicy, RawObject, ResourceKind
from kaito.reconcile._constants import FIELD_MANAGER, SPEC_HASH_ANNOTATION
from kaito.reconcile._desired import short_hash


class ForeignObject(Exception):
    """An object with the name kaito needs exists and belongs to something else."""

    def __init__(self, kind: ResourceKind, namespace: str, name: str) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        super().__init__(
            f"a {kind.kind} named {name} already exists in namespace {namespace} and does not "
            "belong to this workspace; delete or rename it"
        )


def with_spec_hash(desired: Mapping[str, Any]) -> RawObject:
    """A copy of `desired` annotated with the hash of itself (without that annotation)."""
    obj = copy.deepcopy(dict(desired))
    meta = obj.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    annotations.pop(SPEC_HASH_ANNOTATION, None)
    meta["annotations"] = annotations
    if not annotations:
        meta.pop("annotations")
    digest = short_hash(obj, 16)
    meta["annotations"] = {**annotations, SPEC_HASH_ANNOTATION: digest}
    return obj


def contains(live: Any, wanted: Any) -> bool:
    """Whether `live` holds everything in `wanted`: maps may have more keys, lists must have
    the same length and match item by item, scalars must be equal. An empty list or map that
    is wanted matches an absent one (API servers drop empty collections)."""
    if isinstance(wanted, Mapping):
        if not isinstance(live, Mapping):
            return not wanted and live is None
        return all(
            contains(live.get(key), value)
            if key in live
            else (isinstance(value, list | dict) and not value)
            for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        if live is None:
            return not wanted
        if not isinstance(live, list) or len(live) != len(wanted):
            return False
        return all(contains(a, b) for a, b in zip(live, wanted, strict=True))
    return bool(live == wanted)


def up_to_date(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether the live object already is what kaito wants (`desired` carries its hash)."""
    live_hash = ((live.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    want_hash = ((desired.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    if live_hash != want_hash:
        return False
    body = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "status")}
    return contains(live, body)


def controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    """Whether the object's controller ownerReference points at the owner with this uid."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("uid") == owner_uid:
            return True
    return False


def _is_terminating(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


async def get_or_none(
    client: Client, kind: ResourceKind, name: str, namespace: str | None = None
) -> RawObject | None:
    try:
        return await client.get(kind, name, namespace=namespace)
    except NotFound:
        return None


async def apply(
    client: Client,
    kind: ResourceKind,
    desired: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    *,
    owner_uid: str,
) -> RawObject:
    """Make the object match `desired` (which `with_spec_hash` has annotated); return it as it
    now is. No request is sent when it already matches."""
    meta = desired.get("metadata") or {}
    name, namespace = str(meta.get("name", "")), meta.get("namespace")
    if live is not None:
        if not controlled_by(live, owner_uid):
            raise ForeignObject(kind, str(namespace or ""), name)
        if up_to_date(live, desired) or _is_terminating(live):
            return dict(live)
    return await client.patch(
        kind,
        name,
        desired,
        namespace=namespace,
        patch_type=PatchType.APPLY,
        field_manager=FIELD_MANAGER,
        force=True,
    )


async def remove(
    client: Client, kind: ResourceKind, name: str, namespace: str, *, owner_uid: str
) -> bool:
    """Delete the workspace's child if it exists and is the workspace's; True when it is gone
    (or was never there, or is not the workspace's to delete)."""
    live = await get_or_none(client, kind, name, namespace)
    if live is None or not controlled_by(live, owner_uid):
        return True
    if _is_terminating(live):
        return False
    try:
        result = await client.delete(
            kind, name, namespace=namespace, propagation_policy=PropagationPolicy.BACKGROUND
        )
    except NotFound:
        return True
    return result.gone
