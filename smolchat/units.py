"""Sizes as a person reads them, the same wherever SmolChat shows one.

Decimal units, as disks, downloads and the Hub count: 1 GB is 1,000,000,000 bytes.
"""

from __future__ import annotations

KB = 1_000
MB = 1_000_000
GB = 1_000_000_000


def format_bytes(n: int) -> str:
    """'14.2 GB', '1.2 GB', '950 MB', '95 MB', '12 KB', '512 bytes'."""
    if n >= GB - MB // 2:  # from where MB would round to 1000
        return f"{n / GB:.1f} GB"
    if n >= MB - KB // 2:
        return f"{n / MB:.0f} MB"
    if n >= KB:
        return f"{n / KB:.0f} KB"
    return "1 byte" if n == 1 else f"{n} bytes"


def format_two_sizes(a: int, b: int) -> tuple[str, str]:
    """``a`` and ``b`` formatted alike, in bytes where rounding would show two different sizes
    as the same: 'should hold 1.2 GB but has 1.2 GB' would say nothing."""
    shown = format_bytes(a), format_bytes(b)
    if a != b and shown[0] == shown[1]:
        return f"{a:,} bytes", f"{b:,} bytes"
    return shown
