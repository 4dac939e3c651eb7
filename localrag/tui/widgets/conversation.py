"""The conversation pane: questions, streamed Markdown answers, citations that select sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Markdown, Static

from localrag.tui.display import CitationLinker, citation_number, link_citations

if TYPE_CHECKING:
    from textual.widgets._markdown import MarkdownStream

    from localrag.answer import Source
    from localrag.llm import GenerationStats


@dataclass
class TurnData:
    """What a turn shows, whether it is streaming now or was reopened from the database."""

    question: str
    text: str = ""
    mode: str = ""
    search_query: str = ""
    sources: list[Source] = field(default_factory=list)
    cited: list[int] = field(default_factory=list)
    stopped: bool = False
    error: str | None = None

    @property
    def shown_sources(self) -> list[Source]:
        """Cited sources; all of them when the answer cites none (passages, collection)."""
        cited = set(self.cited)
        chosen = [s for s in self.sources if s.number in cited]
        return chosen or list(self.sources)

    def as_text(self) -> str:
        """The answer with its source list, as plain text for the clipboard."""
        lines = [self.text.strip()]
        if self.shown_sources:
            lines.append("")
            lines.append("Sources:")
            for s in self.shown_sources:
                lines.append(f"[{s.number}] {s.passage.path} ({s.location})")
        return "\n".join(lines)


def passages_markdown(sources: list[Source], query: str) -> str:
    """Search-only and no-model answers: each passage quoted under its source line."""
    from localrag.retrieval import snippet

    blocks = []
    for source in sources:
        text, _ = snippet(source.result.chunk.text, query, width=300)
        where = f"`{source.passage.path}` · {source.location}"
        blocks.append(f"[{source.number}] {where}\n\n> {text}")
    return "\n\n".join(blocks)


class TurnView(Vertical):
    """One question and its answer."""

    DEFAULT_CSS = """
    TurnView { height: auto; padding: 0 1; margin-bottom: 1; }
    TurnView.-selected { background: $boost; border-left: thick $accent; padding-left: 0; }
    TurnView > .question { color: $text-primary; text-style: bold; }
    TurnView > Markdown { margin: 0; padding: 0; }
    TurnView > .meta { color: $text-muted; }
    TurnView.-error > .meta { color: $text-error; }
    """

    class Clicked(Message):
        def __init__(self, turn: TurnView) -> None:
            super().__init__()
            self.turn = turn

    class CitationClicked(Message):
        def __init__(self, turn: TurnView, number: int) -> None:
            super().__init__()
            self.turn = turn
            self.number = number

    def __init__(self, data: TurnData) -> None:
        super().__init__()
        self.data = data
        self._linker = CitationLinker()
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text("› " + self.data.question), classes="question")
        yield Markdown(link_citations(self.data.text), open_links=False)
        yield Static("", classes="meta")

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    def set_meta(self, text: str) -> None:
        self.query_one(".meta", Static).update(Text(text))

    @property
    def meta_text(self) -> str:
        return str(self.query_one(".meta", Static).visual)

    async def begin(self, sources: list[Source], mode: str, search_query: str) -> None:
        self.data.sources, self.data.mode, self.data.search_query = sources, mode, search_query
        if mode == "generated":
            self.set_meta(f"writing… ({len(sources)} passages) · esc stops")
            self._stream = Markdown.get_stream(self.markdown)

    async def append(self, piece: str) -> None:
        self.data.text += piece
        if self._stream is not None:
            await self._stream.write(self._linker.feed(piece))
            if isinstance(self.parent, ConversationView):
                self.parent.follow()

    async def finish(
        self,
        text: str,
        cited: list[int],
        *,
        stopped: bool,
        stats: GenerationStats | None = None,
        passages_only: str | None = None,
    ) -> None:
        view = self.parent if isinstance(self.parent, ConversationView) else None
        following = view is not None and view.following  # before the final text grows the turn
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.data.text, self.data.cited, self.data.stopped = text, cited, stopped
        await self.markdown.update(self._final_markdown())
        self.set_meta(self._meta(stats, passages_only))
        if view is not None and following:
            # Passages (no model, search only) come all at once, unstreamed: show their end too.
            view.call_after_refresh(view.scroll_end, animate=False)

    async def fail(self, message: str) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.data.error = message
        self.add_class("-error")
        self.set_meta(message)

    def _final_markdown(self) -> str:
        if self.data.mode == "extractive":
            return link_citations(passages_markdown(self.data.sources, self.data.search_query))
        return link_citations(self.data.text)

    def _meta(self, stats: GenerationStats | None, passages_only: str | None) -> str:
        data = self.data
        parts: list[str] = []
        if data.mode == "generated":
            cited = len(data.cited)
            parts.append(
                f"{cited} of {len(data.sources)} sources cited" if cited else "no citations"
            )
        elif data.mode == "extractive":
            count = len(data.sources)
            parts.append(f"{count} passage{'' if count == 1 else 's'}")
            if passages_only:  # why the model did not answer: "no model", "base model"
                parts.append(passages_only)
        elif data.mode == "collection":
            parts.append(f"{len(data.sources)} files, from the whole index")
        if data.stopped:
            parts.append("stopped")
        if stats is not None and stats.tokens_per_s:
            parts.append(f"{stats.tokens_per_s:.0f} tokens/s")
        return " · ".join(parts)

    def show_saved(self) -> None:
        """A reopened turn: rendered once, no stream."""
        self.markdown.update(self._final_markdown())
        self.set_meta(self._meta(None, None))

    def on_click(self) -> None:
        self.post_message(self.Clicked(self))

    @on(Markdown.LinkClicked)
    def _citation_link(self, event: Markdown.LinkClicked) -> None:
        event.stop()
        number = citation_number(event.href)
        if number is not None:
            self.post_message(self.CitationClicked(self, number))


WELCOME = """\
Ask a question about your documents below. Answers cite their sources: [1], [2]…

Keys: tab goes to the answers, where ↑/↓ pick one and 1-9 show a cited source, then to \
the sources; esc stops an answer; ctrl+p lists every command.
"""


class ConversationView(VerticalScroll, can_focus=True):
    """The turns of one conversation; one is selected, and its sources are shown beside it."""

    DEFAULT_CSS = """
    ConversationView { padding: 0 0; }
    ConversationView > #welcome { color: $text-muted; padding: 1 2; }
    ConversationView > #welcome.-problem { color: $text-warning; }
    """

    BINDINGS = [
        Binding("up,k", "select(-1)", "Previous answer", show=False),
        Binding("down,j", "select(1)", "Next answer", show=False),
    ]

    class Selected(Message):
        def __init__(self, turn: TurnView | None) -> None:
            super().__init__()
            self.turn = turn

    class CitationChosen(Message):
        def __init__(self, turn: TurnView, number: int) -> None:
            super().__init__()
            self.turn = turn
            self.number = number

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.selected: TurnView | None = None

    def compose(self) -> ComposeResult:
        yield Static(WELCOME, id="welcome", markup=False)

    @property
    def turns(self) -> list[TurnView]:
        return list(self.query(TurnView))

    def set_welcome(self, text: str, *, problem: bool = False) -> None:
        welcome = self.query_one("#welcome", Static)
        welcome.update(text)
        welcome.set_class(problem, "-problem")

    async def add_turn(self, data: TurnData) -> TurnView:
        self.query_one("#welcome").display = False
        turn = TurnView(data)
        await self.mount(turn)
        self.select(turn)
        self.scroll_end(animate=False)
        return turn

    @property
    def following(self) -> bool:
        """At the end, or near it: the user has not scrolled up to read."""
        return self.max_scroll_y - self.scroll_y <= 3

    def follow(self) -> None:
        """Keep the end of a growing answer in view, unless the user scrolled up to read."""
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False)

    async def clear(self) -> None:
        await self.query(TurnView).remove()
        self.query_one("#welcome").display = True
        self.select(None)

    def select(self, turn: TurnView | None) -> None:
        if self.selected is not None:
            self.selected.remove_class("-selected")
        self.selected = turn
        if turn is not None:
            turn.add_class("-selected")
        self.post_message(self.Selected(turn))

    def action_select(self, step: int) -> None:
        turns = self.turns
        if not turns:
            return
        current = self.selected
        index = turns.index(current) + step if current in turns else len(turns) - 1
        turn = turns[max(0, min(len(turns) - 1, index))]
        self.select(turn)
        self.scroll_to_widget(turn, animate=False)

    def on_key(self, event: events.Key) -> None:
        key = event.key
        if len(key) == 1 and key in "123456789" and self.selected is not None:
            event.stop()
            self.post_message(self.CitationChosen(self.selected, int(key)))

    @on(TurnView.Clicked)
    def _turn_clicked(self, event: TurnView.Clicked) -> None:
        self.select(event.turn)

    @on(TurnView.CitationClicked)
    def _citation_clicked(self, event: TurnView.CitationClicked) -> None:
        event.stop()
        self.select(event.turn)
        self.post_message(self.CitationChosen(event.turn, event.number))
