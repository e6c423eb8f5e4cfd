"""Numbers as people read them in logs, the status report and ``--scheduler-status``."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """Return ``seconds`` as ``45 s``, ``12 min`` or ``3 h 05 min``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def size(count: int | None) -> str:
    """Return ``count`` bytes as ``6.5 GB`` style text (powers of 1000), or ``size unknown``."""
    if not count:
        return "size unknown"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1000
    return f"{count} B"
