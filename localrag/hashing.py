"""sha256 of files, read in blocks so a multi-GB model never sits in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

BLOCK_BYTES = 1 << 20

# (bytes done, bytes in all): for a progress bar over a large file.
HashProgress = Callable[[int, int], None]


def sha256_file(path: Path, progress: HashProgress | None = None, hasher: Any = None) -> str:
    """Hex sha256 of the file. `hasher` carries on a hash already fed with earlier bytes
    (a download resumed after the part already on disk)."""
    digest = hasher or hashlib.sha256()
    total = path.stat().st_size if progress else 0
    done = 0
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK_BYTES):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return str(digest.hexdigest())
