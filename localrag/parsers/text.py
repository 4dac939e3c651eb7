"""Plain text, and the line bookkeeping shared by every line-based format."""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from pathlib import Path

from localrag.documents import Block, ParsedDocument
from localrag.parsers.detect import decode_text, normalize_newlines
from localrag.parsers.limits import check_blocks

LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+•]|\d{1,9}[.)])\s+\S")


def decode_source(data: bytes, declared: str | None = None) -> str:
    """Decode a text file and normalize its line breaks (line numbers are unchanged)."""
    return normalize_newlines(decode_text(data, declared))


class Lines:
    """A normalized text split on \\n only, with each line's offset into the text.

    Only the offsets are stored (4 bytes a line) and lines are sliced when asked for: a list
    of a 48 MB file's lines took ~100 bytes a line.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        newlines = (m.end() for m in re.finditer("\n", text))
        self.offsets = array("i" if len(text) < 2**31 - 1 else "q", [0])
        self.offsets.extend(newlines)
        self.blocks_made = 0  # every line-based parser makes its blocks here: the cap's place

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> str:
        """Line i (0-based), without its newline; negative indexes count from the end."""
        offsets = self.offsets
        if i < 0:
            i += len(offsets)
        end = offsets[i + 1] - 1 if i + 1 < len(offsets) else len(self.text)
        return self.text[offsets[i] : end]

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self.offsets)):
            yield self[i]

    def is_blank(self, i: int) -> bool:
        return not self[i].strip()

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
            line = self[first]
            start += len(line) - len(line.lstrip())
        end = self.offsets[last] + len(self[last].rstrip())
        self.blocks_made += 1
        check_blocks(self.blocks_made)
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
) -> Iterator[tuple[int, int]]:
    """Runs of non-blank lines between first and last (inclusive, 0-based), lazily."""
    end = len(lines) - 1 if last is None else last
    start: int | None = None
    for i in range(first, end + 1):
        if lines.is_blank(i):
            if start is not None:
                yield start, i - 1
                start = None
        elif start is None:
            start = i
    if start is not None:
        yield start, end


def parse_text(path: Path, data: bytes) -> ParsedDocument:
    """Plain text: one block per paragraph (runs of non-blank lines)."""
    text = decode_source(data)
    lines = Lines(text)
    blocks: list[Block] = []
    for first, last in paragraph_ranges(lines):
        kind = "list" if LIST_ITEM.match(lines[first]) else "paragraph"
        block = lines.block(first, last, kind, ())
        if block is not None:
            blocks.append(block)
    return ParsedDocument(text=text, blocks=blocks, format="text")
