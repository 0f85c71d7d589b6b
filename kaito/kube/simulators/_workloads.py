"""StatefulSets and Deployments: the controllers that turn a pod template into pods.

Each is one stage per owner with no delay, run whenever the owner or one of its pods changes
(pods find their owner by the controller ownerReference, which the created pods carry, so the
emulator's garbage collector deletes them with the owner). A sync compares the pods that exist
with the pods that should, makes at most the changes the rollout rules allow, and writes the
owner's status only when it differs. Pod timing is left to the pod stages.

StatefulSet (`apps/v1`):
- pods `<name>-<ordinal>` with `statefulset.kubernetes.io/pod-name`,
  `apps.kubernetes.io/pod-index` and `controller-revision-hash` labels, hostname and subdomain;
- `OrderedReady` (default) creates one pod at a time, each once its predecessors are Running
  and Ready, and removes one at a time from the highest ordinal; `Parallel` does all at once;
- the revision is `<name>-<hash of the template>`; with the `RollingUpdate` strategy a changed
  template replaces pods from the highest ordinal down to the partition, one at a time, each
  only when all pods are ready; `OnDelete` leaves that to the user;
- Failed pods are deleted and created again;
- status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
  currentRevision, updateRevision, observedGeneration, collisionCount.

Deployment (`apps/v1`), without ReplicaSets: pods are `<name>-<pod-template-hash>-<suffix>`,
owned by the Deployment itself. `RollingUpdate` honours maxSurge and maxUnavailable (25% by
default, rounded as Kubernetes does); `Recreate` removes all old pods before creating new
ones. Status: replicas, updatedReplicas, readyReplicas, availableReplicas,
unavailableReplicas, observedGeneration and the Available and Progressing conditions.

Simplifications, on purpose: no ControllerRevision or ReplicaSet objects are written (each
would be one more write per rollout), pods below a StatefulSet's partition are re-created from
the current template, minReadySeconds counts as zero, and volumeClaimTemplates create no PVCs.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from typing import Any

from kaito.kube import DEPLOYMENT, JOB, POD, STATEFUL_SET, RawObject, ResourceKind
from kaito.kube.simulators._objects import (
    controller_of,
    covers,
    deleting,
    labels_of,
    meta,
    name_of,
    namespace_of,
    owner_reference,
    random_suffix,
    set_condition,
    spec_of,
    status_of,
    template_hash,
)
from kaito.kube.simulators._pods import phase_of, pod_ready
from kaito.kube.simulators._stages import Stage, StageContext
from kaito.kube.simulators._world import World

LABEL_POD_NAME = "statefulset.kubernetes.io/pod-name"
LABEL_POD_INDEX = "apps.kubernetes.io/pod-index"
LABEL_REVISION = "controller-revision-hash"
LABEL_TEMPLATE_HASH = "pod-template-hash"

_CONTROLLED: dict[tuple[str, str], ResourceKind] = {
    (k.api_version, k.kind): k for k in (STATEFUL_SET, DEPLOYMENT, JOB)
}


def _owner_uid(pod: RawObject) -> list[str]:
    ref = controller_of(pod)
    return [str(ref["uid"])] if ref and ref.get("uid") else []


class Owners:
    """Pods by their controlling owner, and owner syncs on every change of their pods."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.pods = world.informer(POD)
        self.pods.add_index("owner", _owner_uid)
        self.pods.add_handler(self._on_pod)

    def _on_pod(self, old: RawObject | None, new: RawObject | None) -> None:
        pod = new if new is not None else old
        assert pod is not None
        ref = controller_of(pod)
        if ref is None:
            return
        kind = _CONTROLLED.get((str(ref.get("apiVersion")), str(ref.get("kind"))))
        if kind is not None:
            self._world.engine.enqueue(kind, namespace_of(pod), str(ref.get("name", "")))

    def pods_of(self, owner: RawObject) -> list[RawObject]:
        return self.pods.by_index("owner", str(meta(owner).get("uid", "")))


def pod_from_template(
    owner: RawObject,
    name: str,
    *,
    labels: Mapping[str, str] | None = None,
    spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A pod for `owner` from its `spec.template`, owned by it as its controller."""
    template = spec_of(owner).get("template") or {}
    tmeta = template.get("metadata") or {}
    pod_meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace_of(owner) or "default",
        "labels": {**(tmeta.get("labels") or {}), **(labels or {})},
        "ownerReferences": [owner_reference(owner)],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    pod_spec = copy.deepcopy(template.get("spec") or {})
    pod_spec.update(spec or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": pod_spec}


async def write_status(
    ctx: StageContext, kind: ResourceKind, owner: RawObject, status: Mapping[str, Any]
) -> None:
    if not covers(status_of(owner), status):
        await ctx.patch_status(kind, owner, {"status": dict(status)})


def _alive(pod: RawObject) -> bool:
    return not deleting(pod) and phase_of(pod) not in ("Succeeded", "Failed")


# -- StatefulSet ------------------------------------------------------------------------------

_ORDINAL = re.compile(r"^(?P<base>.+)-(?P<ordinal>0|[1-9][0-9]*)$")


def _ordinal(sts: RawObject, pod: RawObject) -> int | None:
    match = _ORDINAL.match(name_of(pod))
    if match is None or match["base"] != name_of(sts):
        return None
    return int(match["ordinal"])


class StatefulSetController:
    def __init__(self, world: World, owners: Owners) -> None:
        self._world = world
        self._owners = owners
        world.informer(STATEFUL_SET).add_handler(lambda _old, new: world.enqueue(STATEFUL_SET, new))

    def stages(self) -> list[Stage]:
        return [Stage("statefulset-sync", STATEFUL_SET, self._sync, when=_not_deleting)]

    async def _sync(self, ctx: StageContext, kind: ResourceKind, sts: RawObject) -> None:
        spec = spec_of(sts)
        name = name_of(sts)
        replicas = int(spec.get("replicas", 1))
        revision = f"{name}-{template_hash(spec.get('template') or {})}"
        parallel = spec.get("podManagementPolicy") == "Parallel"
        strategy = spec.get("updateStrategy") or {}
        rolling = strategy.get("type", "RollingUpdate") == "RollingUpdate"
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)

        pods: dict[int, RawObject] = {}
        for pod in self._owners.pods_of(sts):
            ordinal = _ordinal(sts, pod)
            if ordinal is not None:
                pods[ordinal] = pod
        changed = False
        for _, pod in sorted(pods.items()):
            if phase_of(pod) == "Failed" and not deleting(pod):
                await ctx.delete(POD, pod)
                changed = True
        if not changed:
            changed = await self._create_missing(ctx, sts, pods, replicas, revision, parallel)
        if not changed:
            changed = await self._scale_down(ctx, pods, replicas, parallel)
        if not changed and rolling:
            await self._roll(ctx, pods, replicas, revision, partition)
        await self._write_status(ctx, kind, sts, revision)

    async def _create_missing(
        self,
        ctx: StageContext,
        sts: RawObject,
        pods: Mapping[int, RawObject],
        replicas: int,
        revision: str,
        parallel: bool,
    ) -> bool:
        created = False
        name = name_of(sts)
        for ordinal in range(replicas):
            pod = pods.get(ordinal)
            if pod is not None:
                if not parallel and not pod_ready(pod):
                    return created  # OrderedReady: wait for this one before the next
                continue
            pod_name = f"{name}-{ordinal}"
            labels = {
                LABEL_POD_NAME: pod_name,
                LABEL_POD_INDEX: str(ordinal),
                LABEL_REVISION: revision,
            }
            extra: dict[str, Any] = {"hostname": pod_name}
            if spec_of(sts).get("serviceName"):
                extra["subdomain"] = spec_of(sts)["serviceName"]
            if self._world.cached(POD, pod_name, namespace_of(sts)) is None:
                await ctx.create(POD, pod_from_template(sts, pod_name, labels=labels, spec=extra))
                created = True
            if not parallel:
                return created
        return created

    async def _scale_down(
        self, ctx: StageContext, pods: Mapping[int, RawObject], replicas: int, parallel: bool
    ) -> bool:
        extras = sorted((o for o in pods if o >= replicas), reverse=True)
        if not extras:
            return False
        if any(deleting(pods[o]) for o in extras) and not parallel:
            return True  # one at a time
        for ordinal in extras:
            if not deleting(pods[ordinal]):
                await ctx.delete(POD, pods[ordinal])
                if not parallel:
                    break
        return True

    async def _roll(
        self,
        ctx: StageContext,
        pods: Mapping[int, RawObject],
        replicas: int,
        revision: str,
        partition: int,
    ) -> None:
        members = [pods.get(o) for o in range(replicas)]
        if any(p is None or not pod_ready(p) for p in members):
            return  # replace one pod at a time, and only when the others serve
        for ordinal in range(replicas - 1, partition - 1, -1):
            pod = pods[ordinal]
            if labels_of(pod).get(LABEL_REVISION) != revision:
                await ctx.delete(POD, pod)
                return

    async def _write_status(
        self, ctx: StageContext, kind: ResourceKind, sts: RawObject, revision: str
    ) -> None:
        replicas = int(spec_of(sts).get("replicas", 1))
        pods = [p for p in self._owners.pods_of(sts) if _ordinal(sts, p) is not None]
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(1 for p in pods if labels_of(p).get(LABEL_REVISION) == revision)
        current = str(status_of(sts).get("currentRevision") or revision)
        if updated == replicas and len(pods) == replicas and ready == replicas:
            current = revision
        status = {
            "observedGeneration": int(meta(sts).get("generation") or 1),
            "replicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": sum(1 for p in pods if labels_of(p).get(LABEL_REVISION) == current),
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": revision,
            "collisionCount": 0,
        }
        await write_status(ctx, kind, sts, status)


def _not_deleting(obj: RawObject) -> bool:
    return not deleting(obj)


# -- Deployment -------------------------------------------------------------------------------


def _scaled(value: Any, replicas: int, *, round_up: bool) -> int:
    if value is None:
        value = "25%"
    if isinstance(value, str) and value.endswith("%"):
        fraction = float(value[:-1]) * replicas / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(value)


class DeploymentController:
    def __init__(self, world: World, owners: Owners) -> None:
        self._world = world
        self._owners = owners
        world.informer(DEPLOYMENT).add_handler(lambda _old, new: world.enqueue(DEPLOYMENT, new))

    def stages(self) -> list[Stage]:
        return [Stage("deployment-sync", DEPLOYMENT, self._sync, when=_not_deleting)]

    async def _create(self, ctx: StageContext, deploy: RawObject, pod_hash: str) -> None:
        for _ in range(10):
            name = f"{name_of(deploy)}-{pod_hash}-{random_suffix(self._world.rng)}"
            if self._world.cached(POD, name, namespace_of(deploy)) is None:
                pod = pod_from_template(deploy, name, labels={LABEL_TEMPLATE_HASH: pod_hash})
                await ctx.create(POD, pod)
                return

    async def _sync(self, ctx: StageContext, kind: ResourceKind, deploy: RawObject) -> None:
        spec = spec_of(deploy)
        replicas = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec.get("template") or {})
        strategy = spec.get("strategy") or {}
        owned = self._owners.pods_of(deploy)
        for pod in owned:
            if phase_of(pod) in ("Succeeded", "Failed") and not deleting(pod):
                await ctx.delete(POD, pod)
        pods = [p for p in owned if _alive(p)]
        new = [p for p in pods if labels_of(p).get(LABEL_TEMPLATE_HASH) == pod_hash]
        old = [p for p in pods if labels_of(p).get(LABEL_TEMPLATE_HASH) != pod_hash]

        if strategy.get("type") == "Recreate":
            if old:
                for pod in old:
                    await ctx.delete(POD, pod)
            elif not any(deleting(p) for p in owned):
                for _ in range(replicas - len(new)):
                    await self._create(ctx, deploy, pod_hash)
        else:
            rolling = strategy.get("rollingUpdate") or {}
            surge = _scaled(rolling.get("maxSurge"), replicas, round_up=True)
            unavailable = _scaled(rolling.get("maxUnavailable"), replicas, round_up=False)
            if surge == 0 and unavailable == 0:
                unavailable = 1
            room = replicas + surge - len(pods)
            for _ in range(max(0, min(replicas - len(new), room))):
                await self._create(ctx, deploy, pod_hash)
            # Old pods go unready ones first (they serve nobody), then ready ones while
            # enough pods stay available.
            available = sum(1 for p in pods if pod_ready(p))
            floor = replicas - unavailable
            for pod in sorted(old, key=pod_ready):
                if pod_ready(pod):
                    if available - 1 < floor:
                        break
                    available -= 1
                await ctx.delete(POD, pod)
        extra = len(new) - replicas
        if extra > 0:
            for pod in sorted(new, key=lambda p: (pod_ready(p), name_of(p)))[:extra]:
                await ctx.delete(POD, pod)
        await self._write_status(ctx, kind, deploy, pod_hash, replicas, strategy)

    async def _write_status(
        self,
        ctx: StageContext,
        kind: ResourceKind,
        deploy: RawObject,
        pod_hash: str,
        replicas: int,
        strategy: Mapping[str, Any],
    ) -> None:
        pods = [p for p in self._owners.pods_of(deploy) if _alive(p)]
        ready = sum(1 for p in pods if pod_ready(p))
        updated = sum(1 for p in pods if labels_of(p).get(LABEL_TEMPLATE_HASH) == pod_hash)
        if strategy.get("type") == "Recreate":
            unavailable = replicas
        else:
            rolling = strategy.get("rollingUpdate") or {}
            unavailable = _scaled(rolling.get("maxUnavailable"), replicas, round_up=False)
        now = ctx.timestamp()
        conds = [dict(c) for c in status_of(deploy).get("conditions") or ()]
        if ready >= replicas - unavailable:
            conds = set_condition(
                conds,
                "Available",
                "True",
                now,
                reason="MinimumReplicasAvailable",
                message="Deployment has minimum availability.",
                heartbeat="lastUpdateTime",
            )
        else:
            conds = set_condition(
                conds,
                "Available",
                "False",
                now,
                reason="MinimumReplicasUnavailable",
                message="Deployment does not have minimum availability.",
                heartbeat="lastUpdateTime",
            )
        complete = updated == replicas and len(pods) == replicas and ready == replicas
        conds = set_condition(
            conds,
            "Progressing",
            "True",
            now,
            reason="NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
            message=(
                f'Deployment "{name_of(deploy)}" has successfully progressed.'
                if complete
                else f'Deployment "{name_of(deploy)}" is progressing.'
            ),
            heartbeat="lastUpdateTime",
        )
        status = {
            "observedGeneration": int(meta(deploy).get("generation") or 1),
            "replicas": len(pods),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(replicas - ready, 0),
            "conditions": conds,
        }
        await write_status(ctx, kind, deploy, status)
