"""The watcher on real file-system events (inotify here), the real embedder and a real index.

Every test changes files the way people and tools do, waits for the index to settle (a
sentinel file is written last: once it is indexed, every earlier event has reached the queue;
then the queue is waited on, with a time limit) and compares the index with a fresh full index
of the same folder.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from watchdog.events import FileModifiedEvent

from localrag import watcher as watcher_module
from localrag.errors import ConfigError
from localrag.indexer import Indexer
from localrag.retrieval import Retriever
from localrag.store import Store, identity_record
from localrag.watcher import Watcher, WatchEvent
from tests.helpers.corpus import write_tree
from tests.helpers.index_state import assert_matches_fresh_index

SETTLE_LIMIT = 90.0  # seconds; generous for a loaded 2-core CI machine


class Harness:
    """A watcher running in a background thread over `folder`, recording its events.

    `watch` gives the folders to watch instead (`[]`: every root in the index); the
    sentinel of `settle` is still written in `folder`, which must be one of them.
    """

    def __init__(
        self,
        folder: Path,
        db: Path,
        embedder: Any,
        scratch: Path,
        *,
        watch: Sequence[Path] | None = None,
        **options: Any,
    ):
        self.folder = folder
        self.db = db
        self.embedder = embedder
        self.scratch = scratch
        self.events: list[WatchEvent] = []
        self._seen = threading.Condition()
        self._sentinels = 0
        folders = [folder] if watch is None else list(watch)
        self.watcher = Watcher(db, folders, embedder, on_event=self._record, **options)

    def _record(self, event: WatchEvent) -> None:
        with self._seen:
            self.events.append(event)
            self._seen.notify_all()

    def start(self) -> Harness:
        self.watcher.start()
        return self

    def stop(self) -> None:
        self.watcher.stop()

    def mark(self) -> int:
        """A position in the event log, to look only at what happens after it."""
        with self._seen:
            return len(self.events)

    def wait_for(self, predicate: Callable[[WatchEvent], bool], since: int = 0) -> WatchEvent:
        deadline = time.monotonic() + SETTLE_LIMIT
        with self._seen:
            while True:
                for event in self.events[since:]:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                assert left > 0, f"no such event within {SETTLE_LIMIT}s: {self.events[since:]}"
                self._seen.wait(left)

    def settle(self) -> None:
        """Wait until every change made so far is indexed."""
        self._sentinels += 1
        sentinel = self.folder / "zz-sentinel.txt"
        since = self.mark()
        sentinel.write_text(f"sentinel number {self._sentinels}\n")
        self.wait_for(lambda e: file_event(e, sentinel) is not None, since)
        assert self.watcher.wait_idle(SETTLE_LIMIT), "the watcher did not go idle"

    def file_statuses(self, path: Path, since: int = 0) -> list[str]:
        """Each time `path` was indexed (added, updated, moved, ...) after `since`."""
        with self._seen:
            found = [file_event(e, path) for e in self.events[since:]]
        return [status for status in found if status is not None and status != "unchanged"]

    def notices_about(self, path: Path, since: int = 0) -> list[str]:
        """The notices after `since` that name `path`."""
        with self._seen:
            messages = [e.message or "" for e in self.events[since:] if e.kind == "notice"]
        return [m for m in messages if str(path) in m]

    def assert_matches_fresh_index(self) -> None:
        plain = getattr(self.embedder, "inner", self.embedder)  # not counted as the watcher's
        assert_matches_fresh_index(self.db, self.folder, plain, self.scratch)


def file_event(event: WatchEvent, path: Path) -> str | None:
    ix = event.index
    if ix is None or ix.path != str(path):
        return None
    if ix.kind == "file":
        return ix.status
    if ix.kind == "deleted":
        return "deleted"
    return None


def indexed_a_file(event: WatchEvent) -> bool:
    return event.kind == "index" and event.index is not None and event.index.kind == "file"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    write_tree(folder)
    return folder


@pytest.fixture
def start(tmp_path: Path, docs: Path, embedder: Any) -> Iterator[Callable[..., Harness]]:
    """Start a watcher over `docs` (options as for Watcher); all are stopped at the end."""
    started: list[Harness] = []

    def start_one(*, embedder: Any = embedder, db: Path | None = None, **options: Any) -> Harness:
        options.setdefault("debounce", 0.1)
        h = Harness(docs, db or tmp_path / "index.db", embedder, tmp_path, **options)
        started.append(h)
        return h.start()

    yield start_one
    for h in started:
        h.stop()


@pytest.fixture
def harness(start: Callable[..., Harness]) -> Harness:
    return start()


@contextmanager
def kernel_setting(path: Path, value: str) -> Iterator[None]:
    """Change a /proc/sys setting for the duration (needs root; skips otherwise)."""
    if not os.access(path, os.W_OK):
        pytest.skip(f"changing {path} needs root on Linux")
    original = path.read_text()
    path.write_text(value)
    try:
        yield
    finally:
        path.write_text(original)


def write_paragraphs(path: Path, topic: str, count: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n\n".join(
        f"Paragraph {i} about {topic}: the {topic} survey recorded {i * 13} observations "
        f"and the field team noted {topic} behaviour near site {i}."
        for i in range(count)
    )
    path.write_text(f"# {topic.title()}\n\n{body}\n")


# -- everyday edits ---------------------------------------------------------------------------


def test_reconciles_then_follows_create_append_delete(harness: Harness) -> None:
    h = harness
    h.settle()
    h.assert_matches_fresh_index()

    new = h.folder / "otters.md"
    since = h.mark()
    write_paragraphs(new, "otter")
    h.settle()
    assert h.file_statuses(new, since) == ["added"]
    h.assert_matches_fresh_index()

    since = h.mark()
    with new.open("a") as fh:
        fh.write("\nLate note: otters were also seen upstream of the weir.\n")
    h.settle()
    assert h.file_statuses(new, since) == ["updated"]
    with Store.open(h.db) as store:
        hits = Retriever(store, h.embedder).search("otters upstream of the weir", k=1)
        assert hits and hits[0].path == str(new)
    h.assert_matches_fresh_index()

    since = h.mark()
    new.unlink()
    h.settle()
    assert h.file_statuses(new, since) == ["deleted"]
    h.assert_matches_fresh_index()


def test_atomic_save_through_a_temp_file_is_one_update(harness: Harness) -> None:
    """How editors save: write a temp file beside the target, then rename it over."""
    h = harness
    h.settle()
    target = h.folder / "notes.md"
    temp = h.folder / "notes.md.tmp~"
    since = h.mark()
    temp.write_text(target.read_text() + "\n## Bees\n\nBees visit the borage first.\n")
    os.replace(temp, target)
    h.settle()
    assert h.file_statuses(target, since) == ["updated"]
    assert h.file_statuses(temp, since) == []
    h.assert_matches_fresh_index()

    # Truncate and rewrite in place (the other common way).
    since = h.mark()
    with target.open("w") as fh:
        fh.write("# Garden notes\n\nOnly the borage is left.\n")
    h.settle()
    assert h.file_statuses(target, since) == ["updated"]
    h.assert_matches_fresh_index()


def test_renames_and_folder_moves_reuse_vectors(tmp_path, docs, counting_embedder, start) -> None:
    h = start(embedder=counting_embedder)
    write_paragraphs(docs / "field" / "herons.md", "heron", 3)
    write_paragraphs(docs / "field" / "deep" / "voles.md", "vole", 2)
    h.settle()
    embedded = counting_embedder.passages

    since = h.mark()
    (docs / "notes.md").rename(docs / "garden.md")
    h.settle()
    assert h.file_statuses(docs / "garden.md", since) == ["moved"]
    h.assert_matches_fresh_index()

    since = h.mark()
    (docs / "field").rename(docs / "survey")  # a folder renamed in place
    h.settle()
    assert h.file_statuses(docs / "survey" / "deep" / "voles.md", since) == ["moved"]
    h.assert_matches_fresh_index()
    # Only the sentinel's new text was embedded: moved files reuse their vectors.
    assert counting_embedder.passages - embedded <= 2

    outside = tmp_path / "elsewhere"
    since = h.mark()
    shutil.move(str(docs / "survey"), str(outside))  # out of the watched folder
    h.settle()
    assert h.file_statuses(docs / "survey" / "herons.md", since) == ["deleted"]
    h.assert_matches_fresh_index()

    since = h.mark()
    shutil.move(str(outside), str(docs / "back"))  # and in again
    h.settle()
    assert h.file_statuses(docs / "back" / "deep" / "voles.md", since) == ["added"]
    h.assert_matches_fresh_index()

    since = h.mark()
    shutil.rmtree(docs / "back")
    h.settle()
    assert h.file_statuses(docs / "back" / "herons.md", since) == ["deleted"]
    h.assert_matches_fresh_index()


def test_burst_of_500_files_each_indexed_once(harness: Harness) -> None:
    h = harness
    h.settle()
    since = h.mark()
    burst = h.folder / "unzipped"
    burst.mkdir()
    for i in range(500):
        (burst / f"item-{i:03}.txt").write_text(f"Inventory item {i}: crate {i % 17}.\n")
    h.settle()
    for i in range(500):
        assert h.file_statuses(burst / f"item-{i:03}.txt", since) == ["added"], i
    h.assert_matches_fresh_index()

    since = h.mark()
    shutil.rmtree(burst)  # and the reverse: a folder of 500 deleted at once
    h.settle()
    assert h.file_statuses(burst / "item-250.txt", since) == ["deleted"]
    h.assert_matches_fresh_index()


def test_file_created_and_deleted_before_indexing_leaves_no_trace(harness: Harness) -> None:
    h = harness
    h.settle()
    since = h.mark()
    fleeting = h.folder / "scratch.md"
    for _ in range(5):
        fleeting.write_text("# Scratch\n\nA note that lives for a moment.\n")
        fleeting.unlink()
    h.settle()
    assert h.file_statuses(fleeting, since) == []
    h.assert_matches_fresh_index()


class EditsOnFirstEmbed:
    """The real embedder; once `action` is set, the next time it is asked for several
    passages it runs `action` first, so a file changes on disk while its own indexing is under
    way."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.identity = inner.identity
        self.max_tokens = inner.max_tokens
        self.action: Callable[[], None] | None = None

    def count(self, text: str) -> int:
        return int(self.inner.count(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return list(self.inner.count_many(texts))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if self.action is not None and len(texts) > 5:
            action, self.action = self.action, None
            action()
        return self.inner.embed_passages(texts)  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)  # type: ignore[no-any-return]


def test_edit_while_the_same_file_is_being_indexed(docs, embedder, start) -> None:
    report = docs / "report.md"

    def append() -> None:
        with report.open("a") as fh:
            fh.write("\n## Addendum\n\nThe addendum mentions cormorants on the pier.\n")

    editing = EditsOnFirstEmbed(embedder)
    h = start(embedder=editing)
    h.settle()
    editing.action = append  # armed only now, after the start-up pass
    since = h.mark()
    write_paragraphs(report, "kingfisher", 60)  # several chunks: one embedding call > 5
    h.settle()
    assert editing.action is None, "the edit did not happen during indexing"
    # Indexed as it was when read, then again once the edit settled.
    assert h.file_statuses(report, since) == ["added", "updated"]
    with Store.open(h.db) as store:
        assert store.fts_search('"cormorants"', 1)
    h.assert_matches_fresh_index()


# -- what is never indexed --------------------------------------------------------------------


def test_database_inside_the_watched_folder_is_never_indexed(docs, start) -> None:
    h = start(db=docs / "index.db")
    write_paragraphs(docs / "owls.md", "owl")
    h.settle()  # our own commits write index.db and its WAL; they must not feed back
    h.settle()
    with Store.open(h.db) as store:
        paths = [d for d in store.documents_in_root(store.roots()[0].id)]
    assert not [p for p in paths if "index.db" in p]
    batches = sum(1 for e in h.events if e.kind == "batch")
    assert h.watcher.wait_idle(1)
    assert sum(1 for e in h.events if e.kind == "batch") == batches  # no feedback loop
    h.assert_matches_fresh_index()


def test_ignore_rules_apply_and_changing_them_rescans(harness: Harness) -> None:
    h = harness
    folder = h.folder
    since = h.mark()
    write_paragraphs(folder / "build" / "generated.md", "generated")
    write_paragraphs(folder / ".cache" / "hidden.md", "hidden")
    (folder / ".hidden-note.md").write_text("# Hidden\n\nNot for the index.\n")
    h.settle()
    assert h.file_statuses(folder / "build" / "generated.md", since) == ["added"]
    assert h.file_statuses(folder / ".cache" / "hidden.md", since) == []

    since = h.mark()
    (folder / ".gitignore").write_text("build/\n")
    h.settle()
    assert h.file_statuses(folder / "build" / "generated.md", since) == ["deleted"]
    write_paragraphs(folder / "build" / "more.md", "more")
    h.settle()
    assert h.file_statuses(folder / "build" / "more.md", since) == []
    h.assert_matches_fresh_index()

    since = h.mark()
    (folder / ".gitignore").unlink()
    h.settle()
    assert h.file_statuses(folder / "build" / "more.md", since) == ["added"]
    h.assert_matches_fresh_index()


# -- starting, stopping, readers --------------------------------------------------------------


def test_changes_made_while_not_watching_are_caught_up_on_start(
    tmp_path, docs, embedder, start
) -> None:
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([docs])
    (docs / "notes.md").rename(docs / "garden-notes.md")
    (docs / "recipes" / "lentil-soup.txt").unlink()
    write_paragraphs(docs / "new" / "badgers.md", "badger")
    with (docs / "code" / "exporter.py").open("a") as fh:
        fh.write("\n\ndef total_with_tax(amount):\n    return amount * 1.2\n")

    h = start()  # returns after the catch-up pass
    reconciled = h.wait_for(lambda e: e.kind == "reconciled").report
    assert reconciled is not None
    assert (reconciled.added, reconciled.updated, reconciled.moved, reconciled.deleted) == (
        1,
        1,
        1,
        1,
    )
    h.settle()
    h.assert_matches_fresh_index()


def test_readers_see_whole_files_while_the_watcher_writes(harness: Harness) -> None:
    h = harness
    h.settle()
    target = h.folder / "ledger.md"
    problems: list[str] = []
    reads = 0
    done = threading.Event()

    def reader() -> None:
        nonlocal reads
        with Store.open(h.db, create=False) as store:
            retriever = Retriever(store, h.embedder)
            while not done.is_set():
                with store.snapshot() as db:
                    versions = {
                        row[0].split("version ")[1].split(":")[0]
                        for row in db.execute(
                            "SELECT c.text FROM chunks c JOIN documents d "
                            "ON d.id = c.document_id WHERE d.path = ? AND c.text LIKE '%version %'",
                            (str(target),),
                        )
                    }
                if len(versions) > 1:
                    problems.append(f"half-indexed file seen: versions {versions}")
                retriever.search("ledger version entries", k=3)
                reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(1, 5):
            since = h.mark()
            target.write_text(
                "# Ledger\n\n"
                + "\n\n".join(
                    f"Entry {i} of ledger version {version}: balance {i * version} units "
                    f"carried forward from the previous page of the ledger."
                    for i in range(12)
                )
            )
            h.wait_for(lambda e: file_event(e, target) in ("added", "updated"), since)
    finally:
        done.set()
        thread.join(60)
    assert not problems, problems[:3]
    assert reads > 0


def test_large_burst_does_not_hold_back_a_small_edit(docs, start) -> None:
    h = start(yield_after=0.2, embed_batch=8)
    h.settle()
    since = h.mark()
    burst = [docs / "import" / f"minutes-{i:02}.md" for i in range(30)]
    for i, path in enumerate(burst):
        write_paragraphs(path, f"meeting{i}", 30)  # ~4 chunks each: seconds of work
    # Once the burst is being indexed, save one small file.
    h.wait_for(indexed_a_file, since)
    small = docs / "todo.md"
    small.write_text("# To do\n\nCall the plumber about the boiler.\n")
    h.settle()
    order = [
        e.index.path for e in h.events[since:] if e.index is not None and e.index.kind == "file"
    ]
    burst_done = [order.index(str(p)) for p in burst]
    assert order.index(str(small)) < max(burst_done), "the edit waited for the whole burst"
    assert any(e.queue_depth > 10 for e in h.events[since:])  # the depth was visible
    h.assert_matches_fresh_index()


def test_polling_mode_follows_changes(docs, start) -> None:
    h = start(polling=True, poll_interval=0.2)
    assert h.watcher.backend == "polling"
    since = h.mark()
    write_paragraphs(docs / "deep" / "er" / "moles.md", "mole")
    (docs / "recipes" / "lentil-soup.txt").unlink()
    h.settle()
    assert h.file_statuses(docs / "deep" / "er" / "moles.md", since) == ["added"]
    assert h.file_statuses(docs / "recipes" / "lentil-soup.txt", since) == ["deleted"]
    h.assert_matches_fresh_index()


def test_inotify_watch_limit_falls_back_to_polling(docs, start) -> None:
    """Exhaust the real limit: lower it below the number of folders."""
    for i in range(30):
        (docs / "tree" / f"branch-{i:02}").mkdir(parents=True)
    with kernel_setting(Path("/proc/sys/fs/inotify/max_user_watches"), "8\n"):
        h = start(poll_interval=0.2)
    assert h.watcher.backend == "polling"
    notices = [e.message or "" for e in h.events if e.kind == "notice"]
    assert any("max_user_watches" in n and "polling" in n for n in notices), notices
    since = h.mark()
    deep = docs / "tree" / "branch-29" / "wren.md"
    write_paragraphs(deep, "wren")
    h.settle()
    assert h.file_statuses(deep, since) == ["added"]


def test_events_dropped_by_the_kernel_trigger_a_full_recheck(docs, start) -> None:
    """A real inotify queue overflow: the kernel queue shrunk to 16 events, then 300 files."""
    # Read when the watcher's inotify instance is created.
    with kernel_setting(Path("/proc/sys/fs/inotify/max_queued_events"), "16\n"):
        h = start()
    for i in range(300):
        (docs / "flood" / f"f{i // 100}").mkdir(parents=True, exist_ok=True)
        (docs / "flood" / f"f{i // 100}" / f"card-{i:03}.txt").write_text(f"Card {i}.\n")
    h.wait_for(lambda e: e.kind == "notice" and "overflow" in (e.message or ""))
    h.settle()
    h.assert_matches_fresh_index()


def test_stop_when_idle_and_a_missing_folder_is_a_clear_error(tmp_path, embedder, start) -> None:
    h = start()
    h.settle()
    started = time.monotonic()
    h.stop()
    assert time.monotonic() - started < 10
    assert h.events[-1].kind == "stopped"

    missing = Harness(tmp_path / "nope", tmp_path / "other.db", embedder, tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        missing.start()


def test_stop_during_a_burst_is_prompt_and_the_next_start_finishes(docs, start) -> None:
    h = start(embed_batch=8)
    since = h.mark()
    for i in range(30):
        write_paragraphs(docs / "archive" / f"letter-{i:02}.md", f"letter{i}", 30)
    h.wait_for(indexed_a_file, since)
    started = time.monotonic()
    h.stop()
    assert time.monotonic() - started < 10  # one small embedding batch at most
    assert h.events[-1].kind == "stopped"
    with Store.open(h.db, create=False) as store:
        assert store.integrity_check() == "ok"
        done = sum(1 for p in store.documents_in_root(store.roots()[0].id) if "letter-" in p)
    assert 0 < done < 30  # stopped part-way, with whole files only

    again = start()
    reconciled = again.wait_for(lambda e: e.kind == "reconciled").report
    assert reconciled is not None and reconciled.added == 30 - done
    again.settle()
    again.assert_matches_fresh_index()


def test_database_given_as_a_relative_path_is_still_recognised(
    docs, start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events name absolute paths; `--db index.db` run from inside the folder must match."""
    monkeypatch.chdir(docs)
    h = start(db=Path("index.db"))
    h.settle()
    h.watcher.record(FileModifiedEvent(str(docs / "index.db-wal")))
    h.watcher.record(FileModifiedEvent(str(docs / "index.db")))
    assert len(h.watcher.queue) == 0  # our own writes are not work
    h.watcher.record(FileModifiedEvent(str(docs / "notes.md")))
    assert len(h.watcher.queue) == 1


def test_a_single_file_is_watched_without_its_folder(tmp_path, docs, embedder) -> None:
    """`localrag index FILE` records the file as a root of its own; watching it follows that
    file (edits, editors' rename-over saves) and nothing else in its folder."""
    notes = docs / "notes.md"
    h = Harness(notes, tmp_path / "one-file.db", embedder, tmp_path, debounce=0.1).start()
    try:
        h.wait_for(lambda e: e.kind == "watching")
        assert h.file_statuses(notes) == ["added"]
        since = h.mark()
        write_paragraphs(docs / "beside.md", "heron")  # in the folder, not watched
        with notes.open("a") as fh:
            fh.write("\nLate note: the compost heap needs turning every fortnight.\n")
        h.wait_for(lambda e: file_event(e, notes) == "updated", since)
        since = h.mark()
        temp = docs / "notes.md.tmp~"
        temp.write_text(notes.read_text() + "\nThe heap is kept under a tarp in winter.\n")
        temp.rename(notes)
        h.wait_for(lambda e: file_event(e, notes) == "updated", since)
        assert h.watcher.wait_idle(SETTLE_LIMIT)
        with Store.open(h.db) as store:
            assert [r.path for r in store.roots()] == [str(notes)]
            assert store.stats().indexed == 1
            hits = Retriever(store, embedder).search("compost heap under a tarp", k=1)
            assert hits and hits[0].path == str(notes)
        assert all(file_event(e, docs / "beside.md") is None for e in h.events)
    finally:
        h.stop()


# -- roots that go missing and come back ------------------------------------------------------


@pytest.fixture
def quick_root_checks(monkeypatch: pytest.MonkeyPatch) -> float:
    """Look for roots that went missing or came back every 0.1 s (2 s in use)."""
    monkeypatch.setattr(watcher_module, "_CHECK_ROOTS_EVERY", 0.1)
    return 0.1


def notice_about(path: Path, words: str) -> Callable[[WatchEvent], bool]:
    return lambda e: (
        e.kind == "notice" and str(path) in (e.message or "") and words in (e.message or "")
    )


def assert_kept(db: Path, path: Path, embedder: Any, query: str) -> None:
    """`path` is still in the index and found by search."""
    with Store.open(db, create=False) as store:
        assert store.document(str(path)) is not None
        hits = Retriever(store, embedder).search(query, k=1)
        assert hits and hits[0].path == str(path)


@pytest.mark.parametrize("named", [False, True], ids=["every-root", "named-roots"])
def test_a_root_missing_at_start_is_kept_and_picked_up_when_it_is_back(
    tmp_path, docs, embedder, start, quick_root_checks, named
) -> None:
    """An unmounted drive: the other folder is watched, the drive's passages stay
    searchable, the user is told once how to forget it, and once it is back it is watched."""
    usb = tmp_path / "usb"
    otters = usb / "otters.md"
    write_paragraphs(otters, "otter")
    with Store.open(tmp_path / "index.db") as store:
        Indexer(store, embedder).index([docs, usb])
    unplugged = tmp_path / "usb-unplugged"
    usb.rename(unplugged)

    h = start(watch=[docs, usb] if named else [])
    since = h.mark()
    swifts = docs / "swifts.md"
    write_paragraphs(swifts, "swift")
    h.settle()
    assert h.file_statuses(swifts, since) == ["added"]
    time.sleep(5 * quick_root_checks)  # several looks at the roots: still said only once
    [notice] = h.notices_about(usb)
    assert f"{usb} is missing; its passages are kept" in notice
    assert f"`localrag forget {usb}`" in notice
    assert h.file_statuses(otters) == []
    assert_kept(h.db, otters, embedder, "otter survey observations")

    # Plugged in again, with a file edited and one added meanwhile.
    with (unplugged / "otters.md").open("a") as fh:
        fh.write("\nLate note: otters were also seen upstream of the weir.\n")
    write_paragraphs(unplugged / "voles.md", "vole")
    since = h.mark()
    unplugged.rename(usb)
    h.wait_for(notice_about(usb, "is back"), since)
    h.wait_for(lambda e: file_event(e, usb / "voles.md") == "added", since)
    assert h.watcher.wait_idle(SETTLE_LIMIT)
    assert h.file_statuses(otters, since) == ["updated"]
    since = h.mark()
    write_paragraphs(usb / "badgers.md", "badger")  # watched live again
    h.wait_for(lambda e: file_event(e, usb / "badgers.md") == "added", since)
    assert len(h.notices_about(usb)) == 2  # missing, back


@pytest.mark.parametrize("how", ["renamed", "deleted"])
def test_a_root_removed_while_watching_keeps_its_passages(
    tmp_path, docs, embedder, start, quick_root_checks, how
) -> None:
    usb = tmp_path / "usb"
    otters = usb / "otters.md"
    write_paragraphs(otters, "otter")
    h = start(watch=[docs, usb])
    h.settle()
    assert h.file_statuses(otters) == ["added"]

    since = h.mark()
    elsewhere = tmp_path / "usb-renamed"
    if how == "renamed":
        usb.rename(elsewhere)  # renamed folders send their watch no event
    else:
        shutil.rmtree(usb)
    h.wait_for(notice_about(usb, "is missing"), since)
    if how == "renamed":  # the old watch follows the folder: its events are not usb's
        with (elsewhere / "otters.md").open("a") as fh:
            fh.write("\nLate note: otters were also seen upstream of the weir.\n")
    swifts = docs / "swifts.md"
    write_paragraphs(swifts, "swift")
    h.settle()
    assert h.file_statuses(swifts, since) == ["added"]
    time.sleep(5 * quick_root_checks)
    assert h.file_statuses(otters, since) == []  # neither deleted nor updated
    [notice] = h.notices_about(usb, since)
    assert f"`localrag forget {usb}`" in notice
    assert_kept(h.db, otters, embedder, "otter survey observations")


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_a_root_deleted_and_created_again_is_indexed_again(
    tmp_path, docs, start, quick_root_checks, polling
) -> None:
    usb = tmp_path / "usb"
    write_paragraphs(usb / "otters.md", "otter")
    write_paragraphs(usb / "deep" / "herons.md", "heron")
    h = start(watch=[docs, usb], polling=polling, poll_interval=0.2)
    h.settle()
    since = h.mark()
    shutil.rmtree(usb)
    h.wait_for(notice_about(usb, "is missing"), since)

    # Made beside it and renamed into place, so that it comes back whole (as a drive is
    # mounted): a check between a bare mkdir and the files would see a half-made folder.
    staging = tmp_path / "usb-new"
    staging.mkdir()
    (staging / ".gitignore").write_text("drafts/\n")  # rules read before it went are stale
    write_paragraphs(staging / "otters.md", "otter", 3)  # changed
    write_paragraphs(staging / "deep" / "voles.md", "vole")  # new; herons.md is gone for good
    write_paragraphs(staging / "drafts" / "egrets.md", "egret")
    staging.rename(usb)
    h.wait_for(notice_about(usb, "is back"), since)
    h.wait_for(lambda e: file_event(e, usb / "deep" / "voles.md") == "added", since)
    assert h.watcher.wait_idle(SETTLE_LIMIT)
    assert h.file_statuses(usb / "otters.md", since) == ["updated"]
    assert h.file_statuses(usb / "deep" / "herons.md", since) == ["deleted"]
    assert h.file_statuses(usb / "drafts" / "egrets.md", since) == []
    since = h.mark()
    write_paragraphs(usb / "deep" / "badgers.md", "badger")  # watched live again
    h.wait_for(lambda e: file_event(e, usb / "deep" / "badgers.md") == "added", since)


# -- the index moved to another embedding model while watching ----------------------------------


def test_the_watch_follows_the_index_to_the_model_it_was_moved_to(
    tmp_path, docs, embedder, int8_embedder, int8_models_root, start, monkeypatch
) -> None:
    """`localrag index --reembed --embedder …-int8` in another process while the watch runs:
    the watch's next file is refused by the store (no float32 vector may join an int8 index),
    and the watch loads the model the index now records and indexes the file with it."""
    from localrag.reembed import reembed

    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(int8_models_root))  # both models installed
    h = start()
    h.settle()
    with Store.open(h.db, create=False) as other:
        assert reembed(other, int8_embedder).switched
    since = h.mark()
    herons = docs / "herons.md"
    write_paragraphs(herons, "heron")
    h.settle()
    [notice] = [
        e.message
        for e in h.events[since:]
        if e.kind == "notice" and "moved to" in (e.message or "")
    ]
    assert "all-MiniLM-L6-v2-int8: watching goes on with it" in notice
    assert h.file_statuses(herons, since) == ["added"]
    assert h.watcher.error is None
    with Store.open(h.db, create=False) as store:
        identity = int8_embedder.identity
        assert store.model_identity() == identity_record(
            identity.name, identity.dim, identity.fingerprint
        )
        [(text, stored)] = store.db.execute(
            "SELECT c.text, e.vector FROM chunks c JOIN embeddings e ON e.id = c.embedding_id "
            "JOIN documents d ON d.id = c.document_id WHERE d.path = ?",
            (str(herons),),
        )
    vector = np.frombuffer(stored, dtype=np.float32)
    heading_text = f"Heron\n\n{text}"
    assert float(vector @ int8_embedder.embed_passages([heading_text])[0]) > 0.99
    assert np.abs(vector - embedder.embed_passages([heading_text])[0]).max() > 1e-3


def test_the_watch_stops_clearly_when_the_new_model_is_not_installed(
    tmp_path, docs, int8_embedder, start, models_env
) -> None:
    from localrag.reembed import reembed

    h = start()  # models_env holds the float32 model only
    h.settle()
    with Store.open(h.db, create=False) as other:
        assert reembed(other, int8_embedder).switched
    write_paragraphs(docs / "herons.md", "heron")
    h.wait_for(lambda e: e.kind == "stopped")
    message = str(h.watcher.error)
    assert "was moved to embedding model sentence-transformers/all-MiniLM-L6-v2-int8" in message
    assert "The watch stops: The embedding model" in message
    assert "`localrag models quantize-embedder all-MiniLM-L6-v2`" in message
    with Store.open(h.db, create=False) as store:
        assert store.document(str(docs / "herons.md")) is None
