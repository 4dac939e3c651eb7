"""One pass over folders: bring the store in line with the disk, embedding only what changed.

Per file, cheapest check first: size and mtime unchanged → nothing at all; content hash
unchanged → only the timestamp is updated; content equal to a file that disappeared → the file
was moved, so its row is re-pointed. Only then is a file parsed and chunked, and only chunks
whose text is not stored yet are embedded. Chunks from several files are embedded together
(full batches keep the model busy) and each file is then committed in its own transaction, so
an interrupted run keeps everything finished so far and the next run continues from there.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from localrag.chunking import MIN_MAX_TOKENS, chunk_document
from localrag.config import IndexSettings
from localrag.embedder import Embedder
from localrag.errors import ConfigError, ParseError, SkipFile, VectorsGone
from localrag.file_read import read_regular_file, too_big_reason
from localrag.parsers import parse_file
from localrag.paths import is_within
from localrag.store import DocumentRow, PendingDocument, Root, Store
from localrag.walker import IGNORE_FILES, FileEntry, RootFilter, WalkProblem

# How many files are read and parsed ahead of the embedder, in a helper thread, and how many
# bytes of them: prepared passages take a few times their file's size.
_PREFETCH = 8
_PREFETCH_BYTES = 32 * 1024 * 1024


EventKind = Literal["scanned", "file", "embedded", "deleted", "done"]
# What became of one file; "vanished": it was deleted while being read.
FileStatus = Literal["added", "updated", "unchanged", "moved", "skipped", "error", "vanished"]
NotIndexed = Literal["skipped", "error"]


@dataclass(frozen=True)
class IndexEvent:
    """Progress for whoever shows it (CLI progress bar, TUI status bar, watcher)."""

    kind: EventKind
    path: str | None = None
    status: FileStatus | None = None  # for "file"
    detail: str | None = None
    files_total: int = 0
    files_done: int = 0
    chunks_embedded: int = 0


EventHandler = Callable[[IndexEvent], None]


@dataclass
class IndexReport:
    files_seen: int = 0
    unchanged: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    deleted: int = 0
    skipped: int = 0
    failed: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    seconds: float = 0.0
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return self.added + self.updated + self.moved + self.deleted


def indexable_path(path: Path | str) -> Path:
    """`path` made absolute, if it can be a root: a folder, or one file.

    A file is recorded as a root of its own (not its parent folder), so refreshing
    everything (`localrag index` with no PATHS, `watch`, the TUI) keeps to that file and never
    starts indexing the folder around it. A folder added later that holds it absorbs it
    (`Store.add_root` folds nested roots together).
    """
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise ConfigError(f"does not exist: {resolved}")
    if not (resolved.is_dir() or resolved.is_file()):
        raise ConfigError(f"not a file or folder: {resolved}")
    return resolved


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@dataclass
class _Prepared:
    """The outcome of reading one file, computed ahead of the embedder."""

    entry: FileEntry
    root: Root
    existing: DocumentRow | None
    hash: str | None = None
    pending: PendingDocument | None = None
    status: NotIndexed | None = None  # when there is nothing to embed
    reason: str | None = None
    vanished: bool = False

    @property
    def content_unchanged(self) -> bool:
        """Same bytes as the indexed version: only the timestamp needs updating."""
        e = self.existing
        return e is not None and e.status == "indexed" and e.content_hash == self.hash


class Indexer:
    """Index roots into a store with one embedder. Not thread-safe: one run at a time."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        settings: IndexSettings | None = None,
        on_event: EventHandler | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or IndexSettings()
        self.on_event = on_event or (lambda event: None)
        self._done = 0
        self._total = 0
        self._filters: dict[int, RootFilter] = {}  # rule files read so far, per root id
        identity = embedder.identity
        store.bind_embedder(identity.name, identity.dim, identity.fingerprint)
        limit = embedder.max_tokens
        wanted = self.settings.chunk_tokens
        if wanted is not None and wanted < MIN_MAX_TOKENS:
            raise ConfigError(
                f"chunk_tokens must be at least {MIN_MAX_TOKENS} (passage size in embedder "
                f"tokens; the embedder takes up to {limit}), not {wanted}"
            )
        self.chunk_tokens = min(wanted or limit, limit)

    # -- public -------------------------------------------------------------------------------

    def index(self, roots: Sequence[Path]) -> IndexReport:
        """Index each root, a folder or a file (adding it to the knowledge base), and return
        what happened."""
        started = time.perf_counter()
        report = IndexReport()
        self._filters.clear()  # rule files may have changed since the last pass
        # (root, its files, paths the walk failed on, the one file asked for or None: all)
        targets: list[tuple[Root, list[FileEntry], set[str], str | None]] = []
        for given in roots:
            path = indexable_path(given)
            root = self.store.add_root(str(path))
            # A file inside a folder already indexed stays part of that folder (add_root
            # folds it in): only this file is looked at, not the whole folder.
            only = str(path) if root.path != str(path) and path.is_file() else None
            targets.append((root, *self._scan(root, report, only), only))
        total = sum(len(entries) for _, entries, _, _ in targets)
        self.on_event(IndexEvent("scanned", files_total=total))
        self._done = 0
        self._total = total
        for root, entries, problem_paths, only in targets:
            if only is None:
                stored = self.store.documents_in_root(root.id)
            else:
                stored = self.store.documents_at([only])
            self._index_root(root, entries, problem_paths, stored, report)
        if report.changed or report.failed or report.skipped:
            self.store.collect_garbage()  # only replaced or deleted files leave orphans
            self.store.checkpoint()  # and the deleted text leaves the WAL too
        report.seconds = time.perf_counter() - started
        self.on_event(
            IndexEvent(
                "done",
                files_total=total,
                files_done=self._done,
                chunks_embedded=report.chunks_embedded,
            )
        )
        return report

    def update(
        self, paths: Iterable[str], *, interrupt: Callable[[], bool] | None = None
    ) -> tuple[IndexReport, list[str]]:
        """Bring just these paths up to date: files or folders, still there or gone.

        This is the watcher's entry point. Paths outside the known roots are ignored; a changed
        rule file (.gitignore, .localragignore) re-checks its whole folder. When `interrupt`
        returns True the files prepared so far are finished and the rest is returned, to be
        passed again later. Vectors of deleted files are kept until `Store.collect_garbage`,
        so a file that reappears in a later call (a move seen in two parts) is not re-embedded.
        """
        started = time.perf_counter()
        report = IndexReport()
        left: list[str] = []
        by_root = self._targets_by_root(paths, report)
        for number, (root, targets) in enumerate(by_root):
            rules = self._filter(root)
            entries: dict[str, FileEntry] = {}
            problem_paths: set[str] = set()
            for target in targets:  # in the caller's order: the watcher puts newest first
                items = rules.walk(target) if os.path.isdir(target) else [rules.check(target)]
                for item in items:
                    if isinstance(item, WalkProblem):
                        problem_paths.add(item.path)
                        self._walk_problem(root, item, report)
                    elif item is not None:
                        entries[item.path] = item
            report.files_seen += len(entries)
            stored = self.store.documents_at(targets)
            self._done, self._total = 0, len(entries)
            left += self._index_root(
                root, list(entries.values()), problem_paths, stored, report, interrupt
            )
            if left:  # interrupted: the other roots' paths wait too
                left += [path for _, later in by_root[number + 1 :] for path in later]
                break
        report.seconds = time.perf_counter() - started
        return report, left

    # -- the pass -----------------------------------------------------------------------------

    def _filter(self, root: Root) -> RootFilter:
        rules = self._filters.get(root.id)
        if rules is None:
            rules = self._filters[root.id] = RootFilter(
                root.path, exclude_paths=[self.store.path], extra_ignore=self.settings.extra_ignore
            )
        return rules

    def _targets_by_root(
        self, paths: Iterable[str], report: IndexReport
    ) -> list[tuple[Root, list[str]]]:
        roots = self.store.roots()
        grouped: dict[int, dict[str, None]] = {}  # an ordered set per root
        for path in paths:
            path = os.path.abspath(path)
            root = next((r for r in roots if is_within(path, r.path)), None)
            if root is None:
                continue
            if path == root.path:
                # All of it is looked at again (back after going missing, events lost): its
                # rule files may have changed unseen too.
                self._filters.pop(root.id, None)
            if os.path.basename(path) in IGNORE_FILES:
                # New rules can hide or reveal anything below: look at the folder again.
                path = os.path.dirname(path)
                self._filter(root).forget(path)
            grouped.setdefault(root.id, {})[path] = None
        result = []
        for root in roots:
            if root.id not in grouped:
                continue
            if not os.path.exists(root.path):  # a folder, or a file indexed on its own
                # An unmounted drive must not empty the index: keep everything until it is back.
                # Only a root that is one file has a document at its own path.
                what = "file" if self.store.document(root.path) else "folder"
                report.problems.append((root.path, f"{what} is missing; its documents are kept"))
                continue
            result.append((root, list(grouped[root.id])))
        return result

    def _scan(
        self, root: Root, report: IndexReport, only: str | None = None
    ) -> tuple[list[FileEntry], set[str]]:
        """The files to consider (the root's, or the one file `only`), and the paths the walk
        could not look at."""
        entries: list[FileEntry] = []
        problem_paths: set[str] = set()
        rules = self._filter(root)
        items = rules.walk() if only is None else [rules.check(only)]
        for item in items:
            if item is None:
                continue  # the file asked for is one its folder's rules leave out
            if isinstance(item, WalkProblem):
                problem_paths.add(item.path)
                self._walk_problem(root, item, report)
            else:
                entries.append(item)
        report.files_seen += len(entries)
        return entries, problem_paths

    def _walk_problem(self, root: Root, problem: WalkProblem, report: IndexReport) -> None:
        report.failed += 1
        report.problems.append((problem.path, problem.reason))
        self.store.record_unindexed(
            path=problem.path,
            root_id=root.id,
            size=0,
            mtime_ns=0,
            status="error",
            reason=problem.reason,
        )

    def _index_root(
        self,
        root: Root,
        entries: list[FileEntry],
        problem_paths: set[str],
        stored: dict[str, DocumentRow],
        report: IndexReport,
        interrupt: Callable[[], bool] | None = None,
    ) -> list[str]:
        """Index `entries`; stored documents not among them are gone. Returns paths left undone."""
        seen = {e.path for e in entries}
        # Files that vanished, by content: a new file with the same bytes is their new name.
        missing = {p: d for p, d in stored.items() if p not in seen and d.status != "error"}
        missing_by_hash = {d.content_hash: d for d in missing.values() if d.content_hash}
        # Error rows for paths the walk neither found nor failed on again are out of date.
        stale_errors = [
            p
            for p, d in stored.items()
            if p not in seen and d.status == "error" and p not in problem_paths
        ]

        todo: list[FileEntry] = []
        for entry in entries:
            doc = stored.get(entry.path)
            if doc and doc.size == entry.size and doc.mtime_ns == entry.mtime_ns:
                report.unchanged += 1
                self._file_done(entry.path, "unchanged")
            else:
                todo.append(entry)

        batch = _EmbedBatch()
        left: list[str] = []
        prepare = functools.partial(self._prepare, root=root, stored=stored)
        with closing(_prefetch(todo, prepare)) as prepared_files:
            for done, prepared in enumerate(prepared_files, start=1):
                self._apply(prepared, missing_by_hash, batch, report)
                if batch.new_chunk_count >= self.settings.embed_batch:
                    self._flush(batch, report)
                if interrupt is not None and done < len(todo) and interrupt():
                    left = [e.path for e in todo[done:]]
                    break
        self._flush(batch, report)

        gone = [p for p in missing if p not in batch.moved_from] + stale_errors
        if left:
            # A file still to come may be one of the missing ones under a new name.
            return left + gone
        if gone:
            report.deleted += self.store.delete_documents(gone)
            for path in gone:
                self.on_event(IndexEvent("deleted", path=path))
        return []

    def _prepare(
        self, entry: FileEntry, *, root: Root, stored: dict[str, DocumentRow]
    ) -> _Prepared:
        """Read, hash, parse and chunk one file (runs in the prefetch thread)."""
        prepared = _Prepared(entry, root, stored.get(entry.path))
        limit = self.settings.max_file_bytes
        if entry.size > limit:
            prepared.status, prepared.reason = "skipped", too_big_reason(entry.size, limit)
            return prepared
        try:
            read = read_regular_file(entry.path, limit)
        except FileNotFoundError:
            prepared.vanished = True
            return prepared
        except SkipFile as exc:  # became a pipe, a device or too big since the scan
            prepared.status, prepared.reason = "skipped", str(exc)
            return prepared
        except PermissionError:
            prepared.status, prepared.reason = "error", "permission denied"
            return prepared
        except OSError as exc:
            prepared.status, prepared.reason = "error", f"cannot read: {exc.strerror or exc}"
            return prepared
        data = read.data
        # What was read, not what the scan saw: the next run compares against this.
        prepared.entry = entry = FileEntry(entry.path, read.size, read.mtime_ns)
        prepared.hash = content_hash(data)
        if prepared.content_unchanged:
            return prepared  # touched, not changed
        try:
            parsed = parse_file(
                Path(entry.path), data, max_unpacked_bytes=self.settings.max_unpacked_bytes
            )
            chunks = chunk_document(
                parsed, self.embedder, self.chunk_tokens, self.settings.overlap_tokens
            )
        except SkipFile as exc:
            prepared.status, prepared.reason = "skipped", str(exc)
            return prepared
        except ParseError as exc:
            prepared.status, prepared.reason = "error", str(exc)
            return prepared
        except Exception as exc:  # a parser bug must not stop the run; say what happened
            prepared.status = "error"
            prepared.reason = f"unexpected {type(exc).__name__}: {exc}"
            return prepared
        if not chunks:
            prepared.status, prepared.reason = "skipped", "no text"
            return prepared
        prepared.pending = PendingDocument(
            path=entry.path,
            root_id=root.id,
            size=entry.size,
            mtime_ns=entry.mtime_ns,
            content_hash=prepared.hash,
            format=parsed.format,
            title=parsed.title,
            chunks=chunks,
            text_hashes=[text_hash(c.embed_text) for c in chunks],
        )
        return prepared

    def _apply(
        self,
        prepared: _Prepared,
        missing_by_hash: dict[str, DocumentRow],
        batch: _EmbedBatch,
        report: IndexReport,
    ) -> None:
        entry, root, existing = prepared.entry, prepared.root, prepared.existing
        if prepared.vanished:
            if existing:
                self.store.delete_documents([entry.path])
                report.deleted += 1
            report.problems.append((entry.path, "vanished while indexing"))
            self._file_done(entry.path, "vanished")
            return
        if existing and prepared.content_unchanged:
            self.store.touch_document(existing.id, entry.size, entry.mtime_ns)
            report.unchanged += 1
            self._file_done(entry.path, "unchanged")
            return
        moved_from = (
            missing_by_hash.get(prepared.hash) if existing is None and prepared.hash else None
        )
        if moved_from is not None and prepared.hash:
            self.store.move_document(moved_from.id, entry.path, root.id, entry.size, entry.mtime_ns)
            batch.moved_from.add(moved_from.path)
            del missing_by_hash[prepared.hash]
            report.moved += 1
            self._file_done(entry.path, "moved", f"from {moved_from.path}")
            return
        if prepared.pending is None:
            self.store.record_unindexed(
                path=entry.path,
                root_id=root.id,
                size=entry.size,
                mtime_ns=entry.mtime_ns,
                status=prepared.status or "error",
                reason=prepared.reason or "unknown",
                content_hash=prepared.hash,
            )
            if prepared.status == "error":
                report.failed += 1
                report.problems.append((entry.path, prepared.reason or "unknown"))
            else:
                report.skipped += 1
            self._file_done(entry.path, prepared.status or "error", prepared.reason)
            return
        pending = prepared.pending
        known = self.store.known_text_hashes(pending.text_hashes)
        for chunk, h in zip(pending.chunks, pending.text_hashes, strict=True):
            if h in known or h in batch.texts:
                report.chunks_reused += 1
            else:
                batch.texts[h] = chunk.embed_text
        batch.documents.append((pending, "updated" if existing else "added"))

    def _flush(self, batch: _EmbedBatch, report: IndexReport) -> None:
        if not batch.documents:
            return
        vectors: dict[str, np.ndarray] = {}
        if batch.texts:
            hashes = list(batch.texts)
            embedded = self.embedder.embed_passages([batch.texts[h] for h in hashes])
            vectors = dict(zip(hashes, embedded, strict=True))
            report.chunks_embedded += len(hashes)
            self.on_event(IndexEvent("embedded", chunks_embedded=report.chunks_embedded))
        for pending, status in batch.documents:
            try:
                self.store.replace_document(pending, vectors)
            except VectorsGone as exc:
                chunks = pending.chunks
                texts = dict(zip(pending.text_hashes, (c.embed_text for c in chunks), strict=True))
                redone = self.embedder.embed_passages([texts[h] for h in exc.text_hashes])
                vectors.update(zip(exc.text_hashes, redone, strict=True))
                report.chunks_embedded += len(exc.text_hashes)
                self.store.replace_document(pending, vectors)
            if status == "added":
                report.added += 1
            else:
                report.updated += 1
            count = len(pending.chunks)
            self._file_done(pending.path, status, f"{count} chunk{'s' if count != 1 else ''}")
        batch.texts.clear()
        batch.documents.clear()

    def _file_done(self, path: str, status: FileStatus, detail: str | None = None) -> None:
        self._done += 1
        self.on_event(
            IndexEvent(
                "file",
                path=path,
                status=status,
                detail=detail,
                files_total=self._total,
                files_done=self._done,
            )
        )


@dataclass
class _EmbedBatch:
    texts: dict[str, str] = field(default_factory=dict)  # text hash → text to embed
    documents: list[tuple[PendingDocument, Literal["added", "updated"]]] = field(
        default_factory=list
    )
    moved_from: set[str] = field(default_factory=set)

    @property
    def new_chunk_count(self) -> int:
        return len(self.texts)


def _prefetch(
    items: Sequence[FileEntry], fn: Callable[[FileEntry], _Prepared]
) -> Generator[_Prepared, None, None]:
    """Map `fn` over items in a helper thread, a few ahead, yielding results in order.

    At most `_PREFETCH` files, and `_PREFETCH_BYTES` of them, wait prepared (always one at
    least): a run of large files must not hold all their passages in memory at once.
    The helper is a daemon thread: a read stuck in the kernel (a hung network drive) must
    never keep Ctrl-C from ending the process. Closing the generator stops the helper after
    the file in hand; files prepared ahead were never committed, so nothing is lost.
    """
    ready: deque[tuple[_Prepared | None, BaseException | None, int]] = deque()
    held = 0  # bytes of the files waiting in `ready`
    changed = threading.Condition()
    stop = threading.Event()

    def room_for(size: int) -> bool:
        return not ready or (len(ready) < _PREFETCH and held + size <= _PREFETCH_BYTES)

    def work() -> None:
        nonlocal held
        for item in items:
            if stop.is_set():
                return
            try:
                prepared, error = fn(item), None
            except BaseException as exc:  # handed to the consumer, raised there
                prepared, error = None, exc
            with changed:
                while not stop.is_set() and not room_for(item.size):
                    changed.wait(0.2)
                ready.append((prepared, error, item.size))
                held += item.size
                changed.notify_all()

    threading.Thread(target=work, name="localrag-parse", daemon=True).start()
    try:
        for _ in items:
            with changed:
                while not ready:
                    changed.wait()
                prepared, error, size = ready.popleft()
                held -= size
                changed.notify_all()
            if error is not None:
                raise error
            assert prepared is not None
            yield prepared
    finally:
        stop.set()
