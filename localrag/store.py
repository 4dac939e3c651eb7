"""The SQLite knowledge base: schema, migrations, transactions. The only module that writes SQL.

One file holds everything: documents, chunks, an FTS5 index over chunk text, and vectors.
Vectors are stored once per distinct passage text (`embeddings`, keyed by the text's hash),
so an edited file re-embeds only what changed and a renamed or copied file re-embeds nothing.
Each embedding is kept as float32 for exact scoring and as a 1-bit-per-dimension `vec0` index
for fast candidate search (docs/ARCHITECTURE.md §9: 5× faster than float KNN at 100k, then
rescored).

WAL mode: one writer (the indexer), any number of readers that see committed files only.

The file is private (0600, see private_files) and deletions are secure: SQLite's
secure_delete zeroes freed content, FTS5's secure-delete drops terms from the full-text index
at once, and `checkpoint()` empties the WAL, so the text of a deleted or re-indexed file does
not linger in free pages. A file that is a SQLite database but not a localrag index is
refused before anything is written to it.

File names that are not valid UTF-8 (possible on Linux) reach Python as str with surrogate
escapes. They are stored as their original bytes: bound as a BLOB and cast to TEXT in SQL
(`_text`), and read back through a text factory that restores the escapes.
"""

from __future__ import annotations

import functools
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlean as sqlite3  # stdlib sqlite3 often cannot load extensions (docs/ARCHITECTURE.md §8)
import sqlite_vec

from localrag.config import embedder_folder_name
from localrag.documents import Chunk
from localrag.errors import (
    DatabaseGone,
    DiskFullError,
    IndexModelChanged,
    ModelMismatchError,
    StoreError,
    VectorsGone,
)
from localrag.paths import is_within
from localrag.private_files import (
    PRIVATE_FILE_MODE,
    create_private_file,
    make_private_dir,
    tighten,
)

if TYPE_CHECKING:  # sqlean mirrors the stdlib API; type-check against the stdlib's stubs
    from sqlite3 import Connection
else:
    Connection = sqlite3.Connection

# ---------------------------------------------------------------------------------------------
# Migrations: numbered, append-only SQL scripts. Each runs in its own transaction together
# with the `PRAGMA user_version` bump that records it.

_M001_INITIAL = """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE roots (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            added_at REAL NOT NULL
        );
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            root_id INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT,
            format TEXT,
            title TEXT,
            status TEXT NOT NULL CHECK (status IN ('indexed', 'skipped', 'error')),
            reason TEXT,
            chunk_count INTEGER NOT NULL DEFAULT 0,
            indexed_at REAL NOT NULL
        );
        CREATE INDEX documents_root ON documents(root_id);
        CREATE INDEX documents_hash ON documents(content_hash);
        CREATE TABLE embeddings (
            id INTEGER PRIMARY KEY,
            text_hash TEXT NOT NULL UNIQUE,
            vector BLOB NOT NULL
        );
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            heading TEXT NOT NULL DEFAULT '',
            char_start INTEGER NOT NULL,
            char_end INTEGER NOT NULL,
            line_start INTEGER,
            line_end INTEGER,
            page_start INTEGER,
            page_end INTEGER,
            token_count INTEGER NOT NULL,
            embedding_id INTEGER NOT NULL REFERENCES embeddings(id),
            UNIQUE (document_id, ordinal)
        );
        CREATE INDEX chunks_embedding ON chunks(embedding_id);
        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, heading,
            content='chunks', content_rowid='id',
            tokenize='porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text, heading) VALUES (new.id, new.text, new.heading);
        END;
        CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text, heading)
            VALUES ('delete', old.id, old.text, old.heading);
        END;
"""

# Saved conversations. Sources are a JSON snapshot (text included), not references to chunks:
# files change and chunks are deleted, and a reopened conversation must still show what each
# answer was based on. localrag.conversations owns the JSON format.
_M002_CONVERSATIONS = """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX conversations_updated ON conversations(updated_at);
        CREATE TABLE turns (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            question TEXT NOT NULL,
            answer TEXT NOT NULL,
            mode TEXT NOT NULL,
            search_query TEXT NOT NULL,
            sources TEXT NOT NULL,
            cited TEXT NOT NULL,
            stopped INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            UNIQUE (conversation_id, ordinal)
        );
        CREATE INDEX turns_conversation ON turns(conversation_id);
"""

# "LRAG" in the file header's application_id: a localrag index says what it is, so another
# program's SQLite file is recognised and refused rather than given our tables.
APPLICATION_ID = 0x4C524147

# Deleted text must not stay readable in the file: FTS5 otherwise keeps a deleted row's terms
# in its segments until they happen to be merged.
_M003_PRIVACY = f"""
        PRAGMA application_id = {APPLICATION_ID};
        INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('secure-delete', 1);
"""

MIGRATIONS: list[str] = [_M001_INITIAL, _M002_CONVERSATIONS, _M003_PRIVACY]
# Tables every localrag index has had since the first schema (for files from before
# application_id was set).
_CORE_TABLES = frozenset(("meta", "roots", "documents", "chunks"))
_SQLITE_CANTOPEN = 14
_SQLITE_FULL = 13
SCHEMA_VERSION = len(MIGRATIONS)

# ---------------------------------------------------------------------------------------------
# Rows handed to the rest of the program.


@dataclass(frozen=True)
class Root:
    id: int
    path: str


@dataclass(frozen=True)
class DocumentRow:
    id: int
    path: str
    root_id: int
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    reason: str | None
    chunk_count: int


@dataclass(frozen=True)
class ChunkHit:
    """A stored chunk with its document's path: what search results are made of."""

    chunk_id: int
    document_id: int
    path: str
    ordinal: int
    text: str
    heading: str
    line_start: int | None
    line_end: int | None
    page_start: int | None
    page_end: int | None
    char_start: int
    char_end: int
    embedding_id: int


@dataclass(frozen=True)
class PendingDocument:
    """A parsed, chunked file ready to replace its stored version in one transaction."""

    path: str
    root_id: int
    size: int
    mtime_ns: int
    content_hash: str
    format: str
    title: str | None
    chunks: Sequence[Chunk]
    text_hashes: Sequence[str]


@dataclass(frozen=True)
class Stats:
    roots: list[str]
    documents: int
    indexed: int
    skipped: int
    errors: int
    chunks: int
    embeddings: int
    model: dict[str, Any] | None
    db_bytes: int
    # A move to another embedding model under way: {"to": name, "done": n, "total": n}.
    reembed: dict[str, Any] | None = None


@dataclass(frozen=True)
class DocumentInfo:
    """A document as a listing shows it: what it is, whether it was indexed, and why not."""

    path: str
    status: str  # indexed | skipped | error
    reason: str | None
    format: str | None  # None for files that were never parsed (skipped or failed)
    title: str | None
    size: int
    chunk_count: int


@dataclass(frozen=True)
class DocumentMatch:
    """A document with passages matching a full-text query: how many, and the first one."""

    document_id: int
    path: str
    passages: int
    first_chunk_id: int  # the matching chunk earliest in the document


@dataclass(frozen=True)
class DocumentGroup:
    """Documents of one root, format and status, counted (what an overview is made of)."""

    root: str
    format: str | None
    status: str
    documents: int
    chunks: int
    size: int


@dataclass(frozen=True)
class ConversationRow:
    """A saved conversation with how many turns it holds."""

    id: int
    title: str
    created_at: float
    updated_at: float
    turns: int


@dataclass(frozen=True)
class TurnRow:
    """One saved question and answer; `sources` and `cited` are JSON text."""

    id: int
    conversation_id: int
    ordinal: int
    question: str
    answer: str
    mode: str
    search_query: str
    sources: str
    cited: str
    stopped: bool
    created_at: float


_DOC_COLUMNS = "id, path, root_id, size, mtime_ns, content_hash, status, reason, chunk_count"
_INFO_COLUMNS = "path, status, reason, format, title, size, chunk_count"
_HIT_COLUMNS = (
    "c.id, c.document_id, d.path, c.ordinal, c.text, c.heading, c.line_start, c.line_end, "
    "c.page_start, c.page_end, c.char_start, c.char_end, c.embedding_id"
)

_CONVERSATION_SELECT = (
    "SELECT c.id, c.title, c.created_at, c.updated_at, count(t.id) "
    "FROM conversations c LEFT JOIN turns t ON t.conversation_id = c.id"
)


def identity_record(name: str, dim: int, fingerprint: str) -> dict[str, Any]:
    """An embedding model's identity as the index records it (meta `embedder`, `reembed`)."""
    return {"name": name, "dim": dim, "fingerprint": fingerprint}


def _vector_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


class Store:
    """One open knowledge base. Use one Store per thread."""

    def __init__(self, path: Path, db: Connection, *, read_only: bool = False) -> None:
        self.path = path
        self.db = db
        self.read_only = read_only
        self._file_id = _file_id(path)
        # The model this Store writes vectors for (bind_embedder): a long-running writer (a
        # watcher) must not add its vectors once another process moved the index elsewhere.
        self._bound_identity: dict[str, Any] | None = None

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, create: bool = True, read_only: bool = False) -> Store:
        """Open a localrag index, creating it (owner-only) when `create` and it is absent.

        `read_only` never writes a byte: no migration, no WAL switch, no permission change.
        It works where the file cannot be written (another user's index, a read-only disk).
        """
        path = Path(path)
        exists = path.exists()
        if not exists and (read_only or not create):
            raise StoreError(f"no index at {path}: run `localrag index FOLDER` first")
        if not exists:
            try:
                make_private_dir(path.parent)
                create_private_file(path)  # 0600 before SQLite writes: WAL and SHM copy the mode
            except OSError as exc:
                raise StoreError(f"cannot create the index {path}: {exc.strerror or exc}") from exc
        try:
            kind = _check_kind(path)
            if kind == "empty" and read_only:
                raise StoreError(f"no index at {path}: run `localrag index FOLDER` first")
            if read_only:
                db = _connect_read_only(path)
            else:
                tighten(path, PRIVATE_FILE_MODE)  # earlier versions made it 0644
                for suffix in ("-wal", "-shm"):
                    tighten(Path(f"{path}{suffix}"), PRIVATE_FILE_MODE)
                db = _connect(path, "rw")
            store = cls(path, db, read_only=read_only)
            _configure(db)
            if read_only:
                store._check_readable_schema()
            else:
                _retry_locked(lambda: db.execute("PRAGMA journal_mode = WAL"))
                # NORMAL in WAL mode never corrupts; a power cut may drop the last commits only.
                db.execute("PRAGMA synchronous = NORMAL")
                # After a checkpoint the WAL is cut back to nothing, so old page images (the
                # text of deleted files among them) do not stay in its unused tail.
                db.execute("PRAGMA journal_size_limit = 0")
                _retry_locked(store._migrate)
        except sqlite3.DatabaseError as exc:
            if _is_disk_full(exc):
                raise DiskFullError(_disk_full_message(path)) from exc
            raise StoreError(f"{path} is not a usable localrag index: {exc}") from exc
        return store

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_readable_schema(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer localrag (schema {version}); upgrade localrag"
            )

    def check_file(self) -> None:
        """Raise DatabaseGone if the file this store opened was deleted or replaced.

        SQLite keeps writing to an unlinked file in WAL mode without a word, and everything
        written there is lost when the connection closes.
        """
        try:
            now = _file_id(self.path)
        except FileNotFoundError:
            raise DatabaseGone(
                f"the index {self.path} was deleted while localrag was using it; "
                "nothing more was written to it"
            ) from None
        except OSError:
            return  # cannot tell (e.g. a folder made unreadable): let SQLite report problems
        if now != self._file_id:
            raise DatabaseGone(
                f"the index {self.path} was replaced by another file while localrag was using "
                "it; nothing more was written to the old one"
            )

    def _migrate(self) -> None:
        while True:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} was written by a newer localrag (schema {version}); "
                    "upgrade localrag"
                )
            if version == SCHEMA_VERSION:
                return
            # executescript commits whatever is open first, so the script carries its own
            # BEGIN/COMMIT: the schema change and the version bump land together or not at all.
            try:
                self.db.executescript(
                    f"BEGIN IMMEDIATE;\n{MIGRATIONS[version]}\n"
                    f"PRAGMA user_version = {version + 1};\nCOMMIT;"
                )
            except sqlite3.OperationalError:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                # Another process opening the same new database may have migrated between
                # our read of the version and our lock: then go on from where it got to.
                if self.db.execute("PRAGMA user_version").fetchone()[0] == version:
                    raise
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """BEGIN IMMEDIATE so a writer never fails half-way on a lock upgrade.

        Everything inside commits together or not at all. A full disk becomes DiskFullError
        and a deleted or replaced database file DatabaseGone, after the rollback.
        """
        self.check_file()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._write_error(exc) from exc
        try:
            yield self.db
            self.check_file()  # deleted meanwhile: roll back rather than commit into no file
            self.db.execute("COMMIT")
        except BaseException as exc:
            if self.db.in_transaction:
                # SQLite has rolled back by itself after some errors: nothing to undo then.
                with suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise self._write_error(exc) from exc
            raise

    def _write_error(self, exc: sqlite3.OperationalError) -> Exception:
        if _is_disk_full(exc):
            return DiskFullError(_disk_full_message(self.path))
        return exc

    def checkpoint(self) -> None:
        """Move the WAL into the database and empty it: deleted text leaves the WAL too."""
        if self.read_only:
            return
        # Busy readers or a full disk: the next checkpoint (or the last close) does it.
        with suppress(sqlite3.OperationalError):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read transaction: every query inside sees the same committed state."""
        self.db.execute("BEGIN")
        try:
            yield self.db
        finally:
            self.db.execute("COMMIT")

    # -- metadata and the embedding model -----------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def model_identity(self) -> dict[str, Any] | None:
        raw = self.get_meta("embedder")
        return json.loads(raw) if raw else None

    def bind_embedder(self, name: str, dim: int, fingerprint: str) -> None:
        """Record the model on first use; refuse a different one afterwards."""
        if self.model_identity() is None:
            wanted = identity_record(name, dim, fingerprint)
            with self.transaction() as db:
                # Checked again under the write lock: two first runs on one new database
                # must not both record it.
                if db.execute("SELECT 1 FROM meta WHERE key = 'embedder'").fetchone() is None:
                    db.execute(
                        "INSERT INTO meta(key, value) VALUES ('embedder', ?)",
                        (json.dumps(wanted),),
                    )
                    db.execute(
                        f"CREATE VIRTUAL TABLE embedding_bits USING vec0(embedding bit[{dim}])"
                    )
        self.check_embedder(name, dim, fingerprint)
        self._bound_identity = identity_record(name, dim, fingerprint)

    def check_embedder(self, name: str, dim: int, fingerprint: str) -> None:
        """Vectors from two models are not comparable: say so instead of returning garbage."""
        wanted = identity_record(name, dim, fingerprint)
        stored = self.model_identity()
        if stored is not None and stored != wanted and self.reembed_target() == wanted:
            done, total = self.reembed_counts()
            raise ModelMismatchError(
                f"this index ({self.path}) is being moved from embedding model "
                f"{stored['name']} to {name}, and the move is not finished ({done} of {total} "
                f"passages re-embedded). Finish it with `localrag index --reembed --embedder "
                f"{embedder_folder_name(name)}`, or use {stored['name']} until then."
            )
        if stored is not None and stored != wanted:
            raise ModelMismatchError(
                f"this index ({self.path}) was built with embedding model {stored['name']} "
                f"(dim {stored['dim']}, fingerprint {stored['fingerprint'][:12]}), but the "
                f"model in use is {name} (dim {dim}, fingerprint {fingerprint[:12]}). "
                f"Use the original model, or move the index to this one with `localrag index "
                f"--reembed --embedder {embedder_folder_name(name)}`, or index into "
                "a new database with --db."
            )

    # -- moving the index to another embedding model ------------------------------------------
    #
    # The new model's vectors are made for the stored passages (no file is read again) and
    # kept in `reembed_vectors`, keyed by passage text hash and committed batch by batch,
    # while the index goes on answering with its current model. `finish_reembed` swaps them
    # in, with the new identity, in one transaction. A run that stops half-way leaves an index
    # that works as before, and the next run carries on from the vectors already made.

    def reembed_target(self) -> dict[str, Any] | None:
        """The model a re-embed under way is moving this index to; None when there is none."""
        raw = self.get_meta("reembed")
        return json.loads(raw) if raw else None

    def begin_reembed(self, name: str, dim: int, fingerprint: str) -> bool:
        """Start moving the index to this model, or carry on an earlier move to it (False)."""
        wanted = identity_record(name, dim, fingerprint)
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'reembed'").fetchone()
            has_table = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'reembed_vectors'"
            ).fetchone()
            if row is not None and json.loads(row[0]) == wanted and has_table:
                return False
            # A move to another model was under way: its vectors are of no use for this one.
            db.execute("DROP TABLE IF EXISTS reembed_vectors")
            db.execute(
                "CREATE TABLE reembed_vectors ("
                "text_hash TEXT PRIMARY KEY, vector BLOB NOT NULL, "
                "recut INTEGER NOT NULL DEFAULT 0)"
            )
            db.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('reembed', ?)",
                (json.dumps(wanted),),
            )
        return True

    def cancel_reembed(self) -> None:
        """Forget a move under way (the index stays with its current model)."""
        with self.transaction() as db:
            db.execute("DROP TABLE IF EXISTS reembed_vectors")
            db.execute("DELETE FROM meta WHERE key = 'reembed'")

    def reembed_pending(self, after_id: int, limit: int) -> list[tuple[int, str, str, str]]:
        """Up to `limit` stored vectors the new model has not redone, by id above `after_id`:
        (embedding id, text hash, heading, text) of one passage that uses each."""
        rows = self.db.execute(
            "SELECT e.id, e.text_hash, c.heading, c.text FROM embeddings e "
            "JOIN chunks c ON c.id = (SELECT min(id) FROM chunks WHERE embedding_id = e.id) "
            "WHERE e.id > ? AND NOT EXISTS "
            "(SELECT 1 FROM reembed_vectors r WHERE r.text_hash = e.text_hash) "
            "ORDER BY e.id LIMIT ?",
            (after_id, limit),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def save_reembedded(self, vectors: dict[str, np.ndarray], recut: dict[str, int]) -> None:
        """Keep a batch of the new model's vectors (one transaction). `recut` marks passages
        whose files must be cut again after the switch: 1, longer than the new model reads;
        2, a passage whose embedded text could not be rebuilt from the stored one."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO reembed_vectors(text_hash, vector, recut) VALUES (?, ?, ?)",
                [(h, _vector_blob(v), recut.get(h, 0)) for h, v in vectors.items()],
            )

    def reembed_counts(self) -> tuple[int, int]:
        """(passage vectors the new model has made, passage vectors in use)."""
        in_use = "EXISTS (SELECT 1 FROM chunks c WHERE c.embedding_id = e.id)"
        total = self.db.execute(f"SELECT count(*) FROM embeddings e WHERE {in_use}").fetchone()
        done = self.db.execute(
            "SELECT count(*) FROM embeddings e "
            f"JOIN reembed_vectors r ON r.text_hash = e.text_hash WHERE {in_use}"
        ).fetchone()
        return int(done[0]), int(total[0])

    def finish_reembed(self, name: str, dim: int, fingerprint: str) -> int | None:
        """Switch the index to the new model in one transaction, if every passage in use has
        its new vector; None when some have not (another process indexed meanwhile).
        Returns how many documents must be cut into passages again (their mtime and hash are
        cleared, so the next pass re-reads them)."""
        wanted = identity_record(name, dim, fingerprint)
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'reembed'").fetchone()
            if row is None or json.loads(row[0]) != wanted:
                raise StoreError(f"no move of {self.path} to {name} is under way")
            # Vectors no passage uses would otherwise stay behind in the old model's space.
            unused = "NOT EXISTS (SELECT 1 FROM chunks c WHERE c.embedding_id = embeddings.id)"
            db.execute(
                "DELETE FROM embedding_bits WHERE rowid IN "
                f"(SELECT id FROM embeddings WHERE {unused})"
            )
            db.execute(f"DELETE FROM embeddings WHERE {unused}")
            missing = db.execute(
                "SELECT count(*) FROM embeddings e WHERE NOT EXISTS "
                "(SELECT 1 FROM reembed_vectors r WHERE r.text_hash = e.text_hash)"
            ).fetchone()[0]
            if missing:
                return None
            # No mtime matches -1 and no content matches NULL: the next pass reads them again.
            recut = db.execute(
                "UPDATE documents SET mtime_ns = -1, content_hash = NULL WHERE id IN ("
                "SELECT c.document_id FROM chunks c JOIN embeddings e ON e.id = c.embedding_id "
                "JOIN reembed_vectors r ON r.text_hash = e.text_hash WHERE r.recut != 0)"
            ).rowcount
            db.execute(
                "UPDATE embeddings SET vector = (SELECT r.vector FROM reembed_vectors r "
                "WHERE r.text_hash = embeddings.text_hash)"
            )
            # A vector made from a rebuilt text must not be reused for the true text.
            db.execute(
                "UPDATE embeddings SET text_hash = 'stale:' || text_hash WHERE text_hash IN "
                "(SELECT text_hash FROM reembed_vectors WHERE recut = 2)"
            )
            db.execute("DROP TABLE IF EXISTS embedding_bits")
            db.execute(f"CREATE VIRTUAL TABLE embedding_bits USING vec0(embedding bit[{dim}])")
            db.execute(
                "INSERT INTO embedding_bits(rowid, embedding) "
                "SELECT id, vec_quantize_binary(vector) FROM embeddings"
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'embedder'", (json.dumps(wanted),))
            db.execute("DELETE FROM meta WHERE key = 'reembed'")
            db.execute("DROP TABLE reembed_vectors")
        self.checkpoint()  # the old vectors leave the WAL too
        return int(recut)

    # -- roots --------------------------------------------------------------------------------

    def add_root(self, path: str) -> Root:
        """Register a folder. Nested roots are folded together so no file belongs to two."""
        for root in self.roots():
            if is_within(path, root.path):
                return root
        with self.transaction() as db:
            # Looked at again under the write lock: another process may have added it.
            existing = [Root(*r) for r in db.execute("SELECT id, path FROM roots")]
            for root in existing:
                if is_within(path, root.path):
                    return root
            cur = db.execute(
                "INSERT INTO roots(path, added_at) VALUES (CAST(? AS TEXT), ?)",
                (_text(path), time.time()),
            )
            new = Root(int(cur.lastrowid or 0), path)
            for old in existing:
                if is_within(old.path, path):
                    db.execute(
                        "UPDATE documents SET root_id = ? WHERE root_id = ?", (new.id, old.id)
                    )
                    db.execute("DELETE FROM roots WHERE id = ?", (old.id,))
        return new

    def roots(self) -> list[Root]:
        return [Root(*r) for r in self.db.execute("SELECT id, path FROM roots ORDER BY path")]

    def forget_root(self, path: str) -> bool:
        """Drop a root and everything indexed from it, securely: its documents and chunks go
        (cascade), then the vectors no other file shares, then the WAL is emptied, so the
        text stays neither in free pages nor in the log. False: no such root."""
        with self.transaction() as db:
            cur = db.execute("DELETE FROM roots WHERE path = CAST(? AS TEXT)", (_text(path),))
            if cur.rowcount == 0:
                return False
        self.collect_garbage()
        self.checkpoint()
        return True

    # -- documents ----------------------------------------------------------------------------

    def documents_in_root(self, root_id: int) -> dict[str, DocumentRow]:
        rows = self.db.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE root_id = ?", (root_id,)
        )
        return {r[1]: DocumentRow(*r) for r in rows}

    def documents_at(self, paths: Iterable[str]) -> dict[str, DocumentRow]:
        """Documents at these paths, or below them for paths that are (or were) folders."""
        found: dict[str, DocumentRow] = {}
        for path in paths:
            below = path.rstrip(os.sep) + os.sep
            # `below` up to (not including) the same prefix with the separator's successor:
            # a range the path index answers, unlike LIKE.
            rows = self.db.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents WHERE path = CAST(? AS TEXT) "
                "OR (path >= CAST(? AS TEXT) AND path < CAST(? AS TEXT))",
                (_text(path), _text(below), _text(below[:-1] + chr(ord(os.sep) + 1))),
            )
            found.update((r[1], DocumentRow(*r)) for r in rows)
        return found

    def document(self, path: str) -> DocumentRow | None:
        row = self.db.execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE path = CAST(? AS TEXT)", (_text(path),)
        )
        found = row.fetchone()
        return DocumentRow(*found) if found else None

    def touch_document(self, doc_id: int, size: int, mtime_ns: int) -> None:
        """Same content, new timestamp: remember it so the next run skips the hash too."""
        with self.transaction() as db:
            db.execute(
                "UPDATE documents SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, doc_id)
            )

    def move_document(
        self, doc_id: int, new_path: str, root_id: int, size: int, mtime_ns: int
    ) -> None:
        """A renamed or moved file keeps its chunks and vectors."""
        with self.transaction() as db:
            db.execute(
                "DELETE FROM documents WHERE path = CAST(? AS TEXT) AND id != ?",
                (_text(new_path), doc_id),
            )
            db.execute(
                "UPDATE documents SET path = CAST(? AS TEXT), root_id = ?, size = ?, mtime_ns = ? "
                "WHERE id = ?",
                (_text(new_path), root_id, size, mtime_ns, doc_id),
            )

    def delete_documents(self, paths: Iterable[str]) -> int:
        with self.transaction() as db:
            sql = "DELETE FROM documents WHERE path = CAST(? AS TEXT)"
            return sum(db.execute(sql, (_text(p),)).rowcount for p in paths)

    def record_unindexed(
        self,
        *,
        path: str,
        root_id: int,
        size: int,
        mtime_ns: int,
        status: str,
        reason: str,
        content_hash: str | None = None,
    ) -> None:
        """A file that yields no chunks (skipped or failed), with why; its old chunks go."""
        with self.transaction() as db:
            db.execute("DELETE FROM documents WHERE path = CAST(? AS TEXT)", (_text(path),))
            db.execute(
                "INSERT INTO documents(path, root_id, size, mtime_ns, content_hash, status, "
                "reason, chunk_count, indexed_at) "
                "VALUES (CAST(? AS TEXT), ?, ?, ?, ?, ?, CAST(? AS TEXT), 0, ?)",
                (
                    _text(path),
                    root_id,
                    size,
                    mtime_ns,
                    content_hash,
                    status,
                    _text(reason),
                    time.time(),
                ),
            )

    def known_text_hashes(self, text_hashes: Iterable[str]) -> set[str]:
        unique = list(set(text_hashes))
        found: set[str] = set()
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            found.update(
                r[0]
                for r in self.db.execute(
                    f"SELECT text_hash FROM embeddings WHERE text_hash IN ({marks})", part
                )
            )
        return found

    def replace_document(self, doc: PendingDocument, new_vectors: dict[str, np.ndarray]) -> int:
        """Swap a file's stored chunks for new ones atomically; returns the document id.

        `new_vectors` holds embeddings for text hashes not yet stored; the rest are reused.
        """
        with self.transaction() as db:
            db.execute("DELETE FROM documents WHERE path = CAST(? AS TEXT)", (_text(doc.path),))
            cur = db.execute(
                "INSERT INTO documents(path, root_id, size, mtime_ns, content_hash, format, title, "
                "status, reason, chunk_count, indexed_at) "
                "VALUES (CAST(? AS TEXT), ?, ?, ?, ?, ?, ?, 'indexed', NULL, ?, ?)",
                (
                    _text(doc.path),
                    doc.root_id,
                    doc.size,
                    doc.mtime_ns,
                    doc.content_hash,
                    doc.format,
                    doc.title,
                    len(doc.chunks),
                    time.time(),
                ),
            )
            doc_id = int(cur.lastrowid or 0)
            embedding_ids = self._ensure_embeddings(db, doc.text_hashes, new_vectors)
            db.executemany(
                "INSERT INTO chunks(document_id, ordinal, text, heading, char_start, char_end, "
                "line_start, line_end, page_start, page_end, token_count, embedding_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        doc_id,
                        c.ordinal,
                        c.text,
                        c.heading,
                        c.char_start,
                        c.char_end,
                        c.line_start,
                        c.line_end,
                        c.page_start,
                        c.page_end,
                        c.token_count,
                        embedding_ids[h],
                    )
                    for c, h in zip(doc.chunks, doc.text_hashes, strict=True)
                ],
            )
        return doc_id

    def _ensure_embeddings(
        self, db: Connection, text_hashes: Sequence[str], new_vectors: dict[str, np.ndarray]
    ) -> dict[str, int]:
        ids: dict[str, int] = {}
        wanted = list(dict.fromkeys(text_hashes))
        for text_hash in wanted:
            row = db.execute(
                "SELECT id FROM embeddings WHERE text_hash = ?", (text_hash,)
            ).fetchone()
            if row:
                ids[text_hash] = row[0]
        # Reused vectors can vanish between the check and this transaction when another
        # process (a watcher, an index run) collects garbage: the caller embeds and retries.
        gone = [h for h in wanted if h not in ids and h not in new_vectors]
        if gone:
            raise VectorsGone(gone)
        if len(ids) < len(wanted):
            self._check_still_bound()  # inside this transaction: under the write lock
        for text_hash in wanted:
            if text_hash in ids:
                continue
            vector = new_vectors[text_hash]
            blob = _vector_blob(vector)
            cur = db.execute(
                "INSERT INTO embeddings(text_hash, vector) VALUES (?, ?)", (text_hash, blob)
            )
            new_id = int(cur.lastrowid or 0)
            db.execute(
                "INSERT INTO embedding_bits(rowid, embedding) VALUES (?, vec_quantize_binary(?))",
                (new_id, blob),
            )
            ids[text_hash] = new_id
        return ids

    def _check_still_bound(self) -> None:
        """Before new vectors go in (in the writing transaction): are they still in the
        index's model? `index --reembed` in another process may have switched it since."""
        if self._bound_identity is None:
            return
        current = self.model_identity()
        if current is not None and current != self._bound_identity:
            raise IndexModelChanged(
                f"this index ({self.path}) was moved to embedding model {current['name']} "
                f"while this process was indexing with {self._bound_identity['name']}; "
                "its vectors were not stored. Index with "
                f"`--embedder {embedder_folder_name(str(current['name']))}` from now on.",
                current,
            )

    def collect_garbage(self) -> int:
        """Drop vectors no chunk uses any more (kept until now so moves can reuse them)."""
        with self.transaction() as db:
            orphans = [
                r[0]
                for r in db.execute(
                    "SELECT e.id FROM embeddings e "
                    "WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.embedding_id = e.id)"
                )
            ]
            for start in range(0, len(orphans), 500):
                part = orphans[start : start + 500]
                marks = ",".join("?" * len(part))
                db.execute(f"DELETE FROM embeddings WHERE id IN ({marks})", part)
                db.execute(f"DELETE FROM embedding_bits WHERE rowid IN ({marks})", part)
        return len(orphans)

    # -- search -------------------------------------------------------------------------------

    def has_vectors(self) -> bool:
        return self.model_identity() is not None

    def knn_candidates(self, query: np.ndarray, k: int) -> list[int]:
        """Embedding ids nearest by Hamming distance of the sign bits: a cheap first pass."""
        rows = self.db.execute(
            "SELECT rowid FROM embedding_bits "
            "WHERE embedding MATCH vec_quantize_binary(?) AND k = ?",
            (_vector_blob(query), k),
        )
        return [r[0] for r in rows]

    def vectors(self, embedding_ids: Sequence[int]) -> tuple[list[int], np.ndarray]:
        """Float vectors for the given ids (ids returned in matching order)."""
        ids: list[int] = []
        blobs: list[bytes] = []
        for start in range(0, len(embedding_ids), 500):
            part = list(embedding_ids[start : start + 500])
            marks = ",".join("?" * len(part))
            for row in self.db.execute(
                f"SELECT id, vector FROM embeddings WHERE id IN ({marks})", part
            ):
                ids.append(row[0])
                blobs.append(row[1])
        if not blobs:
            return [], np.zeros((0, 0), dtype=np.float32)
        return ids, np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), -1)

    def exact_vector_search(
        self, query: np.ndarray, k: int, path_filter: str
    ) -> list[tuple[int, float]]:
        """Exact cosine over the chunks of matching paths only: for filtered searches."""
        rows = self.db.execute(
            "SELECT c.id, vec_distance_cosine(e.vector, ?) AS dist "
            "FROM chunks c JOIN documents d ON d.id = c.document_id "
            "JOIN embeddings e ON e.id = c.embedding_id "
            f"WHERE {_path_clause(path_filter)} ORDER BY dist LIMIT ?",
            (_vector_blob(query), *_path_args(path_filter), k),
        )
        return [(r[0], 1.0 - r[1]) for r in rows]

    def chunks_for_embeddings(
        self, embedding_ids: Sequence[int], path_filter: str | None = None
    ) -> dict[int, list[int]]:
        """embedding id → chunk ids using it (identical passages in several files)."""
        found: dict[int, list[int]] = {}
        for start in range(0, len(embedding_ids), 500):
            part = list(embedding_ids[start : start + 500])
            marks = ",".join("?" * len(part))
            sql = (
                "SELECT c.embedding_id, c.id FROM chunks c "
                "JOIN documents d ON d.id = c.document_id "
                f"WHERE c.embedding_id IN ({marks})"
            )
            args: list[Any] = part
            if path_filter:
                sql += f" AND {_path_clause(path_filter)}"
                args = [*part, *_path_args(path_filter)]
            for emb_id, chunk_id in self.db.execute(sql + " ORDER BY c.id", args):
                found.setdefault(emb_id, []).append(chunk_id)
        return found

    def fts_search(
        self, match: str, k: int, path_filter: str | None = None
    ) -> list[tuple[int, float]]:
        """Chunk ids and BM25 scores (higher is better) for an already-escaped FTS5 query."""
        rank = "bm25(chunks_fts, 1.0, 0.5)"
        if not path_filter:  # no join: it would run for every matching row before the LIMIT
            rows = self.db.execute(
                f"SELECT rowid, -{rank} FROM chunks_fts WHERE chunks_fts MATCH ? "
                f"ORDER BY {rank} LIMIT ?",
                (match, k),
            )
            return [(r[0], r[1]) for r in rows]
        rows = self.db.execute(
            f"SELECT f.rowid, -{rank} FROM chunks_fts f "
            "JOIN chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.document_id "
            f"WHERE chunks_fts MATCH ? AND {_path_clause(path_filter)} ORDER BY {rank} LIMIT ?",
            (match, *_path_args(path_filter), k),
        )
        return [(r[0], r[1]) for r in rows]

    def chunks_with_term(self, term: str, limit: int) -> set[int]:
        """Ids of up to `limit` chunks containing `term` (a quoted FTS5 string)."""
        rows = self.db.execute(
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?", (term, limit)
        )
        return {r[0] for r in rows}

    def chunk_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def passage_frame(self) -> list[tuple[int, str, int, int]]:
        """(chunk id, document path, characters, embedding id) of every chunk of an indexed
        document, by path and position: what fine-tuning data samples passages from."""
        rows = self.db.execute(
            "SELECT c.id, d.path, length(c.text), c.embedding_id FROM chunks c "
            "JOIN documents d ON d.id = c.document_id WHERE d.status = 'indexed' "
            "ORDER BY d.path, c.ordinal"
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def chunk_hits(self, chunk_ids: Sequence[int]) -> dict[int, ChunkHit]:
        hits: dict[int, ChunkHit] = {}
        for start in range(0, len(chunk_ids), 500):
            part = list(chunk_ids[start : start + 500])
            marks = ",".join("?" * len(part))
            for row in self.db.execute(
                f"SELECT {_HIT_COLUMNS} FROM chunks c JOIN documents d ON d.id = c.document_id "
                f"WHERE c.id IN ({marks})",
                part,
            ):
                hits[row[0]] = ChunkHit(*row)
        return hits

    # -- questions about the collection --------------------------------------------------------

    def documents_matching(self, match: str) -> list[DocumentMatch]:
        """Every document with a chunk matching an escaped FTS5 query, most matching passages first.

        Not capped: "which files mention X" must count all of them, not the top k passages.
        """
        # SQLite fills the bare column c.id from the row that min() picked: the first match.
        rows = self.db.execute(
            "SELECT c.document_id, d.path, count(*) AS n, c.id, min(c.ordinal) "
            "FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
            "JOIN documents d ON d.id = c.document_id "
            "WHERE chunks_fts MATCH ? GROUP BY c.document_id ORDER BY n DESC, d.path",
            (match,),
        )
        return [DocumentMatch(r[0], r[1], r[2], r[3]) for r in rows]

    def documents_under(self, folder: str, limit: int | None = None) -> list[DocumentInfo]:
        """Documents at or below `folder` (any status), by path; all of them without a limit."""
        below = _below(folder)
        rows = self.db.execute(
            f"SELECT {_INFO_COLUMNS} FROM documents "
            "WHERE path = CAST(? AS TEXT) OR (path >= CAST(? AS TEXT) AND path < CAST(? AS TEXT)) "
            "ORDER BY path LIMIT ?",
            (_text(folder), _text(below), _text(_after(below)), -1 if limit is None else limit),
        )
        return [DocumentInfo(*r) for r in rows]

    def child_folders(self, folder: str) -> list[tuple[str, int]]:
        """(name, documents below it) for each sub-folder of `folder` that holds documents.

        The name "" stands for the documents directly inside `folder`.
        """
        below = _below(folder)
        rows = self.db.execute(
            "WITH rest AS (SELECT substr(path, ?) AS tail FROM documents "
            "WHERE path >= CAST(? AS TEXT) AND path < CAST(? AS TEXT)) "
            "SELECT CASE WHEN instr(tail, ?) > 0 THEN substr(tail, 1, instr(tail, ?) - 1) "
            "ELSE '' END AS child, count(*) FROM rest GROUP BY child ORDER BY child",
            (len(below) + 1, _text(below), _text(_after(below)), os.sep, os.sep),
        )
        return [(r[0], r[1]) for r in rows]

    def paths_containing(self, fragment: str) -> list[str]:
        """Document paths containing `fragment`, ignoring ASCII case (SQLite's lower() is ASCII
        only, so the fragment is lowered the same way); callers check the exact case."""
        rows = self.db.execute(
            "SELECT path FROM documents WHERE instr(lower(path), CAST(? AS TEXT)) > 0 "
            "ORDER BY path",
            (_text(fold_ascii_case(fragment)),),
        )
        return [r[0] for r in rows]

    def document_groups(self) -> list[DocumentGroup]:
        """Document, chunk and byte counts per root, format and status."""
        rows = self.db.execute(
            "SELECT r.path, d.format, d.status, count(*), sum(d.chunk_count), sum(d.size) "
            "FROM documents d JOIN roots r ON r.id = d.root_id "
            "GROUP BY r.path, d.format, d.status ORDER BY r.path, d.format, d.status"
        )
        return [DocumentGroup(*r) for r in rows]

    def chunk_neighbours(self, chunk_id: int, before: int = 1, after: int = 1) -> list[ChunkHit]:
        """The chunk and up to `before`/`after` chunks around it in its document, in order:
        "show more of the file" around a passage. Empty when the chunk no longer exists."""
        rows = self.db.execute(
            f"SELECT {_HIT_COLUMNS} FROM chunks t "
            "JOIN chunks c ON c.document_id = t.document_id "
            "AND c.ordinal BETWEEN t.ordinal - ? AND t.ordinal + ? "
            "JOIN documents d ON d.id = c.document_id "
            "WHERE t.id = ? ORDER BY c.ordinal",
            (max(0, before), max(0, after), chunk_id),
        )
        return [ChunkHit(*r) for r in rows]

    # -- saved conversations ------------------------------------------------------------------

    def create_conversation(self, title: str, now: float | None = None) -> int:
        stamp = time.time() if now is None else now
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO conversations(title, created_at, updated_at) VALUES (?, ?, ?)",
                (title, stamp, stamp),
            )
            return int(cur.lastrowid or 0)

    def append_turn(
        self,
        conversation_id: int,
        *,
        question: str,
        answer: str,
        mode: str,
        search_query: str,
        sources_json: str,
        cited_json: str,
        stopped: bool,
        now: float | None = None,
    ) -> int:
        """Add the next turn and mark the conversation as just used, in one transaction."""
        stamp = time.time() if now is None else now
        with self.transaction() as db:
            bumped = db.execute(
                "UPDATE conversations SET updated_at = ? WHERE id = ?", (stamp, conversation_id)
            ).rowcount
            if not bumped:
                raise StoreError(f"no saved conversation with id {conversation_id}")
            cur = db.execute(
                "INSERT INTO turns(conversation_id, ordinal, question, answer, mode, "
                "search_query, sources, cited, stopped, created_at) "
                "SELECT ?, coalesce(max(ordinal) + 1, 0), CAST(? AS TEXT), CAST(? AS TEXT), ?, "
                "CAST(? AS TEXT), CAST(? AS TEXT), ?, ?, ? FROM turns WHERE conversation_id = ?",
                (
                    conversation_id,
                    _text(question),
                    _text(answer),
                    mode,
                    _text(search_query),
                    _text(sources_json),  # may name a file whose name is not UTF-8
                    cited_json,
                    int(stopped),
                    stamp,
                    conversation_id,
                ),
            )
            return int(cur.lastrowid or 0)

    def conversation_rows(self, limit: int = 200) -> list[ConversationRow]:
        """Saved conversations, most recently used first, with their turn counts."""
        rows = self.db.execute(
            f"{_CONVERSATION_SELECT} GROUP BY c.id ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
            (limit,),
        )
        return [ConversationRow(*r) for r in rows]

    def conversation_row(self, conversation_id: int) -> ConversationRow | None:
        row = self.db.execute(
            f"{_CONVERSATION_SELECT} WHERE c.id = ? GROUP BY c.id", (conversation_id,)
        ).fetchone()
        return ConversationRow(*row) if row else None

    def turn_rows(self, conversation_id: int) -> list[TurnRow]:
        rows = self.db.execute(
            "SELECT id, conversation_id, ordinal, question, answer, mode, search_query, sources, "
            "cited, stopped, created_at FROM turns WHERE conversation_id = ? ORDER BY ordinal",
            (conversation_id,),
        )
        return [
            TurnRow(
                id=r[0],
                conversation_id=r[1],
                ordinal=r[2],
                question=r[3],
                answer=r[4],
                mode=r[5],
                search_query=r[6],
                sources=r[7],
                cited=r[8],
                stopped=bool(r[9]),
                created_at=r[10],
            )
            for r in rows
        ]

    def delete_conversation(self, conversation_id: int) -> bool:
        """Delete a conversation; its turns go with it (ON DELETE CASCADE)."""
        with self.transaction() as db:
            cur = db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))
            return cur.rowcount > 0

    def rename_conversation(self, conversation_id: int, title: str) -> bool:
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id)
            )
            return cur.rowcount > 0

    # -- reporting ----------------------------------------------------------------------------

    def stats(self) -> Stats:
        counts = dict(
            self.db.execute("SELECT status, count(*) FROM documents GROUP BY status").fetchall()
        )
        chunks = self.db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        embeddings = self.db.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        target = self.reembed_target()
        reembed = None
        if target is not None:
            done, total = self.reembed_counts()
            reembed = {"to": target["name"], "done": done, "total": total}
        return Stats(
            roots=[r.path for r in self.roots()],
            documents=sum(counts.values()),
            indexed=counts.get("indexed", 0),
            skipped=counts.get("skipped", 0),
            errors=counts.get("error", 0),
            chunks=chunks,
            embeddings=embeddings,
            model=self.model_identity(),
            db_bytes=size,
            reembed=reembed,
        )

    def problems(self, status: str | None = None) -> list[tuple[str, str, str]]:
        """(path, status, reason) of files that were skipped or failed."""
        sql = "SELECT path, status, reason FROM documents WHERE status != 'indexed'"
        args: tuple[str, ...] = ()
        if status:
            sql += " AND status = ?"
            args = (status,)
        return list(self.db.execute(sql + " ORDER BY status, path", args))

    def integrity_check(self) -> str:
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])


def _retry_locked(step: Callable[[], object], seconds: float = 10.0) -> None:
    """Run a set-up step, retrying while another connection is creating the same database.

    Setting WAL mode and the first migration need the write lock, and while a new file is
    still in rollback-journal mode SQLite reports "locked" at once instead of waiting (to
    avoid a deadlock), so several processes opening one new database must take turns.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


_GLOB_CHARS = frozenset("*?[")


def _path_clause(path_filter: str) -> str:
    """A glob when the filter has glob characters, else a substring of the path."""
    if _GLOB_CHARS & set(path_filter):
        return "d.path GLOB CAST(? AS TEXT)"
    return "instr(d.path, CAST(? AS TEXT)) > 0"


def _path_args(path_filter: str) -> list[str | bytes]:
    if _GLOB_CHARS & set(path_filter):
        return [_text(path_filter if path_filter.startswith("*") else "*" + path_filter)]
    return [_text(path_filter)]


def _below(folder: str) -> str:
    """The prefix every path inside `folder` starts with."""
    return folder.rstrip(os.sep) + os.sep


def _after(prefix: str) -> str:
    """The smallest string above every string starting with `prefix` (which ends with a
    separator): with `prefix` it bounds a range the path index answers, unlike LIKE."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_ascii_case(text: str) -> str:
    """Lower-case A-Z only, as SQLite's lower() does: callers confirm what SQL matched."""
    return text.translate(_ASCII_LOWER)


def _file_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _uri(path: Path, **params: str) -> str:
    # Quoted from the raw bytes: names with '?', '#', '%' or invalid UTF-8 stay exact.
    quoted = urllib.parse.quote(os.fsencode(os.path.abspath(path)))
    return f"file:{quoted}?{urllib.parse.urlencode(params)}"


def _connect(path: Path, mode: str, **params: str) -> Connection:
    db = sqlite3.connect(
        _uri(path, mode=mode, **params), uri=True, isolation_level=None, check_same_thread=False
    )
    db.text_factory = _decode_text
    return db


def _connect_read_only(path: Path) -> Connection:
    """A read-only connection; on a read-only disk (no WAL index can be made), immutable."""
    db = _connect(path, "ro")
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", None) != _SQLITE_CANTOPEN:
            raise
        db.close()
        # Nothing can write to a folder we cannot even create the WAL index in, so reading
        # the file as immutable (no locks, no shared memory) is safe.
        db = _connect(path, "ro", immutable="1")
    return db


def _configure(db: Connection) -> None:
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.enable_load_extension(False)
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA foreign_keys = ON")
    # Freed pages and cells are overwritten with zeros, not left holding deleted text.
    db.execute("PRAGMA secure_delete = ON")


def _check_kind(path: Path) -> str:
    """Return "empty" or "ours", or raise: whether `path` may be used as a localrag index.

    Looked at through a read-only connection, so another program's database is refused
    without a byte of it changed (not even a WAL switch or a checkpoint).
    """
    db = _connect_read_only(path)
    try:
        db.execute("BEGIN")  # one snapshot: another process may be creating the file right now
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        names = sorted(
            r[0]
            for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        )
    finally:
        db.close()
    if app_id == APPLICATION_ID:
        return "ours"
    if app_id == 0 and version == 0 and not names:
        return "empty"
    if app_id == 0 and version >= 1 and set(names) >= _CORE_TABLES:
        return "ours"  # made before localrag set application_id
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    holds = f"it holds {len(names)} other tables: {shown}" if names else "it has another owner"
    raise StoreError(
        f"{path} is a SQLite database but not a localrag index ({holds}); it was left "
        "untouched. Give localrag a file of its own with --db."
    )


# TEXT back to str, restoring the surrogate escapes of file names stored as raw bytes.
_decode_text = functools.partial(bytes.decode, encoding="utf-8", errors="surrogateescape")


def _text(value: str) -> str | bytes:
    """A str SQLite can take: invalid UTF-8 (surrogate escapes) goes as its raw bytes, which
    the SQL casts back to TEXT with `CAST(? AS TEXT)`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")
    return value


def _is_disk_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == _SQLITE_FULL:
        return True
    return "database or disk is full" in str(exc)


def _disk_full_message(path: Path) -> str:
    try:
        usage = os.statvfs(path.parent)
        free = f"{usage.f_bavail * usage.f_frsize / 1_000_000:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return (
        f"the disk holding the index {path} is full ({free}): the change in hand was rolled "
        "back, and everything saved before it is kept."
    )
