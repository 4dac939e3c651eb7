"""Keep an index live: file-system events become debounced, coalesced work for the indexer.

Two threads. watchdog's observer thread only records which paths changed (in a
`ChangeQueue`: cheap, never touches the database). The worker, the thread that calls `run`,
first reconciles (a full incremental pass, so whatever changed while nothing was watching is
caught up), then indexes settled paths in batches through `Indexer.update`. Each file is
committed in its own transaction, so readers see a file's old version or its new one, and a
kill at any moment loses nothing that the next start's reconcile does not redo.

Nothing here prints: progress goes to `on_event` as `WatchEvent`s, which the CLI renders and
the TUI can forward to its own thread.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from localrag.change_queue import ChangeQueue
from localrag.config import IndexSettings
from localrag.embedder import Embedder, load_embedder
from localrag.errors import (
    ConfigError,
    DiskFullError,
    IndexModelChanged,
    LocalragError,
    ModelMismatchError,
)
from localrag.indexer import Indexer, IndexEvent, IndexReport, indexable_path
from localrag.paths import is_within, printable
from localrag.store import Store, identity_record
from localrag.walker import database_files, is_excluded_name

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver, ObservedWatch

# How often an idle watcher checks that its database file is still the one it opened.
_CHECK_DATABASE_EVERY = 2.0
# Pause between attempts while the disk is full.
_DISK_FULL_RETRY = 5.0
# How often the worker looks whether a watched root went missing or came back: one stat per
# root. Polling, because a renamed root tells its own watch nothing and a re-mounted drive or
# a re-created folder tells no watch at all.
_CHECK_ROOTS_EVERY = 2.0

# Event types that can change what a file holds or where it is. "opened" and
# "closed_no_write" are left out: the indexer's own reads cause them. Passing the filter to
# watchdog keeps them out of the kernel queue too (inotify's mask), so reading thousands of
# files can neither flood nor overflow it.
_RELEVANT = frozenset(("created", "modified", "deleted", "moved", "closed", "attrib"))
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileMovedEvent,
    DirMovedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileClosedEvent,
]


@dataclass(frozen=True)
class WatchEvent:
    """What the watcher is doing, for whoever shows it.

    kinds: "reconcile" (progress of the start-up pass, in `index`), "reconciled" (its
    `report`), "watching" (live events flow; `message` names the back end), "notice" (something
    the user should know, in `message`), "batch" (settled paths are being indexed),
    "index" (progress inside a batch, in `index`), "batch-done" (its `report`), "idle"
    (nothing queued), "stopped".
    """

    kind: str
    queue_depth: int = 0
    message: str | None = None
    index: IndexEvent | None = None
    report: IndexReport | None = None
    paths: int = 0


WatchHandler = Callable[[WatchEvent], None]


class Watcher:
    """Watch folders and keep one index database in line with them.

    `run()` blocks until `stop()`; `start()` runs it in a background thread (for the TUI).
    The folders are added to the index like `localrag index` does; with none, every folder the
    index already knows is watched. A folder that is missing, at start or later (an unmounted
    drive, a deleted or renamed folder), keeps its passages and is said once in a "notice";
    the others are watched on, and it is watched and re-checked once it is back. `on_event`
    is called from the worker thread (and, for a warning from watchdog, from its observer
    thread): a UI should hand events to its own thread, as Textual's `call_from_thread` does.
    """

    def __init__(
        self,
        db_path: Path,
        folders: Sequence[Path],
        embedder: Embedder,
        settings: IndexSettings | None = None,
        *,
        on_event: WatchHandler | None = None,
        polling: bool = False,
        poll_interval: float = 1.0,
        debounce: float = 0.25,
        max_delay: float = 5.0,
        yield_after: float = 1.0,
        embed_batch: int = 64,
        embedder_loader: Callable[[str], Embedder] | None = None,
    ) -> None:
        """`embedder_loader` loads an installed embedding model by name: used when the index
        is moved to another model (`index --reembed`) while this watch runs (default:
        `load_embedder`, lazily started)."""
        self.db_path = Path(db_path)
        self._database_files = database_files(self.db_path)
        self._database_path = os.path.abspath(self.db_path)
        self.folders = [Path(f).expanduser().resolve() for f in folders]
        self.embedder = embedder
        self._load_embedder = embedder_loader or (lambda name: load_embedder(name, lazy=True))
        # Smaller embedding batches than a full index: a batch is what a new edit may wait for.
        self.settings = replace(settings or IndexSettings(), embed_batch=embed_batch)
        self.on_event = on_event or (lambda event: None)
        self.polling = polling
        self.poll_interval = poll_interval
        self.yield_after = yield_after
        self.queue = ChangeQueue(debounce=debounce, max_delay=max_delay)
        self.backend: str | None = None
        self.roots: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._phase = "reconcile"  # then "live"
        self._batch_started = 0.0
        self._batch_left = 0
        self._last_yield_check = 0.0
        self._events_lost = threading.Event()
        self._full_since: float | None = None  # when a write last failed for a full disk
        # Roots not on disk (an unmounted drive, a deleted or renamed folder): their passages
        # are kept, they are not watched, and the worker looks for their return.
        self._missing: set[str] = set()
        self._roots_checked = 0.0
        self._observer: BaseObserver | None = None
        self._watches: dict[str, ObservedWatch] = {}  # by the folder scheduled
        self._log_listener = _WatchdogLog(self._on_events_lost, self._on_watchdog_warning)

    # -- control ------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        """Paths waiting plus files of the current batch not yet done."""
        return len(self.queue) + self._batch_left

    def start(self) -> None:
        """Run in a background thread; returns once live events are being recorded."""
        self._thread = threading.Thread(target=self._run_captured, name="localrag-watch")
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the file(s) in hand, then stop. Safe to call from any thread or twice."""
        self._stop.set()
        self.queue.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """True once every recorded change is indexed (events still in flight are not known)."""
        deadline = time.monotonic() + timeout
        if not self._ready.wait(timeout):
            return False
        return self.queue.wait_idle(max(0.0, deadline - time.monotonic()))

    @property
    def error(self) -> BaseException | None:
        """What stopped a background watcher, if it failed."""
        return self._error

    def run(self) -> None:
        """Reconcile, then index changes as they settle, until `stop()` (or Ctrl-C)."""
        store = Store.open(self.db_path)
        observer: BaseObserver | None = None
        try:
            indexer = Indexer(store, self.embedder, self.settings, on_event=self._index_event)
            self.roots = self._register_roots(store)
            self._check_roots()  # a missing root is said once here, and left out below
            # Watch before reconciling, so nothing that changes during the pass is missed.
            observer = self._start_observer()
            try:
                report = indexer.index([Path(r) for r in self._present_roots()])
            except (DiskFullError, IndexModelChanged) as exc:
                # Not fatal: the live loop goes over every folder again, once there is room
                # or with the model the index was moved to.
                if isinstance(exc, DiskFullError):
                    self._disk_full(exc)
                else:
                    indexer = self._follow_model_change(store, exc)
                for root in self.roots:
                    self.queue.add(root)
                report = IndexReport()
            self._emit("reconciled", report=report)
            self._phase = "live"
            how = f"polling every {self.poll_interval:g}s" if self.backend == "polling" else None
            self._emit("watching", message=how or self.backend)
            self._ready.set()
            self._loop(indexer, store)
        finally:
            _WATCHDOG_LOG.removeHandler(self._log_listener)
            if observer is not None:
                observer.stop()
                observer.join(5)
            store.close()
            self._emit("stopped")

    # -- the worker ---------------------------------------------------------------------------

    def _loop(self, indexer: Indexer, store: Store) -> None:
        changed_since_gc = False
        self._emit("idle")
        while not self._stop.is_set():
            wait = min(_CHECK_DATABASE_EVERY, _CHECK_ROOTS_EVERY)
            settled = self.queue.wait_settled(timeout=wait)
            # A database deleted or replaced under us stops the watch with a clear error
            # (DatabaseGone): writing on would go into a file nobody can open again.
            store.check_file()
            if time.monotonic() - self._roots_checked >= _CHECK_ROOTS_EVERY:
                self._check_roots()
            if not settled:
                continue  # woken to stop, or time to look at the database again
            paths = self.queue.take_settled()
            if not paths:
                continue
            if self._events_lost.is_set():
                self._events_lost.clear()
                self._emit(
                    "notice",
                    message="the system dropped file events (inotify queue overflow); "
                    "re-checking every watched folder",
                )
            self._batch_started = time.monotonic()
            self._batch_left = len(paths)
            self._emit("batch", paths=len(paths))
            left: list[str] = list(paths)
            report = IndexReport()
            try:
                report, left = indexer.update(paths, interrupt=self._should_yield)
                for path, reason in report.problems:
                    if path in self.roots and not os.path.exists(path):
                        self._root_missing(path)  # said once, not at every batch
                    else:
                        self._emit("notice", message=f"{printable(path)}: {reason}")
                changed_since_gc |= bool(report.changed or report.failed or report.skipped)
                if changed_since_gc and not left and len(self.queue) == 0:
                    # Only once drained: a file deleted in one batch and back in the next
                    # (a move seen in two parts) keeps its vectors.
                    store.collect_garbage()
                    store.checkpoint()
                    changed_since_gc = False
                if self._full_since is not None:
                    self._full_since = None
                    self._emit("notice", message="there is disk space again: indexing resumed")
            except DiskFullError as exc:
                self._disk_full(exc)  # the paths stay queued and are tried again after a pause
            except IndexModelChanged as exc:
                # Nothing of the refused file was stored; the batch goes again with the model
                # the index now has (its files done before the switch are then unchanged).
                indexer = self._follow_model_change(store, exc)
            finally:
                self._batch_left = 0
                self.queue.finish(left)
            self._emit("batch-done", report=report)
            if self._full_since is not None:
                self._stop.wait(_DISK_FULL_RETRY)
                # Moving the WAL into the database and cutting it back frees the space that
                # rolled-back pages hold, if there is room enough for the move itself.
                store.checkpoint()
            if self.queue.is_idle():
                self._emit("idle")

    def _follow_model_change(self, store: Store, exc: IndexModelChanged) -> Indexer:
        """Load the model `index --reembed` moved the index to and index on with it; stop
        with a clear error when it is not installed here (or not the same model)."""
        name = str(exc.current["name"])
        try:
            embedder = self._load_embedder(name)
        except LocalragError as load_error:
            raise ModelMismatchError(f"{exc} The watch stops: {load_error}") from exc
        found = embedder.identity
        if identity_record(found.name, found.dim, found.fingerprint) != exc.current:
            raise ModelMismatchError(
                f"{exc} The watch stops: the model installed as {name} "
                f"(fingerprint {found.short_fingerprint}) is not the one the index records."
            ) from exc
        self.embedder = embedder
        self._emit(
            "notice",
            message=f"the index was moved to embedding model {name}: watching goes on with it",
        )
        return Indexer(store, embedder, self.settings, on_event=self._index_event)

    def _disk_full(self, exc: DiskFullError) -> None:
        """Say it once per episode, not at every retry."""
        if self._full_since is None:
            self._full_since = time.monotonic()
            self._emit(
                "notice",
                message=f"{exc} Watching goes on: changes are indexed once there is room.",
            )

    def _should_yield(self) -> bool:
        """Asked by the indexer after each file: stop here so newer changes go first?"""
        if self._stop.is_set():
            return True
        now = time.monotonic()
        if now - self._batch_started < self.yield_after or now - self._last_yield_check < 0.1:
            return False
        self._last_yield_check = now
        return self.queue.has_settled()

    def _index_event(self, event: IndexEvent) -> None:
        if event.kind == "file" and self._phase == "live":
            self._batch_left = event.files_total - event.files_done
        kind = "reconcile" if self._phase == "reconcile" else "index"
        self._emit(kind, index=event)

    def _emit(self, kind: str, **fields: object) -> None:
        self.on_event(WatchEvent(kind, queue_depth=self.queue_depth, **fields))  # type: ignore[arg-type]

    def _run_captured(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # surfaced by start() or .error, never lost in a thread
            self._error = exc
            self._emit("notice", message=f"watcher stopped: {exc}")
        finally:
            self._ready.set()  # release start() either way

    # -- roots and events ---------------------------------------------------------------------

    def _register_roots(self, store: Store) -> list[str]:
        known = {r.path for r in store.roots()}
        for folder in self.folders:
            if str(folder) in known and not folder.exists():
                continue  # an unmounted drive, say: watched for its return (`_check_roots`)
            store.add_root(str(indexable_path(folder)))  # a folder, or one file
        roots = [r.path for r in store.roots()]
        if self.folders:
            # Only the roots holding the folders asked for (add_root may fold into a parent).
            roots = [r for r in roots if any(is_within(str(f), r) for f in self.folders)]
        if not roots:
            raise ConfigError("nothing to watch: give a folder, e.g. `localrag watch ~/Documents`")
        return roots

    def _present_roots(self) -> list[str]:
        return [r for r in self.roots if r not in self._missing]

    def _check_roots(self) -> None:
        """Worker: note each root that went missing or came back since the last look."""
        self._roots_checked = time.monotonic()
        for root in self.roots:
            there = os.path.exists(root)
            if not there and root not in self._missing:
                self._root_missing(root)
            elif there and root in self._missing:
                self._root_back(root)

    def _root_missing(self, root: str) -> None:
        """Keep its passages (an unmounted drive must not empty the index) and stop watching it:
        a renamed folder's watch goes on reporting its events under the old path."""
        if root in self._missing:
            return
        self._missing.add(root)
        watch = self._watches.pop(root, None)  # a folder root's own; a file root's folder stays
        if watch is not None:
            self._unschedule(watch)
        shown = printable(root)
        self._emit(
            "notice",
            message=f"{shown} is missing; its passages are kept (`localrag forget {shown}` "
            "removes them). Watching goes on, and picks it up again if it comes back.",
        )

    def _root_back(self, root: str) -> None:
        """Watch it again and re-check all of it: it may have changed while away."""
        folder, recursive = _watch_points([root])[0]
        stale = self._watches.pop(folder, None)  # its emitter stopped when the folder went
        if stale is not None:
            self._unschedule(stale)
        try:
            self._schedule(folder, recursive)
        except FileNotFoundError:
            return  # gone again already: still missing, looked at next time
        except OSError as exc:  # e.g. the inotify limit: indexed now, changes on the next start
            self._emit("notice", message=f"{printable(root)} cannot be watched: {exc}")
        self._missing.discard(root)
        # The file roots that share the folder's watch, which was briefly down, too.
        for other in self._present_roots():
            if other == root or _watch_points([other])[0][0] == folder:
                self.queue.add(other)
        self._emit("notice", message=f"{printable(root)} is back: indexing its changes")

    def _schedule(self, folder: str, recursive: bool) -> None:
        assert self._observer is not None
        self._watches[folder] = self._observer.schedule(
            _Handler(self), folder, recursive=recursive, event_filter=_EVENT_FILTER
        )

    def _unschedule(self, watch: ObservedWatch) -> None:
        if self._observer is not None:
            with contextlib.suppress(KeyError):  # already dropped by the observer
                self._observer.unschedule(watch)

    def record(self, event: FileSystemEvent) -> None:
        """Observer thread: note the paths an event touches. Must stay cheap."""
        if event.event_type not in _RELEVANT:
            return
        if event.is_directory and event.event_type in ("modified", "attrib", "closed"):
            return  # a folder's own mtime: its files' events say what changed
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if not raw:
                continue
            path = os.fsdecode(raw)
            if path == self._database_path and event.event_type in ("deleted", "moved"):
                self.queue.wake()  # the worker looks at the database file at once
            elif self._wanted(path):
                self.queue.add(path)

    def _on_watchdog_warning(self, message: str) -> None:
        self._emit("notice", message=f"file watching: {message}")

    def _on_events_lost(self) -> None:
        """Observer thread: the kernel dropped events, so only a full re-check is safe."""
        self._events_lost.set()
        for root in self.roots:
            self.queue.add(root)

    def _wanted(self, path: str) -> bool:
        if path in self._database_files:
            return False  # our own writes, when the index lives in a watched folder
        root = next((r for r in self.roots if is_within(path, r)), None)
        if root is None or root in self._missing:
            return False
        return path == root or not is_excluded_name(path, root)

    def _start_observer(self) -> BaseObserver:
        if not self.polling:
            observer = Observer()
            try:
                self._schedule_and_start(observer)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EMFILE):
                    raise
                self._fall_back(str(exc))
            else:
                self.backend = _backend_name(observer)
                missing = (
                    _unwatched_folders(_watch_points(self._present_roots()))
                    if self.backend == "inotify"
                    else 0
                )
                if not missing:
                    return observer
                observer.stop()
                observer.join(5)
                self._fall_back(f"{missing} folders could not be watched")
        observer = PollingObserver(timeout=self.poll_interval)
        self._schedule_and_start(observer)
        self.backend = "polling"
        return observer

    def _schedule_and_start(self, observer: BaseObserver) -> None:
        # watchdog warns when a renamed folder's watch is re-registered; it handles it fine.
        warnings.filterwarnings(
            "ignore", message="Callback with id", category=RuntimeWarning, module="watchdog"
        )
        _WATCHDOG_LOG.addHandler(self._log_listener)
        self._observer = observer
        self._watches = {}
        for folder, recursive in _watch_points(self._present_roots()):
            self._schedule(folder, recursive)
        observer.start()

    def _fall_back(self, why: str) -> None:
        limit = _read_setting("/proc/sys/fs/inotify/max_user_watches")
        self._emit(
            "notice",
            message=(
                f"inotify watch limit reached ({why}; fs.inotify.max_user_watches = {limit}). "
                f"Falling back to polling every {self.poll_interval:g}s, which uses more CPU. "
                "To watch with inotify, raise the limit: "
                "sudo sysctl fs.inotify.max_user_watches=524288"
            ),
        )


class _Handler(FileSystemEventHandler):
    """The watchdog handler: forwards every event to `Watcher.record`."""

    def __init__(self, watcher: Watcher) -> None:
        super().__init__()
        self.watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        self.watcher.record(event)


# watchdog logs, rather than reports, what goes wrong in its threads: above all an inotify queue
# overflow, after which it rebuilds its watches but the events in between are lost.
_WATCHDOG_LOG = logging.getLogger("watchdog")


class _WatchdogLog(logging.Handler):
    """Turns watchdog's warnings into a full re-check (overflow) or a notice (the rest)."""

    def __init__(self, on_overflow: Callable[[], None], on_warning: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow
        self.on_warning = on_warning

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "overflow" in message.lower():
            self.on_overflow()
        else:
            self.on_warning(message)


def _backend_name(observer: BaseObserver) -> str:
    name = type(observer).__name__.removesuffix("Observer").lower()
    return name or "native"


def _watch_points(roots: Sequence[str]) -> list[tuple[str, bool]]:
    """(folder, recursive) to schedule: each folder root with everything below it, and for a
    root that is one file its folder alone. Watching the folder rather than the file sees an
    editor's save by renaming a new file over it; `_wanted` drops the folder's other files."""
    points: dict[str, bool] = {}
    for root in roots:
        if os.path.isdir(root):
            points[root] = True
        else:
            points.setdefault(os.path.dirname(root), False)
    return list(points.items())


def _unwatched_folders(points: Sequence[tuple[str, bool]]) -> int:
    """How many folders inotify is not watching (watchdog skips them silently at the limit).

    Compares the folders scheduled, with those under the recursive ones counted as watchdog
    walks them, with the inotify watches this process holds (/proc/self/fdinfo). Linux only;
    0 when it cannot tell.
    """
    if not sys.platform.startswith("linux"):
        return 0
    wanted = 0
    for root, recursive in points:
        wanted += 1
        if not recursive:
            continue
        for folder, subfolders, _ in os.walk(root):
            wanted += sum(
                1 for name in subfolders if not os.path.islink(os.path.join(folder, name))
            )
    held = 0
    try:
        for fd in os.listdir("/proc/self/fdinfo"):
            try:
                with open(f"/proc/self/fdinfo/{fd}") as fh:
                    held += fh.read().count("inotify wd:")
            except OSError:
                continue
    except OSError:
        return 0
    return max(0, wanted - held)


def _read_setting(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"
