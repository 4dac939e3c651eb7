"""Running headers and footers: the lines a paginated document repeats at the top or bottom
of its pages ("Confidential – Acme Corp", "Master Services Agreement – page 3 of 40").

They say nothing about the page they are on, yet would sit inside every passage that crosses a
page break, split sentences in two, and match every query that uses their words. A line counts
as running when it is among the first or last few lines of enough pages, the same text each
time or the same but for numbers that go up with the page ("page 3", "page 4"). Only its
edge copies after the first are dropped: the first stays, so that nothing a page says is lost
from the index even when a line that looked like furniture was content.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import combinations

# How many non-blank lines at each end of a page can be a header or footer.
EDGE_LINES = 2
# A line is running when it is on the edge of at least this share of the pages with text
# (0.4 catches headers that alternate between even and odd pages)...
MIN_PAGE_SHARE = 0.4
# ... and of at least this many pages: two pages that start alike are a coincidence.
MIN_PAGES = 3
# A line with more numbers than this is a table row or a date line, not a page footer.
MAX_NUMBERS = 3

_NUMBER = re.compile(r"\d+")


def _normal(line: str) -> str:
    return " ".join(line.split()).casefold()


def line_keys(line: str, page: int) -> Iterator[str]:
    """What stays the same on every page for this line on page `page` (0-based): its text,
    and its text with one or more of its numbers counted from the page number instead."""
    text = _normal(line)
    yield text
    numbers = list(_NUMBER.finditer(text))
    if not numbers or len(numbers) > MAX_NUMBERS:
        return
    for size in range(1, len(numbers) + 1):
        for chosen in combinations(numbers, size):
            parts, last = [], 0
            for match in chosen:
                parts += [text[last : match.start()], f"<page{int(match.group()) - page:+d}>"]
                last = match.end()
            yield "".join([*parts, text[last:]])


def _edges(page: str) -> list[str]:
    """The lines that may be a header or footer; none on a page too short to have a body
    between them (there, every line is at an edge, and a repeated one is content)."""
    filled = [line for line in page.split("\n") if line.strip()]
    if len(filled) <= 2 * EDGE_LINES:
        return []
    return filled[:EDGE_LINES] + filled[-EDGE_LINES:]


def running_lines(pages: Sequence[str | None]) -> frozenset[str]:
    """Keys (see `line_keys`) of the lines repeated on the edges of many of these pages."""
    with_text = [(i, page) for i, page in enumerate(pages) if page and page.strip()]
    needed = max(MIN_PAGES, MIN_PAGE_SHARE * len(with_text))
    if len(with_text) < needed:
        return frozenset()
    counts: Counter[str] = Counter()
    for index, page in with_text:
        counts.update({key for line in _edges(page) for key in line_keys(line, index)})
    return frozenset(key for key, n in counts.items() if n >= needed and key)


class RunningLineFilter:
    """Drops the running lines from the top and bottom of pages given in order, keeping the
    first copy of each (the body of a page is never touched)."""

    def __init__(self, running: frozenset[str]) -> None:
        self.running = running
        self.seen: set[str] = set()

    def page(self, text: str, index: int) -> str:
        if not self.running or not _edges(text):
            return text
        lines = text.split("\n")
        start, end = 0, len(lines)
        for _ in range(EDGE_LINES):  # from the top, while running copies come
            while start < end and not lines[start].strip():
                start += 1
            if start == end or not self._repeat(lines[start], index):
                break
            start += 1
        for _ in range(EDGE_LINES):  # and from the bottom
            while end > start and not lines[end - 1].strip():
                end -= 1
            if end == start or not self._repeat(lines[end - 1], index):
                break
            end -= 1
        kept = "\n".join(lines[start:end]).strip("\n")
        for line in _edges(kept) or kept.split("\n"):  # copies still on an edge are kept ones
            self.seen.update(key for key in line_keys(line, index) if key in self.running)
        return kept

    def _repeat(self, line: str, index: int) -> bool:
        """Whether the line is running and a copy of it was kept already."""
        found = [key for key in line_keys(line, index) if key in self.running]
        if not found:
            return False
        repeat = any(key in self.seen for key in found)
        self.seen.update(found)
        return repeat
