"""Plain text, and the line bookkeeping shared by every line-based format."""

from __future__ import annotations

import re
from pathlib import Path

from localrag.documents import Block, ParsedDocument
from localrag.parsers.detect import decode_text, normalize_newlines

LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+•]|\d{1,9}[.)])\s+\S")


def decode_source(data: bytes, declared: str | None = None) -> str:
    """Decode a text file and normalize its line breaks (line numbers are unchanged)."""
    return normalize_newlines(decode_text(data, declared))


class Lines:
    """A normalized text split on \\n only, with each line's offset into the text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.offsets: list[int] = []
        pos = 0
        for line in self.lines:
            self.offsets.append(pos)
            pos += len(line) + 1

    def __len__(self) -> int:
        return len(self.lines)

    def is_blank(self, i: int) -> bool:
        return not self.lines[i].strip()

    def block(
        self,
        first: int,
        last: int,
        kind: str,
        heading_path: tuple[str, ...],
        keep_indent: bool = False,
    ) -> Block | None:
        """A block over lines first..last (0-based, inclusive), trimmed; None if blank."""
        while first <= last and self.is_blank(first):
            first += 1
        while last >= first and self.is_blank(last):
            last -= 1
        if first > last:
            return None
        start = self.offsets[first]
        if not keep_indent:
            line = self.lines[first]
            start += len(line) - len(line.lstrip())
        end = self.offsets[last] + len(self.lines[last].rstrip())
        return Block(
            text=self.text[start:end],
            kind=kind,
            heading_path=heading_path,
            char_start=start,
            char_end=end,
            line_start=first + 1,
            line_end=last + 1,
        )


def paragraph_ranges(
    lines: Lines, first: int = 0, last: int | None = None
) -> list[tuple[int, int]]:
    """Runs of non-blank lines between first and last (inclusive, 0-based)."""
    end = len(lines) - 1 if last is None else last
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i in range(first, end + 1):
        if lines.is_blank(i):
            if start is not None:
                runs.append((start, i - 1))
                start = None
        elif start is None:
            start = i
    if start is not None:
        runs.append((start, end))
    return runs


def parse_text(path: Path, data: bytes) -> ParsedDocument:
    """Plain text: one block per paragraph (runs of non-blank lines)."""
    text = decode_source(data)
    lines = Lines(text)
    blocks: list[Block] = []
    for first, last in paragraph_ranges(lines):
        kind = "list" if LIST_ITEM.match(lines.lines[first]) else "paragraph"
        block = lines.block(first, last, kind, ())
        if block is not None:
            blocks.append(block)
    return ParsedDocument(text=text, blocks=blocks, format="text")
