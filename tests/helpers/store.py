"""Documents made by hand for store-level tests (no parsing, no embedder)."""

from __future__ import annotations

import numpy as np

from localrag.documents import Chunk
from localrag.store import PendingDocument


def pending_document(path: str, root_id: int, texts: list[str]) -> PendingDocument:
    """A document whose chunk i is texts[i], on line i + 1; text hashes are `hash-<text>`."""
    chunks = [
        Chunk(
            ordinal=i,
            text=t,
            heading_path=("H",),
            char_start=10 * i,
            char_end=10 * i + len(t),
            token_count=3,
            line_start=i + 1,
            line_end=i + 1,
        )
        for i, t in enumerate(texts)
    ]
    return PendingDocument(
        path=path,
        root_id=root_id,
        size=1,
        mtime_ns=1,
        content_hash="h" + path,
        format="text",
        title=None,
        chunks=chunks,
        text_hashes=[f"hash-{t}" for t in texts],
    )


def vectors_for(texts: list[str], dim: int = 8) -> dict[str, np.ndarray]:
    """Seeded random vectors keyed like `pending_document`'s text hashes."""
    rng = np.random.default_rng(0)
    return {f"hash-{t}": rng.standard_normal(dim).astype(np.float32) for t in texts}
