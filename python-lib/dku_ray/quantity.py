"""Parse CPU, memory and GPU amounts the way users write them, into Kubernetes quantities.

Users type `0.5`, `"500m"`, `4`, `"4Gi"` or `"4G"`. We keep their unit when they give one and
read a bare memory number as GiB (the reference plugin's "GB" fields, made unambiguous).
Each parser returns the canonical Kubernetes string, or raises ValueError with a fix.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_MEMORY_UNITS = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_BINARY_LADDER = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_DECIMAL_LADDER = ["", "k", "M", "G", "T", "P", "E"]
_MEMORY_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kMGTPE]i?|)$")
_CPU_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m?)$")


def _number(value: object, what: str) -> Decimal | None:
    """Bare numbers (int, float, numeric strings) as Decimal, else None. Booleans are not numbers."""
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got the boolean {value!r}")
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    return None


def _format_decimal(d: Decimal) -> str:
    text = format(d.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_cpu(value: object) -> str:
    """CPU as a Kubernetes quantity: 1 -> "1", 0.5 -> "500m", "250m" -> "250m"."""
    number = _number(value, "a CPU amount such as 1, 0.5 or \"500m\"")
    if number is None:
        match = _CPU_RE.match(str(value).strip())
        if not match:
            raise ValueError(f"{value!r} is not a CPU amount; use a number of cores such as 1 or 0.5, or millicores such as \"500m\"")
        number = Decimal(match.group(1)) / (1000 if match.group(2) else 1)
    if number <= 0:
        raise ValueError(f"must be more than 0 CPU (got {_format_decimal(number)})")
    millis = number * 1000
    if millis != millis.to_integral_value():
        raise ValueError(f"{_format_decimal(number)} CPU is finer than a millicore; round it to 3 decimals")
    if number == number.to_integral_value():
        return str(int(number))
    return f"{int(millis)}m"


def cpu_to_float(quantity: str) -> float:
    """Cores from a canonical CPU quantity (for arithmetic such as preflight checks)."""
    return float(Decimal(quantity[:-1]) / 1000) if quantity.endswith("m") else float(quantity)


def parse_memory(value: object) -> str:
    """Memory as a Kubernetes quantity: 4 -> "4Gi", "4G" -> "4G", "512Mi" -> "512Mi"."""
    number = _number(value, "a memory amount such as 4, \"4Gi\" or \"4G\"")
    if number is not None:
        if number <= 0:
            raise ValueError(f"must be more than 0 (got {_format_decimal(number)})")
        return _canonical_gib(number)
    text = str(value).strip()
    match = _MEMORY_RE.match(text)
    if not match:
        raise ValueError(f"{value!r} is not a memory amount; use \"4Gi\" (GiB), \"4G\" (GB), \"512Mi\", or a bare number of GiB")
    amount, unit = Decimal(match.group(1)), match.group(2)
    if amount <= 0:
        raise ValueError(f"must be more than 0 (got {text!r})")
    if unit == "":
        return _canonical_gib(amount)
    # Step down the unit ladder until the amount is whole: "1.5Gi" -> "1536Mi", "4.5G" -> "4500M".
    ladder = _BINARY_LADDER if unit.endswith("i") else _DECIMAL_LADDER
    index = ladder.index(unit)
    while amount != amount.to_integral_value() and index > 0:
        index -= 1
        amount *= 1024 if unit.endswith("i") else 1000
    if amount != amount.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return f"{int(amount)}{ladder[index]}"


def _canonical_gib(gib: Decimal) -> str:
    if gib == gib.to_integral_value():
        return f"{int(gib)}Gi"
    mib = gib * 1024
    if mib == mib.to_integral_value():
        return f"{int(mib)}Mi"
    raise ValueError(f"{_format_decimal(gib)} GiB is not a whole number of MiB; write it with a unit, for example \"1536Mi\"")


def memory_to_bytes(quantity: str) -> int:
    """Bytes from a canonical memory quantity."""
    match = _MEMORY_RE.match(quantity)
    if not match:
        raise ValueError(f"not a canonical memory quantity: {quantity!r}")
    return int(Decimal(match.group(1)) * _MEMORY_UNITS[match.group(2)])


def parse_gpu(value: object) -> int:
    """A whole, non-negative number of GPUs (Kubernetes cannot share a GPU between pods)."""
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number of GPUs, got the boolean {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number of GPUs; use a whole number such as 0 or 1") from None
    if number < 0 or number != number.to_integral_value():
        raise ValueError(f"GPUs must be a whole number of 0 or more (got {value!r})")
    return int(number)
