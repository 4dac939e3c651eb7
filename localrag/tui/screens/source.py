"""A source in context: the cited passage between its neighbours, opened from the sources pane."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from localrag.retrieval import join_passages
from localrag.tui.display import passage_text

if TYPE_CHECKING:
    from localrag.answer import Source
    from localrag.store import ChunkHit


class SourceScreen(ModalScreen[None]):
    """More of the file around a passage, as indexed; `e` opens the file itself."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "Back"),
        Binding("e", "open_file", "Open in editor"),
        Binding("plus,equals_sign", "more_context", "More context"),
    ]

    def __init__(
        self,
        source: Source,
        query: str,
        context: list[ChunkHit],
        *,
        fetch_context: Callable[[int, int], list[ChunkHit]],
        open_file: Callable[[str, int | None], None],
    ) -> None:
        super().__init__()
        self.source = source
        self.search_query = query
        self.context = context
        self.fetch_context = fetch_context  # (chunk id, passages each side) -> passages
        self.open_file = open_file  # (path, line) -> shown in the editor or viewer

    def compose(self) -> ComposeResult:
        source = self.source
        with Vertical(id="source-dialog", classes="dialog"):
            title = f"[{source.number}] {source.passage.path} · {source.location}"
            yield Label(Text(title, style="bold"), id="source-title")
            if source.passage.heading:
                yield Label(Text(source.passage.heading, style="italic"), id="source-heading")
            with VerticalScroll(id="source-body"):
                yield from self._passages()
            yield Label(
                Text("e open file · + more context · esc back", style="dim"), id="source-keys"
            )

    def _passages(self) -> list[Static]:
        run = set(self.source.result.run)  # the passages the result joins (usually one)
        if not run <= {hit.chunk_id for hit in self.context}:
            note = "This passage is no longer in the index (the file changed since); "
            note += "this is the text the answer used."
            return [
                Static(Text(note, style="italic"), classes="note"),
                Static(passage_text(self.source.result.chunk.text, self.search_query), id="cited"),
            ]
        cited = [hit for hit in self.context if hit.chunk_id in run]
        first, last = cited[0].ordinal, cited[-1].ordinal
        return [
            *(Static(Text(h.text), classes="context") for h in self.context if h.ordinal < first),
            # Joined as search joined them: a sentence two passages share is shown once.
            Static(passage_text(join_passages(cited), self.search_query), id="cited"),
            *(Static(Text(h.text), classes="context") for h in self.context if h.ordinal > last),
        ]

    def on_mount(self) -> None:
        cited = self.query_one("#cited")
        self.call_after_refresh(self.query_one("#source-body").scroll_to_widget, cited, top=True)

    @property
    def cited_text(self) -> str:
        return str(self.query_one("#cited", Static).visual)

    def action_open_file(self) -> None:
        chunk = self.source.result.chunk
        self.open_file(chunk.path, chunk.line_start)

    async def action_more_context(self) -> None:
        around = max(1, (len(self.context) + 1) // 2) + 1
        self.context = self.fetch_context(self.source.result.chunk.chunk_id, around)
        body = self.query_one("#source-body")
        await body.remove_children()
        await body.mount_all(self._passages())
        self.call_after_refresh(body.scroll_to_widget, self.query_one("#cited"), top=True)
