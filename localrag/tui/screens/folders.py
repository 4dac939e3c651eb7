"""The watched folders: add one, remove one (with a confirmation)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList
from textual.widgets.option_list import Option

from localrag.paths import printable

if TYPE_CHECKING:
    from localrag.assistant import Folder


@dataclass(frozen=True)
class FolderChange:
    """What the user asked for: the app does the adding or removing."""

    action: Literal["add", "remove"]
    path: str


class FoldersScreen(ModalScreen[FolderChange | None]):
    """Lists the knowledge base's folders; dismissed with the change asked for, if any."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("d,delete", "remove", "Remove folder"),
    ]

    def __init__(self, folders: list[Folder], *, focus_input: bool = False) -> None:
        super().__init__()
        self.folders = folders
        self.focus_input = focus_input

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text("Watched folders · d removes the highlighted one", style="bold"))
            yield OptionList(*[self._option(f) for f in self.folders], id="folder-list")
            if not self.folders:
                yield Label(Text("No folders yet: add one below.", style="dim"))
            yield Input(placeholder="Add a folder: type its path, then enter", id="folder-input")

    def _option(self, folder: Folder) -> Option:
        line = Text(printable(folder.path))
        if not folder.exists:
            line.append("  missing", style="bold red")
        return Option(line, id=folder.path)

    def on_mount(self) -> None:
        if self.focus_input or not self.folders:
            self.query_one("#folder-input").focus()

    @on(Input.Submitted, "#folder-input")
    def _add(self, event: Input.Submitted) -> None:
        path = os.path.expanduser(event.value.strip())
        if not path:
            return
        if not os.path.isdir(path):
            self.notify(f"not a folder: {path}", severity="error")
            return
        self.dismiss(FolderChange("add", path))

    def action_remove(self) -> None:
        options = self.query_one("#folder-list", OptionList)
        if options.highlighted is None or not self.folders:
            return
        folder = options.get_option_at_index(options.highlighted).id or ""

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.dismiss(FolderChange("remove", folder))

        self.app.push_screen(
            ConfirmScreen(
                f"Remove {folder} from the knowledge base?\n"
                "Its passages are forgotten; the files stay."
            ),
            confirmed,
        )


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "dismiss(False)", "No"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.question))
            with Horizontal(classes="buttons"):
                yield Button("Remove (y)", variant="error", id="yes")
                yield Button("Keep (n)", id="no")

    @on(Button.Pressed)
    def _answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
