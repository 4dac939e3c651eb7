"""sha256 of files, in blocks, with progress and resumable hashing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from localrag.hashing import BLOCK_BYTES, sha256_file


def test_sha256_of_a_file_larger_than_one_block(tmp_path: Path) -> None:
    data = bytes(range(256)) * (BLOCK_BYTES // 256 * 2 + 7)
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []
    assert sha256_file(path, lambda done, total: seen.append((done, total))) == (
        hashlib.sha256(data).hexdigest()
    )
    assert len(seen) == 3 and seen[-1] == (len(data), len(data))


def test_a_started_hash_carries_on_over_the_file(tmp_path: Path) -> None:
    """A resumed download: the bytes fetched before plus the part on disk, one digest."""
    path = tmp_path / "part"
    path.write_bytes(b"second half")
    started = hashlib.sha256(b"first half, ")
    assert (
        sha256_file(path, hasher=started) == hashlib.sha256(b"first half, second half").hexdigest()
    )
