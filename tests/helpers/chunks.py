"""Checks every list of chunks must pass, and documents made by hand to chunk."""

from __future__ import annotations

from localrag.chunking import MAX_CHARS_PER_TOKEN, TokenCounter
from localrag.documents import Block, Chunk, ParsedDocument
from tests.helpers.tokenizer import MiniLMCounter

COUNTER = MiniLMCounter()


def check(
    doc: ParsedDocument, chunks: list[Chunk], max_tokens: int, counter: TokenCounter = COUNTER
) -> None:
    """The guarantees every chunk list must keep."""
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text.strip(), "no empty chunks"
        n = counter.count(c.embed_text)
        assert n <= max_tokens, (n, c.embed_text[:200])
        span = doc.text[c.char_start : c.char_end]
        pos = 0
        for part in c.text.split("\n\n"):
            found = span.find(part, pos)
            assert found >= 0, f"{part[:80]!r} not in span"
            pos = found + len(part)
        assert len(c.text) <= max_tokens * MAX_CHARS_PER_TOKEN + 2 * len(c.heading_path)
    assert [c.char_start for c in chunks] == sorted(c.char_start for c in chunks)


def check_lines(source: str, chunks: list[Chunk]) -> None:
    """A chunk's first and last lines are exactly where its text starts and ends."""
    lines = source.split("\n")
    for c in chunks:
        first = c.text.split("\n")[0].strip()
        last = c.text.split("\n")[-1].strip()
        assert c.line_start is not None and c.line_end is not None
        assert first in lines[c.line_start - 1], (c.line_start, first)
        assert last in lines[c.line_end - 1], (c.line_end, last)


def doc_of(
    blocks: list[tuple[str, tuple[str, ...], int | None]], fmt: str = "text"
) -> ParsedDocument:
    """A ParsedDocument from (text, heading path, page) triples."""
    parts: list[str] = []
    out: list[Block] = []
    pos = 0
    for text, path, page in blocks:
        if parts:
            parts.append("\n\n")
            pos += 2
        parts.append(text)
        out.append(Block(text, "paragraph", path, pos, pos + len(text), page=page))
        pos += len(text)
    return ParsedDocument(text="".join(parts), blocks=out, format=fmt)
