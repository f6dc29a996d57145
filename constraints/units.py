"""Human-readable sizes and times for explanations and CLI output."""

from __future__ import annotations


def fmt_bytes(n: float) -> str:
    """Binary units, as hardware vendors mean them: 65536 -> '64 KiB', 268435456 -> '256 MiB'."""
    n = float(n)
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n:.0f} B"


def fmt_seconds(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def fmt_quantity(n: float, unit: str) -> str:
    """A resource amount in its unit ('bytes' are formatted in KiB/MiB)."""
    if unit == "bytes":
        return fmt_bytes(n)
    return f"{n:,.0f} {unit}"
