"""Compare an index with a fresh full index of the same folder: the watcher's yardstick."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from localrag.indexer import Indexer
from localrag.store import Store


def index_state(store: Store) -> dict[str, Any]:
    """Everything a user can observe, independent of row ids and timestamps."""
    db = store.db
    return {
        "documents": sorted(
            db.execute("SELECT path, status, content_hash, reason FROM documents").fetchall()
        ),
        "chunks": sorted(
            db.execute(
                "SELECT d.path, c.ordinal, c.text, c.line_start, c.line_end, c.page_start "
                "FROM chunks c JOIN documents d ON d.id = c.document_id"
            ).fetchall()
        ),
        # Vectors are kept once per passage text: orphans or duplicates would show here.
        "embeddings": db.execute("SELECT count(*) FROM embeddings").fetchone()[0],
        "fts_rows": db.execute("SELECT count(*) FROM chunks_fts").fetchone()[0],
    }


def assert_matches_fresh_index(db: Path, folder: Path, embedder: Any, scratch: Path) -> None:
    """The index at `db` holds exactly what indexing `folder` from scratch would."""
    fresh_db = scratch / f"fresh-{len(list(scratch.glob('fresh-*.db')))}.db"
    with Store.open(fresh_db) as fresh:
        Indexer(fresh, embedder).index([folder])
        expected = index_state(fresh)
    with Store.open(db, create=False) as store:
        actual = index_state(store)
        assert store.integrity_check() == "ok"
    assert actual["documents"] == expected["documents"]
    assert actual["chunks"] == expected["chunks"]
    assert actual == expected
