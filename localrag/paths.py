"""Paths as people read them, and which folder a path is in.

On Linux a file name is bytes, and Python hands names that are not valid UTF-8 over as str
with surrogate escapes (os.fsdecode). They work for opening the file but cannot be printed,
encoded for a model or written as UTF-8; every path shown goes through `printable`.

Paths in the index are absolute and spelled as the walker found them, so containment is a
plain string test (`is_within`), never a resolve that could follow a symlink elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol


class Folder(Protocol):
    """An indexed folder (store.Root): anything with an absolute `path`."""

    @property
    def path(self) -> str: ...


def printable(path: str) -> str:
    """The path with each undecodable byte written as \\xNN (b'caf\\xe9.txt' → 'caf\\\\xe9.txt')."""
    if path.isascii():
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_within(path: str, folder: str) -> bool:
    """`path` is `folder` or below it (plain string test: both absolute, same spelling)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def from_root(path: str, roots: Iterable[Folder]) -> str:
    """A path shown from its indexed folder's name ("docs/recipes/soup.txt"): short, and
    unambiguous between folders. For answers, collection listings and training data."""
    for root in roots:
        if is_within(path, root.path):
            base = os.path.dirname(root.path.rstrip(os.sep)) or root.path
            return printable(os.path.relpath(path, base))
    return printable(path)


def from_here(path: str) -> str:
    """A path as a terminal user types it: relative to the working folder when inside it,
    else with ~ for the home folder. For the command line's own messages."""
    try:
        inside = path.startswith(os.getcwd() + os.sep)
        shown = os.path.relpath(path) if inside else with_tilde(path)
    except (OSError, ValueError):  # the working folder was deleted; another drive
        shown = path
    return printable(shown)


def with_tilde(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path
