"""Files that could not be indexed, and what the watcher reported."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from localrag.paths import printable


class ProblemsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "dismiss(None)", "Close")]

    def __init__(self, problems: list[tuple[str, str, str]], notices: list[str]) -> None:
        super().__init__()
        self.problems = problems
        self.notices = notices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            count = len(self.problems)
            title = f"Indexing problems · {count} file" + ("" if count == 1 else "s")
            yield Label(Text(title, style="bold"))
            table: DataTable[str] = DataTable(id="problem-table", cursor_type="row")
            table.add_columns("file", "status", "why")
            for path, status, reason in self.problems:
                table.add_row(printable(path), status, reason or "")
            yield table
            if not self.problems:
                yield Label(Text("Every file was indexed.", style="dim"))
            if self.notices:
                yield Label(Text("Watcher notices", style="bold"))
                for notice in self.notices[-8:]:
                    yield Label(Text(notice, style="dim"))
