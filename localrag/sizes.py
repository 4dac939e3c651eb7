"""Byte sizes as people read them, with one unit everywhere.

Decimal units, as disks, download pages and `--max-file-size` count them: 1 kB = 1,000 bytes,
1 MB = 1,000,000, 1 GB = 1,000,000,000. A limit given as "50 MB" is shown back as "50.0 MB".
"""

from __future__ import annotations

KB = 1_000
MB = 1_000_000
GB = 1_000_000_000


def format_bytes(size: int | float) -> str:
    """'812 B', '4.1 kB', '52.4 MB', '1.1 GB'."""
    for unit, scale in (("GB", GB), ("MB", MB), ("kB", KB)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def megabytes(size: int | float) -> str:
    """Always in MB ('0.5 MB', '52.4 MB'): limits and the sizes measured against them read
    alike in one message ("2.1 MB, over the 1.0 MB limit")."""
    return f"{size / MB:.1f} MB"
