"""The TUI's widget-free helpers: citation links, highlighted passages, editor commands."""

from __future__ import annotations

import pytest

from localrag.tui.display import (
    HIGHLIGHT,
    CitationLinker,
    citation_number,
    link_citations,
    passage_snippet,
)
from localrag.tui.editor import open_command


def test_citations_become_links_outside_code() -> None:
    assert link_citations("Twenty weeks [1][3].") == (
        "Twenty weeks [\\[1\\]](source:1)[\\[3\\]](source:3)."
    )
    assert link_citations("use `a[1]` here [2]") == "use `a[1]` here [\\[2\\]](source:2)"
    fenced = "```\nx = y[1]\n```\nsee [1]"
    assert link_citations(fenced) == "```\nx = y[1]\n```\nsee [\\[1\\]](source:1)"


def test_citation_links_survive_streaming_pieces() -> None:
    linker = CitationLinker()
    pieces = ["The `lis", "t[0]` holds it ", "[2]"]  # the filter upstream never splits [n]
    out = "".join(linker.feed(p) for p in pieces)
    assert out == "The `list[0]` holds it [\\[2\\]](source:2)"


@pytest.mark.parametrize(
    ("href", "number"), [("source:3", 3), ("source:x", None), ("https://a.b/1", None)]
)
def test_citation_number(href: str, number: int | None) -> None:
    assert citation_number(href) == number


def test_snippet_marks_the_question_words() -> None:
    text = "Staff cars go on levels two and three; level one is for visitors and deliveries."
    shown = passage_snippet(text, "where do visitors park", width=200)
    marked = [shown.plain[s.start : s.end] for s in shown.spans if s.style == HIGHLIGHT]
    assert marked == ["visitors"]


@pytest.mark.parametrize(
    ("editor", "expected"),
    [
        ("vim", ["vim", "+12", "/d/a.md"]),
        ("nano -w", ["nano", "-w", "+12", "/d/a.md"]),
        ("/usr/bin/emacs", ["/usr/bin/emacs", "+12", "/d/a.md"]),
        ("hx", ["hx", "/d/a.md:12"]),
        ("code --wait", ["code", "--wait", "-g", "/d/a.md:12"]),
        ("someeditor", ["someeditor", "/d/a.md"]),
    ],
)
def test_editor_commands_open_at_the_line(editor: str, expected: list[str]) -> None:
    assert open_command("/d/a.md", 12, editor) == expected


def test_documents_open_in_the_viewer_and_text_needs_an_editor() -> None:
    assert open_command("/d/report.pdf", 3, None)[1:] == ["/d/report.pdf"]
    with pytest.raises(ValueError, match="EDITOR"):
        open_command("/d/a.md", 3, None)


def test_the_welcome_text_wraps_to_the_pane_not_at_fixed_columns() -> None:
    """Shown as plain text: a newline inside a sentence breaks the line at any pane width."""
    from localrag.tui.widgets.conversation import WELCOME

    paragraphs = WELCOME.strip().split("\n\n")
    assert len(paragraphs) == 2
    assert all("\n" not in paragraph for paragraph in paragraphs)
