"""How lists and maps of each kind merge: the facts strategic merge patch and server-side apply
need.

The real server takes these from Go struct tags (`patchStrategy`, `patchMergeKey`) and from the
OpenAPI extensions (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`). The emulator does
not carry whole OpenAPI documents; it keeps a `Shape` tree with just the merge facts for the
parts of the built-in kinds that controllers write (pod specs and templates, container lists,
conditions, finalizers, owner references, service ports), and builds the same tree from a CRD's
schema. Anything not described is treated as upstream treats an unknown field: maps merge key by
key, lists are atomic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class Shape:
    """Merge facts of one node of an object.

    `list_type` is "atomic", "map" (items identified by `keys`) or "set" for lists; `merge_key`
    is the strategic-merge-patch key (it may differ from the apply keys: container ports merge
    on containerPort for SMP but on (containerPort, protocol) for apply); `merge_primitives`
    marks lists of scalars that SMP unions (`finalizers`).
    """

    fields: Mapping[str, Shape] = attrs.field(factory=dict)
    elem: Shape | None = None
    list_type: str = "atomic"
    keys: tuple[str, ...] = ()
    merge_key: str | None = None
    merge_primitives: bool = False
    atomic_map: bool = False
    retain_keys: bool = False

    def child(self, name: str) -> Shape:
        """The shape of a map entry or struct field."""
        found = self.fields.get(name)
        if found is not None:
            return found
        return self.elem if self.elem is not None and not self.fields else ANY

    def item(self) -> Shape:
        return self.elem if self.elem is not None else ANY


ANY = Shape()


def _struct(**fields: Shape) -> Shape:
    return Shape(fields=fields)


def _keyed(
    item: Shape = ANY, *keys: str, merge_key: str | None = None, retain: bool = False
) -> Shape:
    return Shape(
        elem=item, list_type="map", keys=keys, merge_key=merge_key or keys[0], retain_keys=retain
    )


def _set(smp_merge: bool = True) -> Shape:
    return Shape(list_type="set", merge_primitives=smp_merge)


CONDITIONS = _keyed(ANY, "type")

OBJECT_META = _struct(
    finalizers=_set(),
    ownerReferences=_keyed(ANY, "uid"),
    labels=Shape(elem=ANY),
    annotations=Shape(elem=ANY),
)

CONTAINER = _struct(
    ports=_keyed(ANY, "containerPort", "protocol", merge_key="containerPort"),
    env=_keyed(ANY, "name"),
    volumeMounts=_keyed(ANY, "mountPath"),
    volumeDevices=_keyed(ANY, "devicePath"),
    resizePolicy=Shape(),
)

POD_SPEC = _struct(
    containers=_keyed(CONTAINER, "name"),
    initContainers=_keyed(CONTAINER, "name"),
    ephemeralContainers=_keyed(CONTAINER, "name"),
    volumes=_keyed(ANY, "name", retain=True),
    imagePullSecrets=_keyed(ANY, "name"),
    hostAliases=_keyed(ANY, "ip"),
    topologySpreadConstraints=_keyed(
        ANY, "topologyKey", "whenUnsatisfiable", merge_key="topologyKey"
    ),
    resourceClaims=_keyed(ANY, "name", retain=True),
    schedulingGates=_keyed(ANY, "name"),
)

POD_TEMPLATE = _struct(metadata=OBJECT_META, spec=POD_SPEC)

POD_STATUS = _struct(
    conditions=CONDITIONS,
    podIPs=_keyed(ANY, "ip"),
    hostIPs=_keyed(ANY, "ip"),
)

_STATUS_WITH_CONDITIONS = _struct(conditions=CONDITIONS)


def _top(spec: Shape = ANY, status: Shape = _STATUS_WITH_CONDITIONS) -> Shape:
    return _struct(metadata=OBJECT_META, spec=spec, status=status)


_WORKLOAD = _top(_struct(template=POD_TEMPLATE))

BUILTIN_SHAPES: dict[tuple[str, str], Shape] = {
    ("", "pods"): _top(POD_SPEC, POD_STATUS),
    ("", "services"): _top(
        _struct(ports=_keyed(ANY, "port", "protocol", merge_key="port")),
        _struct(conditions=CONDITIONS),
    ),
    ("", "nodes"): _top(
        _struct(podCIDRs=_set()),
        _struct(conditions=CONDITIONS, addresses=_keyed(ANY, "type")),
    ),
    ("", "namespaces"): _top(),
    ("", "persistentvolumeclaims"): _top(),
    ("apps", "deployments"): _WORKLOAD,
    ("apps", "statefulsets"): _WORKLOAD,
    ("apps", "replicasets"): _WORKLOAD,
    ("batch", "jobs"): _WORKLOAD,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _top(),
}


def builtin_shape(group: str, plural: str) -> Shape:
    """The merge facts of a built-in resource; unknown ones still know their metadata."""
    return BUILTIN_SHAPES.get((group, plural), _struct(metadata=OBJECT_META))


def shape_from_schema(schema: Mapping[str, Any] | None, *, top: bool = True) -> Shape:
    """The merge facts a CRD's openAPIV3Schema declares (lists are atomic unless declared)."""
    schema = schema or {}
    fields: dict[str, Shape] = {}
    if top:
        fields["metadata"] = OBJECT_META
    for name, sub in (schema.get("properties") or {}).items():
        if top and name == "metadata":
            continue
        fields[name] = shape_from_schema(sub, top=False)
    if schema.get("type") == "array":
        item = shape_from_schema(schema.get("items"), top=False)
        list_type = str(schema.get("x-kubernetes-list-type") or "atomic")
        keys = tuple(str(k) for k in schema.get("x-kubernetes-list-map-keys") or ())
        if list_type == "map" and keys:
            return Shape(elem=item, list_type="map", keys=keys, merge_key=keys[0])
        if list_type == "set":
            return Shape(elem=item, list_type="set")
        return Shape(elem=item)
    additional = schema.get("additionalProperties")
    elem = shape_from_schema(additional, top=False) if isinstance(additional, dict) else None
    atomic = schema.get("x-kubernetes-map-type") == "atomic"
    return Shape(fields=fields, elem=elem, atomic_map=atomic)
