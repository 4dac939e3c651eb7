"""The sources pane: the passages behind the selected answer, with the matching words marked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from localrag.tui.display import passage_snippet

if TYPE_CHECKING:
    from localrag.answer import Source
    from localrag.tui.widgets.conversation import TurnData


def source_label(source: Source, *, cited: bool) -> Group:
    """`[2] path · lines 4-9`, the heading, and the best-matching words of the passage."""
    head = Text()
    head.append(f"[{source.number}] ", style="bold" if cited else "dim")
    head.append(source.passage.path, style="bold" if cited else "")
    head.append(f" · {source.location}", style="dim")
    lines: list[Text] = [head]
    if source.passage.heading:
        lines.append(Text(source.passage.heading, style="italic"))
    return Group(*lines)


class SourcesPane(Vertical):
    """Lists the sources of one turn; enter (or a click) opens one with its context."""

    DEFAULT_CSS = """
    SourcesPane { border-left: solid $panel-lighten-2; }
    SourcesPane > #sources-title { padding: 0 1; color: $text-muted; width: 1fr; }
    SourcesPane > OptionList { height: 1fr; border: none; padding: 0; }
    """

    class Opened(Message):
        """The user chose a source to read."""

        def __init__(self, source: Source, query: str) -> None:
            super().__init__()
            self.source = source
            self.query = query

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.turn: TurnData | None = None
        self._by_option: dict[str, Source] = {}

    def compose(self) -> ComposeResult:
        yield Label("Sources", id="sources-title")
        yield OptionList(id="source-list")

    @property
    def option_list(self) -> OptionList:
        return self.query_one("#source-list", OptionList)

    @property
    def sources(self) -> list[Source]:
        return list(self._by_option.values())

    def show(self, turn: TurnData | None) -> None:
        """Show `turn`'s sources (cited ones, or all when it cites none)."""
        self.turn = turn
        options = self.option_list
        options.clear_options()
        self._by_option.clear()
        if turn is None or not turn.sources:
            title = "Sources" if turn is None else "Sources: none for this answer"
            self.query_one("#sources-title", Label).update(title)
            return
        shown = turn.shown_sources
        cited = set(turn.cited)
        count = len(shown)
        note = f"{count} cited" if cited else f"{count} passage{'' if count == 1 else 's'}"
        self.query_one("#sources-title", Label).update(f"Sources · {note} · enter opens")
        for source in shown:
            option_id = f"source-{source.number}"
            self._by_option[option_id] = source
            snippet = passage_snippet(source.result.chunk.text, turn.search_query, width=200)
            label = source_label(source, cited=source.number in cited)
            options.add_option(Option(Group(label, snippet, Text("")), id=option_id))
        options.highlighted = 0

    def highlight(self, number: int) -> Source | None:
        """Move the cursor to source `number`; None when this answer has no such source."""
        option_id = f"source-{number}"
        if option_id not in self._by_option:
            return None
        options = self.option_list
        options.highlighted = options.get_option_index(option_id)
        return self._by_option[option_id]

    @on(OptionList.OptionSelected, "#source-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        source = self._by_option.get(event.option_id or "")
        if source is not None and self.turn is not None:
            self.post_message(self.Opened(source, self.turn.search_query))
