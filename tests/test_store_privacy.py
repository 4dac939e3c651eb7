"""The index file's own promises: private, no deleted text left behind, other databases left
alone, readable where it cannot be written, and no silent loss when the file goes away.

Store-level, with real SQLite files; the command-line and fault tests (full disks, a second
user, processes racing) are in test_faults.py.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlean as sqlite3  # one SQLite library per process (docs/ARCHITECTURE.md §8)

from localrag.errors import DatabaseGone, StoreError
from localrag.indexer import Indexer
from localrag.store import APPLICATION_ID, SCHEMA_VERSION, Store
from tests.helpers.store import pending_document, vectors_for

MARKER = "zqxjvortexmarker"
# What any copy of the marker holds, the full-text index's stemmed term ("...mark") included.
MARKER_STEM = b"zqxjvortexmark"


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common default umask: files come out 0644 unless localrag says otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _database_bytes(db: Path) -> bytes:
    """The database and whatever WAL and shared memory lie beside it."""
    return b"".join(
        p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()
    )


# -- private by default ------------------------------------------------------------------------


@pytest.mark.usefixtures("loose_umask")
def test_new_database_and_its_folders_are_private(tmp_path: Path) -> None:
    db = tmp_path / "data" / "nested" / "index.db"
    with Store.open(db) as store:
        store.add_root("/docs")  # a write, so the WAL and shared memory exist
        assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()
        for name in ("", "-wal", "-shm"):
            assert _mode(Path(f"{db}{name}")) == 0o600, name
    assert _mode(tmp_path / "data") == 0o700
    assert _mode(tmp_path / "data" / "nested") == 0o700


@pytest.mark.usefixtures("loose_umask")
def test_a_world_readable_database_from_an_earlier_version_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with Store.open(db) as store:
        store.add_root("/docs")
        for name in ("", "-wal", "-shm"):
            os.chmod(f"{db}{name}", 0o644)
    with Store.open(db, read_only=True):
        assert _mode(db) == 0o644  # a read-only open changes nothing, permissions included
    with Store.open(db):
        for name in ("", "-wal", "-shm"):
            assert _mode(Path(f"{db}{name}")) == 0o600, name


@pytest.mark.usefixtures("loose_umask")
def test_models_manifest_is_private(tmp_path: Path, tiny_gguf: dict[str, Path]) -> None:
    from localrag.models.registry import ModelRegistry

    registry = ModelRegistry(tmp_path / "models")
    registry.import_file(tiny_gguf["q8_0"], name="tiny")
    assert _mode(registry.manifest_path) == 0o600
    assert _mode(tmp_path / "models") == 0o700


@pytest.mark.usefixtures("loose_umask")
def test_databases_made_by_the_watcher_and_the_app_are_private(
    tmp_path: Path, embedder, models_env
) -> None:  # type: ignore[no-untyped-def]
    from localrag.assistant import Assistant
    from localrag.watcher import Watcher

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nSome words about kestrels.\n")
    watched = tmp_path / "w" / "index.db"
    watcher = Watcher(watched, [docs], embedder)
    watcher.start()
    try:
        assert watcher.wait_idle(60)
        assert _mode(watched) == 0o600 and _mode(watched.parent) == 0o700
        assert _mode(Path(f"{watched}-wal")) == 0o600
    finally:
        watcher.stop()

    app_db = tmp_path / "app" / "index.db"
    assistant = Assistant(app_db)
    assistant.open()
    try:
        assert _mode(app_db) == 0o600 and _mode(app_db.parent) == 0o700
    finally:
        assistant.close()


# -- deleted text does not linger ---------------------------------------------------------------


def _index_marker_then(tmp_path: Path, embedder, change) -> Path:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(30):  # enough rows that deleting one leaves live pages, not an empty file
        (docs / f"filler-{i:02}.md").write_text(f"# Filler {i}\n\nOrdinary words number {i}.\n")
    secret = docs / "secret.md"
    secret.write_text(f"# Secret\n\nThe code word is {MARKER} and nobody may know it.\n")
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([docs])
    # The check below can see the text, and the index term, when they are there.
    assert _database_bytes(db).count(MARKER_STEM) >= 2
    change(docs, secret)
    with Store.open(db) as store:
        Indexer(store, embedder).index([docs])
        assert not store.fts_search(f'"{MARKER}"', 5)
    return db


@pytest.mark.parametrize("change", ["deleted", "edited", "ignored"])
def test_text_of_deleted_edited_or_ignored_files_leaves_the_file(
    tmp_path: Path, embedder, change: str
) -> None:  # type: ignore[no-untyped-def]
    def apply(docs: Path, secret: Path) -> None:
        if change == "deleted":
            secret.unlink()
        elif change == "edited":
            secret.write_text("# Secret\n\nThe code word was changed and is not written here.\n")
        else:
            (docs / ".localragignore").write_text("secret.md\n")

    db = _index_marker_then(tmp_path, embedder, apply)
    # Neither the text nor its full-text index terms, in the file, its free pages or the WAL.
    assert MARKER_STEM not in _database_bytes(db)
    with Store.open(db) as store:
        assert store.integrity_check() == "ok"


def test_a_deleted_conversation_leaves_no_text(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with Store.open(db) as store:
        keep = store.create_conversation("kept")
        store.append_turn(
            keep, question="q", answer="a", mode="generated", search_query="q",
            sources_json="[]", cited_json="[]", stopped=False,
        )  # fmt: skip
        gone = store.create_conversation(f"about {MARKER}")
        store.append_turn(
            gone, question=f"where is {MARKER}?", answer=f"{MARKER} is here", mode="generated",
            search_query="q", sources_json="[]", cited_json="[]", stopped=False,
        )  # fmt: skip
        store.delete_conversation(gone)
        store.checkpoint()
        assert MARKER_STEM not in _database_bytes(db)


# -- other programs' databases --------------------------------------------------------------------


def _foreign_database(path: Path, *, wal: bool = False) -> str:
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, customer TEXT, amount REAL)")
    db.execute("INSERT INTO invoices (customer, amount) VALUES ('Hartley', 120.5)")
    db.commit()
    db.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("read_only", [False, True])
def test_another_programs_database_is_refused_and_left_byte_for_byte(
    tmp_path: Path, read_only: bool
) -> None:
    other = tmp_path / "accounts.sqlite"
    before = _foreign_database(other)
    with pytest.raises(
        StoreError, match=r"not a localrag index \(it holds 1 other tables: invoices"
    ):
        Store.open(other, read_only=read_only)
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts.sqlite"]


def test_an_empty_sqlite_file_becomes_an_index_and_is_marked_as_ours(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # SQLite's own empty file
    with Store.open(path) as store:
        assert store.db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_an_index_from_before_the_application_id_is_still_recognised(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with Store.open(path) as store:
        store.add_root("/docs")
        # As schema 2 left it: no application id, version 2.
        store.db.execute("PRAGMA application_id = 0")
        store.db.execute("PRAGMA user_version = 2")
    with Store.open(path, read_only=True) as store:
        assert [r.path for r in store.roots()] == ["/docs"]
    with Store.open(path) as store:
        assert store.db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert [r.path for r in store.roots()] == ["/docs"]


# -- read-only ------------------------------------------------------------------------------------


def _one_document_index(db: Path, text: str) -> None:
    with Store.open(db) as store:
        store.bind_embedder("test-model", 8, "0" * 64)
        root = store.add_root("/docs")
        document = pending_document("/docs/a.txt", root.id, [text])
        store.replace_document(document, vectors_for([text]))


def test_a_read_only_open_never_writes_and_refuses_writes(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    _one_document_index(db, "alpha")
    before = (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns)
    with Store.open(db, read_only=True) as store:
        assert store.stats().indexed == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.add_root("/elsewhere")
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == before
    with pytest.raises(StoreError, match="no index"):
        Store.open(tmp_path / "absent.db", read_only=True)
    assert not (tmp_path / "absent.db").exists()


def test_an_index_on_a_read_only_folder_is_searchable(tmp_path: Path) -> None:
    """The immutable fallback: no WAL index can be created beside the file."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "i.db"
    _one_document_index(db, "alpha words")
    assert not Path(f"{db}-shm").exists()  # closed cleanly: WAL checkpointed and removed
    if os.geteuid() == 0:
        pytest.skip("root writes to any folder: test_faults covers a read-only mount")
    folder.chmod(0o555)
    try:
        with Store.open(db, read_only=True) as store:
            assert store.fts_search('"alpha"', 5)
    finally:
        folder.chmod(0o755)


# -- first runs racing -----------------------------------------------------------------------------


def _first_run(path: str, barrier) -> str:  # type: ignore[no-untyped-def]
    barrier.wait()
    try:
        with Store.open(path) as store:
            store.bind_embedder("model", 8, "0" * 64)
            store.add_root("/docs")
        return "ok"
    except Exception as exc:  # reported to the parent, which asserts on it
        return f"{type(exc).__name__}: {exc}"


def test_processes_starting_on_one_new_database_together_never_fail(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # no threads of this process inherited
    with context.Manager() as manager, context.Pool(4) as pool:
        for attempt in range(12):
            path = str(tmp_path / f"race-{attempt}.db")
            barrier = manager.Barrier(4)
            outcomes = pool.starmap(_first_run, [(path, barrier)] * 4)
            assert outcomes == ["ok"] * 4, outcomes
            with Store.open(path) as store:
                assert [r.path for r in store.roots()] == ["/docs"]
                assert store.model_identity() == {
                    "name": "model",
                    "dim": 8,
                    "fingerprint": "0" * 64,
                }


# -- the file going away ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_writes_stop_when_the_database_file_is_deleted_or_replaced(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "i.db"
    with Store.open(db) as store:
        root = store.add_root("/docs")
        db.unlink()
        if how == "replaced":
            Store.open(db).close()  # a new, empty index under the same name
        with pytest.raises(DatabaseGone, match=how):
            store.replace_document(
                pending_document("/docs/a.txt", root.id, ["alpha"]), vectors_for(["alpha"])
            )
        with pytest.raises(DatabaseGone), store.transaction() as db:
            db.execute("INSERT INTO meta(key, value) VALUES ('never', 'written')")
    if how == "replaced":
        with Store.open(db) as fresh:
            assert fresh.roots() == []  # nothing meant for the old file went into the new one
