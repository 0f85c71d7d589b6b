"""Karpenter NodeClaims (karpenter.sh/v1) and the Nodes they bring, as stages.

A NodeClaim goes the way Karpenter takes it, one stage per step, each after its delay:

    (finalizer)  karpenter.sh/termination is added, so that deletion waits for the node
    Launched     the "cloud instance" exists: providerID, capacity and allocatable (from the
                 instance-type table), instance-type/zone/capacity-type labels
    Registered   the Node object appears, named like the NodeClaim: the instance-type labels,
                 the NodeClaim's labels, `nvidia.com/gpu` capacity, the NodeClaim's taints and
                 startup taints; status.nodeName is set
    (Node Ready) the node's own stage: the kubelet reports Ready
    Initialized  once the Node is Ready: startup taints are removed; Ready follows at once, as
                 Karpenter's root condition is the conjunction of the three

Deleting a NodeClaim deletes its Node, and once the Node is gone removes the finalizer.

Failures are stages put in front of the normal ones: `insufficient_capacity` answers the launch
with `Launched=False, reason InsufficientCapacity`; `never_registers` holds a launched claim.

The GPU count of an instance type comes from the caller's table or, by default, from kaito's
SKU catalog (`kaito.presets.builtin_skus()`); an unknown type has no GPUs. The catalog has no
memory sizes, so a catalog type gets 8 GiB per vCPU.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Mapping
from typing import Any

import attrs

from kaito.kube import NODE, NODE_CLAIM, AlreadyExists, RawObject, ResourceKind
from kaito.kube.simulators._match import ALL, Match
from kaito.kube.simulators._objects import (
    condition,
    condition_status,
    deleting,
    is_true,
    labels_of,
    meta,
    name_of,
    owner_reference,
    quantity,
    set_condition,
    spec_of,
    status_of,
)
from kaito.kube.simulators._stages import Delay, Stage, StageContext
from kaito.kube.simulators._world import World
from kaito.presets import builtin_skus

TERMINATION_FINALIZER = "karpenter.sh/termination"
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
LABEL_NODEPOOL = "karpenter.sh/nodepool"
LABEL_ZONE = "topology.kubernetes.io/zone"
LABEL_HOSTNAME = "kubernetes.io/hostname"
LABEL_CAPACITY_TYPE = "karpenter.sh/capacity-type"
LABEL_REGISTERED = "karpenter.sh/registered"
LABEL_INITIALIZED = "karpenter.sh/initialized"
LABEL_OS = "kubernetes.io/os"
LABEL_ARCH = "kubernetes.io/arch"

NODE_NOT_READY_REASON = "KubeletNotReady"
"""The reason of a Ready=False condition that the node-ready stage turns True (what a
starting kubelet reports); nodes made NotReady for any other reason are left alone."""

INSUFFICIENT_CAPACITY = "InsufficientCapacity"
UNAVAILABLE_MESSAGE = "all requested instance types were unavailable during launch"


@attrs.frozen
class InstanceType:
    """What a node of one instance type offers."""

    gpus: int = 0
    cpu: str = "8"
    memory: str = "64Gi"
    pods: int = 110
    ephemeral_storage: str = "256Gi"

    def capacity(self) -> dict[str, str]:
        out = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            "ephemeral-storage": self.ephemeral_storage,
        }
        if self.gpus:
            out["nvidia.com/gpu"] = str(self.gpus)
        return out


def _from_catalog(name: str) -> InstanceType | None:
    sku = builtin_skus().get(name)
    if sku is None:
        return None
    vcpus = sku.vcpus or 8
    return InstanceType(gpus=sku.gpu_count, cpu=str(vcpus), memory=f"{8 * vcpus}Gi")


def builtin_instance_types() -> dict[str, InstanceType]:
    """Every instance type of kaito's SKU catalog (names and aliases), as the default table;
    merge your own entries into it to extend rather than replace it."""
    out: dict[str, InstanceType] = {}
    for sku in builtin_skus().values():
        found = _from_catalog(sku.name)
        assert found is not None
        for name in (sku.name, *sku.aliases):
            out[name] = found
    return out


class InstanceTypes:
    """Look-up of instance types: the caller's table, or the SKU catalog when there is none."""

    def __init__(self, table: Mapping[str, int | InstanceType] | None) -> None:
        self._table: dict[str, InstanceType] | None = None
        if table is not None:
            self._table = {
                name: value if isinstance(value, InstanceType) else InstanceType(gpus=int(value))
                for name, value in table.items()
            }
            self._folded = {name.lower(): value for name, value in self._table.items()}

    def get(self, name: str) -> InstanceType:
        if self._table is None:
            return _from_catalog(name) or InstanceType()
        return self._table.get(name) or self._folded.get(name.lower()) or InstanceType()


# -- reading a NodeClaim ----------------------------------------------------------------------


def _requirement_value(nodeclaim: RawObject, key: str) -> str | None:
    for req in spec_of(nodeclaim).get("requirements") or ():
        if isinstance(req, dict) and req.get("key") == key and req.get("operator") == "In":
            values = req.get("values") or []
            if values:
                return str(values[0])
    return None


def instance_type_of(nodeclaim: RawObject) -> str | None:
    """The first instance type the NodeClaim's requirements allow (else its label)."""
    return _requirement_value(nodeclaim, LABEL_INSTANCE_TYPE) or labels_of(nodeclaim).get(
        LABEL_INSTANCE_TYPE
    )


def _single_valued_requirements(nodeclaim: RawObject) -> dict[str, str]:
    # Karpenter labels a node with every requirement that pins a key to one value.
    out: dict[str, str] = {}
    for req in spec_of(nodeclaim).get("requirements") or ():
        if not isinstance(req, dict) or req.get("operator") != "In":
            continue
        values = req.get("values") or []
        if len(values) == 1:
            out[str(req.get("key"))] = str(values[0])
    return out


def _taint_key(taint: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(taint.get("key")), str(taint.get("value") or ""), str(taint.get("effect")))


# -- predicates (shared with the failure stages) ----------------------------------------------


def awaiting_launch(nodeclaim: RawObject) -> bool:
    return not deleting(nodeclaim) and condition(nodeclaim, "Launched") is None


def awaiting_registration(nodeclaim: RawObject) -> bool:
    return (
        not deleting(nodeclaim)
        and is_true(nodeclaim, "Launched")
        and condition_status(nodeclaim, "Registered") != "True"
    )


def _needs_finalizer(nodeclaim: RawObject) -> bool:
    return not deleting(nodeclaim) and TERMINATION_FINALIZER not in (
        meta(nodeclaim).get("finalizers") or ()
    )


def _terminating(nodeclaim: RawObject) -> bool:
    return deleting(nodeclaim) and TERMINATION_FINALIZER in (
        meta(nodeclaim).get("finalizers") or ()
    )


# -- the NodeClaim simulator ------------------------------------------------------------------


@attrs.frozen
class NodeClaimSettings:
    instance_types: InstanceTypes
    zone: str
    capacity_type: str
    provider_prefix: str
    launch: Delay
    register: Delay
    initialize: Delay
    terminate: Delay
    node_ready: Delay
    heartbeat: float | None


class NodeClaimSimulator:
    """Builds the NodeClaim and Node stages and the handlers that connect the two kinds."""

    def __init__(self, world: World, settings: NodeClaimSettings) -> None:
        self._world = world
        self._settings = settings
        self._addresses = itertools.count(1)
        nodeclaims = world.informer(NODE_CLAIM)
        nodeclaims.add_index("node", _nodeclaim_node)
        nodeclaims.add_handler(lambda _old, new: world.enqueue(NODE_CLAIM, new))
        nodes = world.informer(NODE)
        nodes.add_handler(self._on_node)
        self._nodeclaims = nodeclaims

    def _on_node(self, old: RawObject | None, new: RawObject | None) -> None:
        current = new if new is not None else old
        assert current is not None
        self._world.enqueue(NODE, new)
        for nodeclaim in self._nodeclaims.by_index("node", name_of(current)):
            self._world.enqueue(NODE_CLAIM, nodeclaim)

    # -- stages ---------------------------------------------------------------------------

    def nodeclaim_preamble(self) -> list[Stage]:
        s = self._settings
        return [
            Stage(
                "nodeclaim-terminate",
                NODE_CLAIM,
                self._terminate,
                when=_terminating,
                delay=s.terminate,
            ),
            Stage("nodeclaim-finalizer", NODE_CLAIM, self._add_finalizer, when=_needs_finalizer),
        ]

    def nodeclaim_lifecycle(self) -> list[Stage]:
        s = self._settings
        return [
            Stage(
                "nodeclaim-launch", NODE_CLAIM, self._launch, when=awaiting_launch, delay=s.launch
            ),
            Stage(
                "nodeclaim-register",
                NODE_CLAIM,
                self._register,
                when=awaiting_registration,
                delay=s.register,
            ),
            Stage(
                "nodeclaim-initialize",
                NODE_CLAIM,
                self._initialize,
                when=self._awaiting_initialization,
                delay=s.initialize,
            ),
        ]

    def node_lifecycle(self) -> list[Stage]:
        s = self._settings
        stages = [
            Stage("node-ready", NODE, self._node_ready, when=_node_starting, delay=s.node_ready),
        ]
        if s.heartbeat is not None:
            stages.append(
                Stage(
                    "node-heartbeat",
                    NODE,
                    _heartbeat,
                    when=_node_alive,
                    delay=s.heartbeat,
                    recurring=True,
                )
            )
        return stages

    # -- effects --------------------------------------------------------------------------

    async def _add_finalizer(self, ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
        await self._world.set_finalizer(kind, obj, TERMINATION_FINALIZER, True)

    def _node_of(self, nodeclaim: RawObject) -> RawObject | None:
        name = status_of(nodeclaim).get("nodeName") or name_of(nodeclaim)
        node = self._world.cached(NODE, str(name))
        if node is None:
            return None
        refs = meta(node).get("ownerReferences") or ()
        owned = any(r.get("uid") == meta(nodeclaim).get("uid") for r in refs)
        return node if owned or status_of(nodeclaim).get("nodeName") else None

    async def _terminate(self, ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
        node = self._node_of(obj)
        if node is not None:
            if not deleting(node):
                await ctx.delete(NODE, node)
            if self._node_of(obj) is not None:
                return  # the node's own finalizers hold it; its deletion brings us back
        await self._world.set_finalizer(kind, obj, TERMINATION_FINALIZER, False)

    def _capacity(self, nodeclaim: RawObject) -> dict[str, str]:
        itype = self._settings.instance_types.get(instance_type_of(nodeclaim) or "")
        capacity = itype.capacity()
        # The OS disk is sized to the claim's request, as the node classes of the clouds do.
        requests = (spec_of(nodeclaim).get("resources") or {}).get("requests") or {}
        disk = requests.get("ephemeral-storage")
        try:
            if disk is not None and quantity(disk) > quantity(capacity["ephemeral-storage"]):
                capacity["ephemeral-storage"] = str(disk)
        except ValueError:
            pass  # an unreadable request keeps the instance type's disk
        return capacity

    async def _launch(self, ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
        s = self._settings
        labels = labels_of(obj)
        wanted = {
            LABEL_INSTANCE_TYPE: instance_type_of(obj),
            LABEL_ZONE: _requirement_value(obj, LABEL_ZONE) or s.zone,
            LABEL_CAPACITY_TYPE: _requirement_value(obj, LABEL_CAPACITY_TYPE) or s.capacity_type,
        }
        missing = {k: v for k, v in wanted.items() if v is not None and k not in labels}
        current = obj
        if missing:
            patched = await ctx.patch(kind, obj, {"metadata": {"labels": missing}})
            if patched is None:
                return
            current = patched
        capacity = self._capacity(current)
        now = ctx.timestamp()
        await ctx.patch_status(
            kind,
            current,
            {
                "status": {
                    "providerID": f"{s.provider_prefix}{name_of(current)}",
                    "imageID": "kaito-simulated-image",
                    "capacity": capacity,
                    "allocatable": dict(capacity),
                    "conditions": set_condition(
                        _conditions(current),
                        "Launched",
                        "True",
                        now,
                        reason="Launched",
                        message="",
                    ),
                }
            },
        )

    def _node_labels(self, nodeclaim: RawObject) -> dict[str, str]:
        s = self._settings
        labels = {LABEL_OS: "linux", LABEL_ARCH: "amd64"}
        labels.update(_single_valued_requirements(nodeclaim))
        labels.update(labels_of(nodeclaim))
        itype = instance_type_of(nodeclaim)
        if itype is not None:
            labels[LABEL_INSTANCE_TYPE] = itype
        labels.setdefault(LABEL_ZONE, s.zone)
        labels.setdefault(LABEL_CAPACITY_TYPE, s.capacity_type)
        labels[LABEL_HOSTNAME] = name_of(nodeclaim)
        labels[LABEL_REGISTERED] = "true"
        return labels

    async def _register(self, ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
        name = name_of(obj)
        spec = spec_of(obj)
        status = status_of(obj)
        capacity = dict(status.get("capacity") or self._capacity(obj))
        taints = [dict(t) for t in spec.get("taints") or ()]
        taints += [dict(t) for t in spec.get("startupTaints") or ()]
        now = ctx.timestamp()
        node: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": self._node_labels(obj),
                "ownerReferences": [owner_reference(obj, controller=False)],
            },
            "spec": {
                "providerID": status.get("providerID") or f"{self._settings.provider_prefix}{name}"
            },
            "status": {
                "capacity": capacity,
                "allocatable": dict(status.get("allocatable") or capacity),
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": NODE_NOT_READY_REASON,
                        "message": "container runtime is starting",
                        "lastTransitionTime": now,
                        "lastHeartbeatTime": now,
                    },
                ],
                "addresses": [
                    {"type": "InternalIP", "address": self._next_address()},
                    {"type": "Hostname", "address": name},
                ],
                "nodeInfo": {
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "kubeletVersion": "v1.31.0",
                    "containerRuntimeVersion": "simulated",
                },
            },
        }
        if taints:
            node["spec"]["taints"] = taints
        if self._world.cached(NODE, name) is None:
            with contextlib.suppress(AlreadyExists):
                # AlreadyExists: registered by an earlier attempt whose answer was lost.
                await ctx.create(NODE, node)
        await ctx.patch_status(
            kind,
            obj,
            {
                "status": {
                    "nodeName": name,
                    "conditions": set_condition(
                        _conditions(obj),
                        "Registered",
                        "True",
                        now,
                        reason="Registered",
                        message="",
                    ),
                }
            },
        )

    def _next_address(self) -> str:
        n = next(self._addresses)
        return f"10.240.{(n // 250) % 250}.{n % 250 + 1}"

    def _awaiting_initialization(self, nodeclaim: RawObject) -> bool:
        if deleting(nodeclaim) or not is_true(nodeclaim, "Registered"):
            return False
        if is_true(nodeclaim, "Initialized") and is_true(nodeclaim, "Ready"):
            return False
        node = self._node_of(nodeclaim)
        return node is not None and is_true(node, "Ready")

    async def _initialize(self, ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
        node = self._node_of(obj)
        if node is None:
            return
        startup = {_taint_key(t) for t in spec_of(obj).get("startupTaints") or ()}
        taints = [t for t in spec_of(node).get("taints") or () if _taint_key(t) not in startup]
        node_patch: dict[str, Any] = {}
        if len(taints) != len(spec_of(node).get("taints") or ()):
            node_patch["spec"] = {"taints": taints or None}
        if labels_of(node).get(LABEL_INITIALIZED) != "true":
            node_patch["metadata"] = {"labels": {LABEL_INITIALIZED: "true"}}
        if node_patch:
            await ctx.patch(NODE, node, node_patch)
        now = ctx.timestamp()
        conds = set_condition(
            _conditions(obj), "Initialized", "True", now, reason="Initialized", message=""
        )
        conds = set_condition(conds, "Ready", "True", now, reason="Ready", message="")
        await ctx.patch_status(kind, obj, {"status": {"conditions": conds}})

    async def _node_ready(self, ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
        now = ctx.timestamp()
        conds = _conditions(obj)
        for ctype, reason, message in (
            ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
            ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ):
            conds = set_condition(
                conds,
                ctype,
                "False",
                now,
                reason=reason,
                message=message,
                heartbeat="lastHeartbeatTime",
            )
        conds = set_condition(
            conds,
            "Ready",
            "True",
            now,
            reason="KubeletReady",
            message="kubelet is posting ready status",
            heartbeat="lastHeartbeatTime",
        )
        patch: dict[str, Any] = {"conditions": conds}
        if not status_of(obj).get("addresses"):
            patch["addresses"] = [
                {"type": "InternalIP", "address": self._next_address()},
                {"type": "Hostname", "address": name_of(obj)},
            ]
        await ctx.patch_status(kind, obj, {"status": patch})


def _conditions(obj: RawObject) -> list[dict[str, Any]]:
    found = status_of(obj).get("conditions")
    return [dict(c) for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def _nodeclaim_node(nodeclaim: RawObject) -> list[str]:
    # A NodeClaim's node is named by status.nodeName, and by default like the claim itself.
    names = {name_of(nodeclaim)}
    node_name = status_of(nodeclaim).get("nodeName")
    if node_name:
        names.add(str(node_name))
    return sorted(names)


def _node_starting(node: RawObject) -> bool:
    if deleting(node):
        return False
    ready = condition(node, "Ready")
    return ready is None or (
        ready.get("status") != "True" and ready.get("reason") == NODE_NOT_READY_REASON
    )


def _node_alive(node: RawObject) -> bool:
    return not deleting(node) and is_true(node, "Ready")


async def _heartbeat(ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
    now = ctx.timestamp()
    conds = [{**c, "lastHeartbeatTime": now} for c in _conditions(obj)]
    await ctx.patch_status(kind, obj, {"status": {"conditions": conds}})


# -- failures ---------------------------------------------------------------------------------


def insufficient_capacity(match: Match = ALL, *, delay: Delay | float = 0.05) -> Stage:
    """NodeClaims selected by `match` fail to launch: `Launched=False`, reason
    InsufficientCapacity, a message naming the instance type. They stay that way."""

    async def fail(ctx: StageContext, kind: ResourceKind, obj: RawObject) -> None:
        itype = instance_type_of(obj) or "(none)"
        message = f"insufficient capacity for instance type {itype}: {UNAVAILABLE_MESSAGE}"
        now = ctx.timestamp()
        conds = set_condition(
            _conditions(obj),
            "Launched",
            "False",
            now,
            reason=INSUFFICIENT_CAPACITY,
            message=message,
        )
        await ctx.patch_status(kind, obj, {"status": {"conditions": conds}})

    return Stage(
        "nodeclaim-insufficient-capacity",
        NODE_CLAIM,
        fail,
        match=match,
        when=awaiting_launch,
        delay=delay,
    )


def never_registers(match: Match = ALL) -> Stage:
    """NodeClaims selected by `match` launch but never register: no Node appears and they stay
    `Launched=True` with no Registered condition."""
    return Stage(
        "nodeclaim-never-registers", NODE_CLAIM, None, match=match, when=awaiting_registration
    )
