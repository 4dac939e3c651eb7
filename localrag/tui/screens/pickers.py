"""Choosing a language model, and reopening a saved conversation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from localrag.sizes import format_bytes

if TYPE_CHECKING:
    from localrag.conversations import ConversationSummary
    from localrag.models.registry import ModelEntry

NO_MODEL = "__no_model__"


class ModelScreen(ModalScreen[str | None]):
    """Returns the chosen model's name, NO_MODEL for extractive mode, or None (cancelled)."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, entries: list[ModelEntry], current: str | None) -> None:
        super().__init__()
        self.entries = entries
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text("Language model", style="bold"))
            options = []
            for entry in self.entries:
                line = Text(entry.name, style="bold" if entry.name == self.current else "")
                line.append(
                    f"  {entry.quantization} · {format_bytes(entry.size_bytes)}", style="dim"
                )
                if entry.chat is False:  # no chat template: `ask` shows passages with it
                    line.append("  base model: for fine-tuning, not chat", style="yellow")
                if entry.name == self.current:
                    line.append("  (in use)", style="dim")
                options.append(Option(line, id=entry.name))
            options.append(Option(Text("No model: show the best passages (extractive)"), NO_MODEL))
            yield OptionList(*options, id="model-list")
            if not self.entries:
                yield Label(
                    Text(
                        "No model installed. Add one from a terminal: `localrag models pull` "
                        "(online) or `localrag models import FILE.gguf`.",
                        style="dim",
                    )
                )

    @on(OptionList.OptionSelected, "#model-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option_id)


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


class ConversationsScreen(ModalScreen[int | None]):
    """Saved conversations, newest first; returns the id to reopen, or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("d,delete", "delete", "Delete"),
    ]

    def __init__(self, summaries: list[ConversationSummary], delete: Callable[[int], bool]) -> None:
        super().__init__()
        self.summaries = summaries
        self.delete = delete  # forgets a saved conversation; False: it was not there

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text("Conversations · enter opens · d deletes", style="bold"))
            yield OptionList(*[self._option(s) for s in self.summaries], id="conversation-list")
            if not self.summaries:
                yield Label(Text("No saved conversations yet.", style="dim"))

    def _option(self, summary: ConversationSummary) -> Option:
        line = Text(summary.title)
        turns = f"{summary.turns} question" + ("" if summary.turns == 1 else "s")
        line.append(f"  {_when(summary.updated_at)} · {turns}", style="dim")
        return Option(line, id=str(summary.id))

    @on(OptionList.OptionSelected, "#conversation-list")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option_id or 0))

    def action_delete(self) -> None:
        options = self.query_one("#conversation-list", OptionList)
        if options.highlighted is None:
            return
        option = options.get_option_at_index(options.highlighted)
        conversation_id = int(option.id or 0)
        if self.delete(conversation_id):
            options.remove_option(option.id or "")
