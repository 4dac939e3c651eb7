"""The SQLite store on its own: schema, migrations, atomic replacement, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from localrag.errors import StoreError
from localrag.store import SCHEMA_VERSION, Store
from tests.helpers.store import pending_document, vectors_for


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Store.open(tmp_path / "s.db") as s:
        s.bind_embedder("test-model", 8, "0" * 64)
        yield s


def test_blank_database_is_migrated_to_the_current_schema(tmp_path):
    with Store.open(tmp_path / "new.db") as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
        assert {"documents", "chunks", "embeddings", "chunks_fts", "meta", "roots"} <= tables
    # Reopening is a no-op, not a second migration.
    with Store.open(tmp_path / "new.db") as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_and_non_database_files_are_refused(tmp_path):
    with Store.open(tmp_path / "future.db") as store:
        store.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StoreError, match="newer localrag"):
        Store.open(tmp_path / "future.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable localrag index"):
        Store.open(junk)
    with pytest.raises(StoreError, match="localrag index FOLDER"):
        Store.open(tmp_path / "absent.db", create=False)


def test_replace_is_atomic_when_it_fails_half_way(store):
    root = store.add_root("/docs")
    store.replace_document(
        pending_document("/docs/a.txt", root.id, ["one", "two"]), vectors_for(["one", "two"])
    )
    # The second version lacks a vector for one new passage: the write fails inside the
    # transaction, and the first version must be fully intact.
    with pytest.raises(StoreError):
        store.replace_document(
            pending_document("/docs/a.txt", root.id, ["one", "three"]), vectors_for(["one"])
        )
    texts = [r[0] for r in store.db.execute("SELECT text FROM chunks ORDER BY ordinal")]
    assert texts == ["one", "two"]
    assert store.fts_search('"two"', 5) and not store.fts_search('"three"', 5)
    assert store.integrity_check() == "ok"


def test_identical_passages_share_one_vector_and_garbage_is_collected(store):
    root = store.add_root("/docs")
    store.replace_document(
        pending_document("/docs/a.txt", root.id, ["same", "a"]), vectors_for(["same", "a"])
    )
    store.replace_document(
        pending_document("/docs/b.txt", root.id, ["same", "b"]), vectors_for(["b"])
    )
    assert store.stats().embeddings == 3
    store.delete_documents(["/docs/a.txt"])
    assert store.collect_garbage() == 1  # "a" is gone, "same" is still used by b.txt
    assert store.known_text_hashes(["hash-same", "hash-a", "hash-b"]) == {"hash-same", "hash-b"}
    assert store.db.execute("SELECT count(*) FROM embedding_bits").fetchone()[0] == 2


def test_deleting_a_document_removes_its_chunks_from_fts(store):
    root = store.add_root("/docs")
    store.replace_document(
        pending_document("/docs/a.txt", root.id, ["zebra"]), vectors_for(["zebra"])
    )
    assert store.fts_search('"zebra"', 5)
    store.delete_documents(["/docs/a.txt"])
    assert store.fts_search('"zebra"', 5) == []
    assert store.db.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0


def test_readers_see_committed_files_only(tmp_path, store):
    root = store.add_root("/docs")
    reader = Store.open(store.path)
    try:
        store.db.execute("BEGIN IMMEDIATE")
        store.db.execute(
            "INSERT INTO documents(path, root_id, size, mtime_ns, status, indexed_at) "
            "VALUES ('/docs/half.txt', ?, 1, 1, 'indexed', 0)",
            (root.id,),
        )
        # The writer is mid-transaction: the reader neither blocks nor sees the half file.
        assert reader.document("/docs/half.txt") is None
        store.db.execute("COMMIT")
        assert reader.document("/docs/half.txt") is not None
    finally:
        reader.close()


def test_opening_a_new_database_from_many_connections_at_once(tmp_path: Path) -> None:
    import threading

    for attempt in range(10):
        path = tmp_path / f"race-{attempt}.db"
        start = threading.Barrier(4)
        errors: list[BaseException] = []

        def open_it(
            path: Path = path,
            start: threading.Barrier = start,
            errors: list[BaseException] = errors,
        ) -> None:
            start.wait()
            try:
                Store.open(path).close()
            except BaseException as exc:  # collected: a thread's exception is otherwise lost
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with Store.open(path) as store:
            assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
