"""What parsers produce and what the chunker makes of it.

Positions are kept all the way through so every search result can say exactly where it came
from: 1-based inclusive line numbers for text formats, 1-based page numbers for PDF, and a
character span into the document's extracted text.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Block:
    """One structural unit of a document: a paragraph, a code block, a table, a list item run.

    `kind` is one of "paragraph", "code", "table", "list", "heading".
    Headings are not emitted as blocks of their own: they become the `heading_path` of the
    blocks beneath them (kind "heading" exists for documents made only of headings).
    """

    text: str
    kind: str
    heading_path: tuple[str, ...]
    char_start: int
    char_end: int
    line_start: int | None = None
    line_end: int | None = None
    page: int | None = None


@dataclass
class ParsedDocument:
    """A file turned into text. `blocks` char spans index into `text`."""

    text: str
    blocks: list[Block]
    format: str
    title: str | None = None
    page_count: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A passage that is embedded and searched as one unit."""

    ordinal: int
    text: str
    heading_path: tuple[str, ...]
    char_start: int
    char_end: int
    token_count: int
    line_start: int | None = None
    line_end: int | None = None
    page_start: int | None = None
    page_end: int | None = None

    @property
    def heading(self) -> str:
        return " > ".join(self.heading_path)

    @property
    def embed_text(self) -> str:
        """What the embedder sees: the heading path gives a passage its context."""
        if self.heading_path:
            return f"{self.heading}\n\n{self.text}"
        return self.text


class BlockJoiner:
    """Builds a document's text from separate blocks, joined by blank lines, keeping spans.

    For formats whose text is assembled rather than read verbatim (HTML, PDF, DOCX).
    """

    SEPARATOR = "\n\n"

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._pieces: list[str] = []
        self._pos = 0

    def add(
        self,
        text: str,
        kind: str,
        heading_path: tuple[str, ...],
        *,
        line_start: int | None = None,
        line_end: int | None = None,
        page: int | None = None,
    ) -> None:
        if self._pieces:
            self._pieces.append(self.SEPARATOR)
            self._pos += len(self.SEPARATOR)
        self._pieces.append(text)
        end = self._pos + len(text)
        self.blocks.append(
            Block(text, kind, heading_path, self._pos, end, line_start, line_end, page)
        )
        self._pos = end

    @property
    def text(self) -> str:
        return "".join(self._pieces)


def passage_with_heading(heading: str, text: str) -> str:
    """A stored passage as the models read it (re-embedding, the reranker): its heading path,
    a blank line, its text; what `Chunk.embed_text` gave when it was indexed."""
    return f"{heading}\n\n{text}" if heading else text
