"""Small, pure helpers over raw objects: metadata, conditions, quantities, names, hashes.

Every simulator writes conditions, compares resource quantities and names the objects it
creates; doing each of these one way keeps the writes idempotent. In particular
`set_condition` leaves a condition untouched (timestamps included) when its status, reason and
message are unchanged, so a controller that recomputes status on every event writes nothing
when nothing changed — which is what a benchmark that counts writes relies on.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

SAFE_CHARS = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes)."""


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    found = obj.get("metadata")
    return found if isinstance(found, dict) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: Mapping[str, Any]) -> str | None:
    ns = meta(obj).get("namespace")
    return str(ns) if ns else None


def uid_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("uid", ""))


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    found = meta(obj).get("labels")
    return dict(found) if isinstance(found, dict) else {}


def deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    found = obj.get("spec")
    return found if isinstance(found, dict) else {}


def status_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    found = obj.get("status")
    return found if isinstance(found, dict) else {}


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def newer(candidate: str, current: str) -> bool:
    """Whether resourceVersion `candidate` is later than `current`.

    resourceVersions are opaque by contract, but every API server (etcd revisions, the
    emulator's counter) hands out increasing integers, and comparing them is what lets the
    simulators' write-through cache ignore watch events older than their own writes.
    """
    if candidate.isdigit() and current.isdigit():
        return int(candidate) > int(current)
    return candidate != current


# -- conditions -------------------------------------------------------------------------------


def conditions(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = status_of(obj).get("conditions")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def condition(obj: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in conditions(obj):
        if cond.get("type") == kind:
            return cond
    return None


def condition_status(obj: Mapping[str, Any], kind: str) -> str | None:
    cond = condition(obj, kind)
    return str(cond.get("status")) if cond is not None else None


def is_true(obj: Mapping[str, Any], kind: str) -> bool:
    return condition_status(obj, kind) == "True"


def set_condition(
    current: Iterable[Mapping[str, Any]],
    kind: str,
    status: str,
    now: str,
    *,
    reason: str | None = None,
    message: str | None = None,
    extra: Mapping[str, Any] | None = None,
    heartbeat: str | None = None,
) -> list[dict[str, Any]]:
    """The condition list with `kind` set; unchanged (same dicts) when nothing differs.

    `lastTransitionTime` moves only when the status flips. `heartbeat` names a field that
    records the time of every change (`lastProbeTime`, `lastHeartbeatTime`, `lastUpdateTime`).
    """
    out = [dict(c) for c in current]
    wanted: dict[str, Any] = {"type": kind, "status": status}
    if reason is not None:
        wanted["reason"] = reason
    if message is not None:
        wanted["message"] = message
    wanted.update(extra or {})
    for i, cond in enumerate(out):
        if cond.get("type") != kind:
            continue
        if all(cond.get(k) == v for k, v in wanted.items()) and all(
            k in wanted for k in ("reason", "message") if k in cond
        ):
            return out
        updated = {k: v for k, v in cond.items() if k not in ("reason", "message")}
        updated.update(wanted)
        if cond.get("status") != status:
            updated["lastTransitionTime"] = now
        if heartbeat is not None:
            updated[heartbeat] = now
        out[i] = updated
        return out
    added = {**wanted, "lastTransitionTime": now}
    if heartbeat is not None:
        added[heartbeat] = now
    out.append(added)
    return out


# -- quantities -------------------------------------------------------------------------------

_SUFFIX: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?P<suf>[KMGTPE]i|[mkMGTPE]|[eE][+-]?[0-9]+)?$"
)


def quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "16Gi", "1e3", 4) as an exact decimal."""
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    try:
        number = Decimal(match["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"not a quantity: {value!r}") from exc
    suffix = match["suf"] or ""
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _SUFFIX[suffix]


def resource_map(raw: Any) -> dict[str, Decimal]:
    """A resource list (`{"cpu": "2", "nvidia.com/gpu": 1}`) as exact numbers; bad entries are
    skipped rather than fatal, since a simulator must not crash on a user's typo."""
    out: dict[str, Decimal] = {}
    if isinstance(raw, Mapping):
        for key, value in raw.items():
            try:
                out[str(key)] = quantity(value)
            except ValueError:
                continue
    return out


# -- names and hashes -------------------------------------------------------------------------


def template_hash(template: Any) -> str:
    """A stable, name-safe hash of a pod template (10 characters of `SAFE_CHARS`).

    The value plays the role of Kubernetes' `pod-template-hash` and ControllerRevision hash:
    equal templates give equal hashes, any change gives a new one.
    """
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    number = int.from_bytes(digest[:10], "big")
    chars = []
    for _ in range(10):
        number, rest = divmod(number, len(SAFE_CHARS))
        chars.append(SAFE_CHARS[rest])
    return "".join(chars)


def random_suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(SAFE_CHARS) for _ in range(length))


def owner_reference(owner: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": str(owner.get("apiVersion", "")),
        "kind": str(owner.get("kind", "")),
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ownerReference marked `controller: true`, if any."""
    for ref in meta(obj).get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


def covers(obj: Any, patch: Any, wildcard: str | None = None) -> bool:
    """Whether merge-patching `obj` with `patch` would change nothing.

    `wildcard`, if given, is a placeholder value in the patch (a timestamp filled in at write
    time): it is satisfied by any value already present, so a patch that stamps "now" is not
    re-applied forever.
    """
    if isinstance(patch, Mapping):
        if not isinstance(obj, Mapping):
            return False
        for key, value in patch.items():
            if value is None:
                if key in obj:
                    return False
            elif key not in obj or not covers(obj[key], value, wildcard):
                return False
        return True
    if isinstance(patch, list):
        return (
            isinstance(obj, list)
            and len(obj) == len(patch)
            and all(covers(o, p, wildcard) for o, p in zip(obj, patch, strict=True))
            and all(
                not isinstance(o, Mapping) or _same_keys(o, p)
                for o, p in zip(obj, patch, strict=True)
            )
        )
    if wildcard is not None and patch == wildcard:
        return obj is not None
    return bool(obj == patch)


def _same_keys(obj: Mapping[str, Any], patch: Any) -> bool:
    # Lists are replaced whole by a merge patch, so an element with extra keys would change.
    return isinstance(patch, Mapping) and set(obj) == {k for k, v in patch.items() if v is not None}


def fill(template: Any, wildcard: str, value: str) -> Any:
    """A deep copy of `template` with every `wildcard` string replaced by `value`."""
    if isinstance(template, Mapping):
        return {k: fill(v, wildcard, value) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, wildcard, value) for v in template]
    if template == wildcard:
        return value
    return copy.deepcopy(template)
