"""Which EC2 vCPU quota an instance type counts against.

EC2 limits running On-Demand instances per region by vCPUs, in a few buckets by instance family:
P instances (p3, p4d, p5...) share one quota, G and VT instances (g4dn, g5, g6, gr6, vt1)
another, and so on. A node group of N instances needs N × vCPUs of its type from its bucket.
Checking that before CreateNodegroup turns a node group that would sit in CREATE_FAILED for
minutes into an immediate condition that says which quota to raise, by how much, and where.

The bucket is decided by the family's leading letters; families without an On-Demand vCPU quota
of their own (Mac dedicated hosts, high-memory `u-` instances) answer None and are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import attrs


@attrs.frozen
class Quota:
    """An EC2 Service Quotas entry (service code `ec2`): its code and its console name."""

    code: str
    name: str


STANDARD: Final = Quota(
    "L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"
)
P_INSTANCES: Final = Quota("L-417A185B", "Running On-Demand P instances")
G_INSTANCES: Final = Quota("L-DB2E81BA", "Running On-Demand G and VT instances")
INF_INSTANCES: Final = Quota("L-1945791B", "Running On-Demand Inf instances")
TRN_INSTANCES: Final = Quota("L-2C3B7624", "Running On-Demand Trn instances")
DL_INSTANCES: Final = Quota("L-6E869C2A", "Running On-Demand DL instances")
F_INSTANCES: Final = Quota("L-74FC7D96", "Running On-Demand F instances")
X_INSTANCES: Final = Quota("L-7295265B", "Running On-Demand X instances")

_BY_LETTERS: Final[Mapping[str, Quota]] = {
    "p": P_INSTANCES,
    "g": G_INSTANCES,
    "gr": G_INSTANCES,
    "vt": G_INSTANCES,
    "inf": INF_INSTANCES,
    "trn": TRN_INSTANCES,
    "dl": DL_INSTANCES,
    "f": F_INSTANCES,
    "x": X_INSTANCES,
    **{letter: STANDARD for letter in ("a", "c", "d", "h", "i", "im", "is", "m", "r", "t", "z")},
}
_LETTERS = re.compile(r"^([a-z]+)[0-9]")

QuotaSource = Callable[[Quota], Awaitable[float | None]]
"""Answers a quota's value in vCPUs for the provisioner's region, or None when it is not known
(then the check is skipped). The default asks Service Quotas' GetServiceQuota."""


def quota_for(instance_type: str) -> Quota | None:
    """The On-Demand vCPU quota an instance type counts against, or None."""
    match = _LETTERS.match(instance_type.split(".", 1)[0].lower())
    return _BY_LETTERS.get(match.group(1)) if match else None
