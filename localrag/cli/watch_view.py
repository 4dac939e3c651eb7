"""Terminal rendering of a running watcher: a progress bar while reconciling, then one line
per change and a status line with the queue depth (or JSON lines with --json)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.status import Status

from localrag.watcher import WatchEvent

# Index statuses worth a line of their own; "unchanged" files are only counted.
_SHOWN = {"added", "updated", "moved", "skipped", "error", "vanished"}


class WatchView:
    """Turns WatchEvents into terminal output. Called from the watcher's thread."""

    def __init__(
        self,
        out: Console,
        err: Console,
        display_path: Callable[[str], str],
        *,
        quiet: bool = False,
        as_json: bool = False,
    ) -> None:
        self.out = out
        self.err = err
        self.display_path = display_path
        self.quiet = quiet
        self.as_json = as_json
        self._progress: Progress | None = None
        self._task: Any = None
        self._status: Status | None = None

    def __call__(self, event: WatchEvent) -> None:
        if self.as_json:
            self._json(event)
        else:
            self._text(event)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._status is not None:
            self._status.stop()
            self._status = None

    # -- text ---------------------------------------------------------------------------------

    def _text(self, event: WatchEvent) -> None:
        kind = event.kind
        if kind == "reconcile" and event.index is not None:
            self._reconcile_progress(event)
        elif kind == "reconciled" and event.report is not None:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None
            r = event.report
            files = f"{r.files_seen} file{'s' if r.files_seen != 1 else ''}"
            self.err.print(
                f"Up to date in {r.seconds:.1f}s: {files}; since the last run {r.added} added, "
                f"{r.updated} updated, {r.moved} moved, {r.deleted} deleted."
            )
        elif kind == "watching":
            self.err.print(f"Watching for changes ({event.message}). Ctrl-C to stop.")
            if not self.quiet:
                self._status = Status("idle", console=self.err)
                self._status.start()
        elif kind == "notice":
            self._line(f"[yellow]{event.message}[/]", force=True)
        elif kind == "index" and event.index is not None:
            ix = event.index
            if ix.kind == "file" and ix.status in _SHOWN:
                style = "yellow" if ix.status in ("error", "skipped") else "green"
                detail = f" ({ix.detail})" if ix.detail else ""
                self._line(f"[{style}]{ix.status}[/] {self.display_path(ix.path or '')}{detail}")
            elif ix.kind == "deleted":
                self._line(f"[red]deleted[/] {self.display_path(ix.path or '')}")
            self._set_status(f"indexing · {event.queue_depth} queued")
        elif kind == "batch":
            self._set_status(f"indexing · {event.queue_depth} queued")
        elif kind == "idle":
            self._set_status(f"idle · up to date at {time.strftime('%H:%M:%S')}")

    def _reconcile_progress(self, event: WatchEvent) -> None:
        ix = event.index
        assert ix is not None
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]Catching up"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[chunks]} chunks embedded"),
                TimeElapsedColumn(),
                console=self.err,
                transient=True,
                disable=self.quiet,
            )
            self._task = self._progress.add_task("reconcile", total=None, chunks=0)
            self._progress.start()
        if ix.kind == "scanned":
            self._progress.update(self._task, total=ix.files_total)
        elif ix.kind == "file":
            self._progress.update(self._task, completed=ix.files_done)
        elif ix.kind == "embedded":
            self._progress.update(self._task, chunks=ix.chunks_embedded)

    def _line(self, text: str, *, force: bool = False) -> None:
        if self.quiet and not force:
            return
        self.out.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {text}")

    def _set_status(self, text: str) -> None:
        if self._status is not None:
            self._status.update(text)

    # -- json ---------------------------------------------------------------------------------

    def _json(self, event: WatchEvent) -> None:
        payload: dict[str, Any] = {"event": event.kind, "queue_depth": event.queue_depth}
        if event.message:
            payload["message"] = event.message
        if event.paths:
            payload["paths"] = event.paths
        if event.index is not None:
            ix = event.index
            if event.kind == "reconcile" and ix.kind == "embedded":
                return  # too chatty for a log; "file" events carry the progress
            payload.update(
                {k: v for k, v in vars(ix).items() if v not in (None, 0) and k != "kind"}
            )
            payload["index_event"] = ix.kind
        if event.report is not None:
            r = event.report
            payload["report"] = {
                k: getattr(r, k)
                for k in (
                    "files_seen added updated moved deleted skipped failed "
                    "chunks_embedded chunks_reused"
                ).split()
            }
            payload["report"]["seconds"] = round(r.seconds, 3)
        print(json.dumps(payload), flush=True)
