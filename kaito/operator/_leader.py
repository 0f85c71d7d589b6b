"""Leader election on a `coordination.k8s.io/v1` Lease, so that only one replica reconciles.

Several operator replicas may run for availability, but two of them reconciling the same
workspace would fight over its objects. They agree through one Lease object, following the
protocol of client-go's leader election (same fields, same meaning, so `kubectl get lease`
reads as for any controller):

- `spec.holderIdentity` names the leader, `leaseDurationSeconds` how long its claim lasts
  without renewal, `acquireTime`/`renewTime` when it was taken/last renewed, and
  `leaseTransitions` counts changes of leader.
- Every write is an update carrying the resourceVersion that was read, so when two replicas
  race, the API server accepts one and answers the other 409 Conflict (optimistic
  concurrency). No replica ever overwrites a claim it did not see.
- A replica takes over a lease held by someone else only after the claim has gone unrenewed for
  `leaseDurationSeconds` *as measured by its own monotonic clock* since it last saw the lease
  change; `renewTime` is not compared with the local wall clock, so clock skew between nodes
  cannot make two leaders.
- The leader renews every `retry_period` and gives up leadership if it has not managed to
  renew for `renew_deadline` (shorter than the lease duration), so it stops working before
  anyone else may start.
- On shutdown the leader releases the lease: it clears `holderIdentity` and sets a one-second
  duration, and a standby replica takes over on its next attempt instead of waiting for expiry.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kaito.kube import LEASE, AlreadyExists, Client, Conflict, KubeError, NotFound, RawObject
from kaito.operator._clock import Clock, SystemClock
from kaito.operator._logging import log
from kaito.operator._metrics import OperatorMetrics

_logger = logging.getLogger("kaito.operator.leader")


def micro_time(when: datetime) -> str:
    """A `metav1.MicroTime` as the API server writes it: RFC 3339 with microseconds, UTC."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires, renews and releases one Lease for one identity; see the module docstring."""

    def __init__(
        self,
        client: Client,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock: Clock = clock or SystemClock()
        self._metrics = metrics
        self._observed_version: str | None = None
        self._observed_at = 0.0
        self._observed_duration = 0.0
        self._last_renew: float | None = None
        self._leader = False

    @property
    def is_leader(self) -> bool:
        return self._leader

    def _set_leader(self, leader: bool) -> None:
        self._leader = leader
        if self._metrics is not None:
            self._metrics.leader.set(1 if leader else 0)

    def _spec(self, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        now = micro_time(self._clock.now())
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.lease_duration)),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        if previous is not None:
            transitions = int(previous.get("leaseTransitions") or 0)
            if previous.get("holderIdentity") == self.identity:
                spec["acquireTime"] = previous.get("acquireTime") or now
                spec["leaseTransitions"] = transitions
            else:
                spec["leaseTransitions"] = transitions + 1
        return spec

    def _observe(self, lease: Mapping[str, Any]) -> None:
        version = str((lease.get("metadata") or {}).get("resourceVersion") or "")
        if version != self._observed_version:
            spec = lease.get("spec") or {}
            self._observed_version = version
            self._observed_at = self._clock.monotonic()
            self._observed_duration = float(spec.get("leaseDurationSeconds") or 0)

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the lease. True when this identity holds it now.

        API errors (including conflicts with another replica) answer False; they are the
        normal outcome of a lost race.
        """
        try:
            lease = await self.client.get(LEASE, self.name, namespace=self.namespace)
        except NotFound:
            return await self._create()
        except KubeError as exc:
            log(_logger, logging.WARNING, "cannot read the lease", lease=self.name, error=str(exc))
            return False
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity:
            expires = self._observed_at + self._observed_duration
            if self._clock.monotonic() < expires:
                return False
        updated: RawObject = {
            **lease,
            "metadata": dict(lease.get("metadata") or {}),
            "spec": {**spec, **self._spec(spec)},
        }
        try:
            stored = await self.client.update(LEASE, updated, namespace=self.namespace)
        except (Conflict, NotFound):
            return False
        except KubeError as exc:
            log(
                _logger, logging.WARNING, "cannot update the lease", lease=self.name, error=str(exc)
            )
            return False
        self._observe(stored)
        if holder != self.identity:
            log(
                _logger,
                logging.INFO,
                "acquired the lease",
                lease=self.name,
                identity=self.identity,
                previous=holder or None,
            )
        return True

    async def _create(self) -> bool:
        lease = {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._spec(None),
        }
        try:
            stored = await self.client.create(LEASE, lease, namespace=self.namespace)
        except (AlreadyExists, Conflict):
            return False
        except KubeError as exc:
            log(
                _logger, logging.WARNING, "cannot create the lease", lease=self.name, error=str(exc)
            )
            return False
        self._observe(stored)
        log(_logger, logging.INFO, "acquired the lease", lease=self.name, identity=self.identity)
        return True

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Try every `retry_period` until this identity leads (True) or `stop` is set (False)."""
        while not stop.is_set():
            if await self.try_acquire_or_renew():
                self._last_renew = self._clock.monotonic()
                self._set_leader(True)
                return True
            await _sleep_or_stop(self._clock, self.retry_period, stop)
        return False

    async def hold(self, stop: asyncio.Event) -> bool:
        """Renew every `retry_period` until `stop` is set (True) or leadership is lost (False).

        Leadership is lost when another identity holds the lease, or when no renewal has
        succeeded for `renew_deadline`.
        """
        while not stop.is_set():
            await _sleep_or_stop(self._clock, self.retry_period, stop)
            if stop.is_set():
                break
            if await self.try_acquire_or_renew():
                self._last_renew = self._clock.monotonic()
                continue
            last = self._last_renew if self._last_renew is not None else 0.0
            taken = await self._held_by_other()
            if taken or self._clock.monotonic() - last >= self.renew_deadline:
                self._set_leader(False)
                log(
                    _logger,
                    logging.WARNING,
                    "lost the lease",
                    lease=self.name,
                    identity=self.identity,
                    reason="taken" if taken else "renew deadline",
                )
                return False
        return True

    async def _held_by_other(self) -> bool:
        try:
            lease = await self.client.get(LEASE, self.name, namespace=self.namespace)
        except KubeError:
            return False
        holder = (lease.get("spec") or {}).get("holderIdentity") or ""
        return bool(holder) and holder != self.identity

    async def release(self) -> bool:
        """Give the lease up if this identity holds it; True when it was released."""
        was_leader = self._leader
        self._set_leader(False)
        if not was_leader:
            return False
        try:
            lease = await self.client.get(LEASE, self.name, namespace=self.namespace)
        except KubeError as exc:
            log(
                _logger,
                logging.WARNING,
                "cannot read the lease to release it",
                lease=self.name,
                error=str(exc),
            )
            return False
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return False
        spec.pop("holderIdentity", None)
        spec["leaseDurationSeconds"] = 1
        spec["renewTime"] = micro_time(self._clock.now())
        try:
            await self.client.update(LEASE, {**lease, "spec": spec}, namespace=self.namespace)
        except KubeError as exc:
            log(
                _logger,
                logging.WARNING,
                "cannot release the lease",
                lease=self.name,
                error=str(exc),
            )
            return False
        log(_logger, logging.INFO, "released the lease", lease=self.name, identity=self.identity)
        return True


async def _sleep_or_stop(clock: Clock, seconds: float, stop: asyncio.Event) -> None:
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        stopper.cancel()
