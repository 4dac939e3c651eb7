"""The status bar: which knowledge base, what the index is doing, which model answers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label

from localrag.assistant import IndexStatus
from localrag.paths import printable

WatchState = Literal["starting", "indexing", "watching", "not watching", "stopped"]


@dataclass(frozen=True)
class Activity:
    """What the watcher is doing now, from its latest event."""

    state: WatchState = "starting"
    done: int = 0
    total: int = 0
    queue: int = 0

    def describe(self) -> str:
        if self.state == "indexing" and self.total:
            return f"indexing {self.done}/{self.total}"
        if self.state == "watching" and self.queue:
            return f"{self.queue} queued"
        return self.state


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def knowledge_base_name(status: IndexStatus) -> str:
    if not status.folders:
        return "no folders"
    path = status.folders[0].path
    first = printable(os.path.basename(path.rstrip(os.sep)) or path)
    more = len(status.folders) - 1
    return f"{first} +{more}" if more else first


def index_summary(status: IndexStatus | None, activity: Activity) -> str:
    """One line: knowledge base, files, chunks, problems, activity."""
    if status is None:
        return "opening the knowledge base…"
    parts = [knowledge_base_name(status)]
    if status.folders:
        parts.append(_plural(status.indexed, "file"))
        parts.append(_plural(status.chunks, "chunk"))
    if status.errors:
        parts.append(_plural(status.errors, "error"))
    if status.missing:
        parts.append(f"{len(status.missing)} missing")
    parts.append(activity.describe())
    return " · ".join(parts)


class StatusBar(Horizontal):
    """Index state on the left, model and mode on the right."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $text-muted;
    }
    StatusBar > #index-state { width: 1fr; padding: 0 1; }
    StatusBar > #model-state { width: auto; padding: 0 1; }
    StatusBar.-problem > #index-state { color: $text-warning; }
    """

    def compose(self) -> ComposeResult:
        yield Label("opening the knowledge base…", id="index-state", markup=False)
        yield Label("", id="model-state", markup=False)

    def show_index(self, status: IndexStatus | None, activity: Activity) -> None:
        self.query_one("#index-state", Label).update(index_summary(status, activity))
        self.set_class(bool(status and (status.errors or status.missing)), "-problem")

    def show_model(self, text: str) -> None:
        self.query_one("#model-state", Label).update(text)

    @property
    def index_text(self) -> str:
        return str(self.query_one("#index-state", Label).render())

    @property
    def model_text(self) -> str:
        return str(self.query_one("#model-state", Label).render())
