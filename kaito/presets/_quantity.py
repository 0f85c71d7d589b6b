"""Kubernetes-style quantities ("7.12Gi", "80Gi", "1.5G") as whole bytes.

The catalogs write sizes the way upstream does, as Kubernetes quantities, so that a number can be
compared with its source by eye. Parsing follows `resource.Quantity.Value()`: the exact decimal
value, rounded *up* to a whole byte. Upstream's estimator works on exactly that integer, so
rounding the same way is part of agreeing with it. Decimal arithmetic keeps "7.12Gi" from picking
up binary floating-point error before the rounding.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, int] = {
    "": 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}

_QUANTITY = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?P<suffix>[A-Za-z]*)\s*$")

GIB = 2**30


def parse_quantity(value: str | int) -> int:
    """The byte count of a quantity such as "7.12Gi", rounded up; plain ints pass through.

    Raises ValueError for negative numbers, unknown suffixes and anything that is not a number.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a quantity cannot be negative: {value}")
        return value
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"not a quantity: {value!r} (expected e.g. '7.12Gi' or '80Gi')")
    suffix = match.group("suffix")
    if suffix not in _SUFFIXES:
        known = ", ".join(s for s in _SUFFIXES if s)
        raise ValueError(f"unknown suffix {suffix!r} in quantity {value!r} (known: {known})")
    try:
        number = Decimal(match.group("number"))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"not a quantity: {value!r}") from exc
    return math.ceil(number * _SUFFIXES[suffix])


def format_gib(n_bytes: int | float) -> str:
    """A byte count as GiB with two decimals, for messages: "7.12 GiB"."""
    return f"{n_bytes / GIB:.2f} GiB"
