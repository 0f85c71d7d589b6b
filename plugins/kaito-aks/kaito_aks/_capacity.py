"""Before creating a pool: is the VM size offered here, and is there vCPU quota for it?

An agent pool PUT that AKS cannot fulfil is accepted at once and fails minutes later with an
allocation or quota error, after the user has watched "Creating" for a while. Two cheap reads of
Microsoft.Compute answer the same question up front, with a message a user can act on:

- `resource_skus.list` (filtered by location) says whether the VM size exists in the region,
  in which zones, and whether the subscription is barred from it: a restriction of type
  `Location` bars the whole region, one of type `Zone` bars the listed zones; the reason code is
  usually `NotAvailableForSubscription` (the region or size needs an access request) or
  `QuotaId` (the offer type excludes it).
- `usage.list` gives, per quota family (`standardNCSv3Family`, ...), the vCPUs in use and the
  limit. The pool needs vCPUs-per-VM x nodes of its family's quota and of the regional total
  (`cores`).

Both functions work on ARM JSON and do no I/O. A family missing from the usages is not treated
as exhausted: ARM omits families it tracks no quota for, and guessing "no" would block pools
that would have worked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs

from kaito_aks._config import normalize_location

REASON_SKU_NOT_AVAILABLE: Final = "SkuNotAvailable"
REASON_QUOTA_EXCEEDED: Final = "QuotaExceeded"

REGIONAL_CORES: Final = "cores"
"""The usage name of the regional total of vCPUs, across families."""


@attrs.frozen
class VmSize:
    """A VM size as offered in one region."""

    name: str
    family: str
    vcpus: int
    zones: tuple[str, ...]


@attrs.frozen
class CapacityProblem:
    """Why a pool cannot be created; `reason` is SkuNotAvailable or QuotaExceeded."""

    reason: str
    message: str


def _vcpus(capabilities: Iterable[Mapping[str, Any]]) -> int:
    for cap in capabilities:
        if cap.get("name") == "vCPUs":
            try:
                return int(str(cap.get("value")))
            except ValueError:
                return 0
    return 0


def _zones_text(zones: Iterable[str]) -> str:
    return ", ".join(sorted(zones)) or "none"


def check_vm_size(
    skus: Iterable[Mapping[str, Any]],
    vm_size: str,
    location: str,
    zones: Sequence[str] = (),
) -> VmSize | CapacityProblem:
    """The VM size as offered in `location` (and every zone of `zones`), or why it is not.

    `skus` are the entries of Microsoft.Compute `resourceSkus` for the location.
    """
    region = normalize_location(location)
    wanted = vm_size.lower()
    entry: Mapping[str, Any] | None = None
    for sku in skus:
        if str(sku.get("resourceType") or "").lower() != "virtualmachines":
            continue
        if str(sku.get("name") or "").lower() != wanted:
            continue
        locations = {normalize_location(str(loc)) for loc in sku.get("locations") or ()}
        if locations and region not in locations:
            continue
        entry = sku
        break
    if entry is None:
        return CapacityProblem(
            REASON_SKU_NOT_AVAILABLE, f"VM size {vm_size} is not offered in region {region}"
        )

    offered: set[str] = set()
    for info in entry.get("locationInfo") or ():
        if normalize_location(str(info.get("location") or region)) == region:
            offered.update(str(z) for z in info.get("zones") or ())

    for restriction in entry.get("restrictions") or ():
        kind = restriction.get("type")
        code = restriction.get("reasonCode") or "restricted"
        info = restriction.get("restrictionInfo") or {}
        if kind == "Location":
            places = {normalize_location(str(v)) for v in restriction.get("values") or ()}
            places |= {normalize_location(str(v)) for v in info.get("locations") or ()}
            if not places or region in places:
                return CapacityProblem(
                    REASON_SKU_NOT_AVAILABLE,
                    f"VM size {vm_size} is not available in region {region} for this "
                    f"subscription ({code})",
                )
        elif kind == "Zone" and zones:
            barred = {str(z) for z in info.get("zones") or ()} & set(zones)
            if barred:
                return CapacityProblem(
                    REASON_SKU_NOT_AVAILABLE,
                    f"VM size {vm_size} is not available in zone(s) {_zones_text(barred)} of "
                    f"region {region} for this subscription ({code})",
                )

    if zones:
        missing = set(zones) - offered
        if missing:
            return CapacityProblem(
                REASON_SKU_NOT_AVAILABLE,
                f"VM size {vm_size} is not offered in zone(s) {_zones_text(missing)} of region "
                f"{region} (offered in: {_zones_text(offered)})",
            )

    return VmSize(
        name=str(entry.get("name") or vm_size),
        family=str(entry.get("family") or ""),
        vcpus=_vcpus(entry.get("capabilities") or ()),
        zones=tuple(sorted(offered)),
    )


def check_quota(
    usages: Iterable[Mapping[str, Any]],
    size: VmSize,
    nodes: int,
    location: str,
) -> CapacityProblem | None:
    """None when the region's quota has room for `nodes` more VMs of `size`, else why not.

    `usages` are the entries of Microsoft.Compute `usages` for the location.
    """
    region = normalize_location(location)
    needed = size.vcpus * nodes
    if needed <= 0:
        return None
    by_name: dict[str, Mapping[str, Any]] = {}
    for usage in usages:
        name = str((usage.get("name") or {}).get("value") or "")
        if name:
            by_name[name.lower()] = usage
    checks: list[tuple[str, str]] = []
    if size.family:
        checks.append((size.family, f"quota family {size.family}"))
    checks.append((REGIONAL_CORES, "the regional vCPU quota (cores)"))
    for key, label in checks:
        found = by_name.get(key.lower())
        if found is None:
            continue
        limit = int(found.get("limit") or 0)
        current = int(found.get("currentValue") or 0)
        available = max(limit - current, 0)
        if needed > available:
            return CapacityProblem(
                REASON_QUOTA_EXCEEDED,
                f"not enough vCPU quota in {region} for {nodes} x {size.name} "
                f"({size.vcpus} vCPUs each): {label} needs {needed} vCPUs, {available} "
                f"available (limit {limit}, in use {current})",
            )
    return None
