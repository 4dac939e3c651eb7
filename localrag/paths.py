"""Paths as people read them.

On Linux a file name is bytes, and Python hands names that are not valid UTF-8 over as str
with surrogate escapes (os.fsdecode). They work for opening the file but cannot be printed,
encoded for a model or written as UTF-8; `printable` is the one way such a name is shown.
"""

from __future__ import annotations


def printable(path: str) -> str:
    """The path with each undecodable byte written as \\xNN (b'caf\\xe9.txt' → 'caf\\\\xe9.txt')."""
    if path.isascii():
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
