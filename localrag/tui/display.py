"""Text shaping for the TUI that needs no widgets: citation links, highlighted passages."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.text import Text

CITATION_SCHEME = "source:"
_CITATION = re.compile(r"\[(\d{1,3})\]")
HIGHLIGHT = "bold underline"


class CitationLinker:
    """Turns `[2]` in streamed Markdown into a link to source 2, outside code.

    Fed the answer piece by piece (the citation filter upstream never splits a `[n]`), it
    tracks whether the text is inside a code span or fence, where `[2]` is code, not a citation.
    """

    def __init__(self) -> None:
        self._ticks = 0  # backticks seen outside fences: odd means inside a code span
        self._fenced = False
        self._line_start = True

    def feed(self, piece: str) -> str:
        out: list[str] = []
        for part in re.split(r"(`+|\n)", piece):
            if not part:
                continue
            if part == "\n":
                self._line_start = True
                out.append(part)
                continue
            if part.startswith("`"):
                if len(part) >= 3 and self._line_start:
                    self._fenced = not self._fenced
                elif not self._fenced:
                    self._ticks += 1
                self._line_start = False
                out.append(part)
                continue
            self._line_start = False
            if self._fenced or self._ticks % 2:
                out.append(part)
            else:
                out.append(_CITATION.sub(lambda m: _link(m.group(1)), part))
        return "".join(out)


def _link(number: str) -> str:
    return f"[\\[{number}\\]]({CITATION_SCHEME}{number})"


def link_citations(markdown: str) -> str:
    return CitationLinker().feed(markdown)


def citation_number(href: str) -> int | None:
    """The source number of a citation link, or None for any other link."""
    if href.startswith(CITATION_SCHEME) and href[len(CITATION_SCHEME) :].isdigit():
        return int(href[len(CITATION_SCHEME) :])
    return None


def highlighted(text: str, spans: Sequence[tuple[int, int]], style: str = "") -> Text:
    """`text` with the character spans emphasised (matched query terms)."""
    result = Text(text, style=style)
    for start, end in spans:
        result.stylize(HIGHLIGHT, start, end)
    return result


def passage_snippet(text: str, query: str, width: int = 240) -> Text:
    """The part of a passage that best matches `query`, with the matching words emphasised."""
    from localrag.retrieval import snippet

    shown, spans = snippet(text, query, width=width)
    return highlighted(shown, spans)


def passage_text(text: str, query: str, style: str = "") -> Text:
    """A whole passage, line breaks kept, with the words matching `query` emphasised."""
    from localrag.retrieval import highlight_spans

    return highlighted(text, highlight_spans(text, query), style)
