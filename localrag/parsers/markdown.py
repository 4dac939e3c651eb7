"""Markdown by a line scanner: headings, fenced code, lists, tables, paragraphs."""

from __future__ import annotations

import re
from pathlib import Path

from localrag.documents import Block, ParsedDocument
from localrag.parsers.limits import check_blocks
from localrag.parsers.text import LIST_ITEM, Lines, decode_source

ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
THEMATIC = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
# Fences are accepted at any indent: inside list items they are indented, and a `#` line in
# them must still not become a heading.
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")
TABLE_DELIM = re.compile(r"^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$")
FRONT_TITLE = re.compile(r"""^title\s*[:=]\s*(.+?)\s*$""")

_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPH = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
_INLINE_HTML = re.compile(r"</?(?:a|span|code|em|strong|b|i|img|br|sup|sub|kbd)\b[^>]*>", re.I)


def clean_heading(raw: str) -> str:
    """Heading text without inline markup: links, emphasis, code ticks, inline HTML."""
    text = _LINK.sub(r"\1", raw)
    text = _INLINE_HTML.sub("", text)
    text = _STRONG.sub(r"\2", text)
    text = _EMPH.sub(r"\1", text)
    text = text.replace("`", "")
    return " ".join(text.split())


def _front_matter(lines: Lines) -> tuple[int, str | None]:
    """Index of the first line after YAML/TOML front matter, and its title if it has one."""
    if not lines or lines[0].rstrip() not in ("---", "+++"):
        return 0, None
    opener = lines[0].rstrip()
    closers = ("---", "...") if opener == "---" else ("+++",)
    for j in range(1, min(len(lines), 1000)):
        if lines[j].rstrip() in closers:
            title = None
            for k in range(1, j):
                m = FRONT_TITLE.match(lines[k])
                if m:
                    title = m.group(1).strip("'\"") or None
                    break
            return j + 1, title
    return 0, None


class _Scanner:
    """Walks the lines once, keeping the heading stack and the block being collected."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self.blocks: list[Block] = []
        self.stack: list[tuple[int, str]] = []
        self.headings: list[tuple[int, tuple[str, ...]]] = []
        self.first_h1: str | None = None
        self.pending: int | None = None
        self.pending_kind = "paragraph"
        self.last_kind = ""

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(text for _, text in self.stack)

    def flush(self, last: int) -> None:
        if self.pending is None:
            return
        kind = self.pending_kind
        block = self.lines.block(self.pending, last, kind, self.path, keep_indent=kind == "code")
        if block is not None:
            self.blocks.append(block)
            self.last_kind = kind
        self.pending = None

    def heading(self, level: int, raw: str, line: int) -> None:
        text = clean_heading(raw)
        if not text:
            return
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))
        self.headings.append((line, self.path))
        check_blocks(len(self.headings))
        self.last_kind = "heading"
        if level == 1 and self.first_h1 is None:
            self.first_h1 = text

    def start(self, i: int) -> None:
        lines = self.lines
        line = lines[i]
        self.pending = i
        if LIST_ITEM.match(line):
            self.pending_kind = "list"
        elif "|" in line and i + 1 < len(lines) and TABLE_DELIM.match(lines[i + 1]):
            self.pending_kind = "table"
        elif (line.startswith("    ") or line.startswith("\t")) and self.last_kind != "list":
            self.pending_kind = "code"
        else:
            self.pending_kind = "paragraph"

    def fence(self, i: int, marker: str) -> int:
        """Emit a fenced code block opening at line i; returns the line after it."""
        lines = self.lines
        closer = re.compile(rf"^[ \t]*{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not closer.match(lines[j]):
            j += 1
        last = min(j, len(lines) - 1)
        block = self.lines.block(i, last, "code", self.path, keep_indent=True)
        if block is not None:
            self.blocks.append(block)
            self.last_kind = "code"
        return last + 1

    def run(self, first: int) -> None:
        lines = self.lines
        i = first
        while i < len(lines):
            line = lines[i]
            fence = FENCE.match(line)
            if fence and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
                self.flush(i - 1)
                i = self.fence(i, fence.group(1))
                continue
            if line.lstrip().startswith("<!--"):
                # HTML comments hide their lines: a `#` inside one is not a heading.
                self.flush(i - 1)
                j = i
                while j < len(lines) and "-->" not in lines[j]:
                    j += 1
                i = j + 1
                continue
            atx = ATX.match(line)
            if atx:
                self.flush(i - 1)
                self.heading(len(atx.group(1)), atx.group(2) or "", i)
                i += 1
                continue
            if not line.strip():
                self.flush(i - 1)
                i += 1
                continue
            if SETEXT.match(line) and self.pending is not None and self.pending_kind == "paragraph":
                raw = " ".join(lines[k].strip() for k in range(self.pending, i))
                self.pending = None
                self.heading(1 if line.strip()[0] == "=" else 2, raw, i)
                i += 1
                continue
            if THEMATIC.match(line):
                self.flush(i - 1)
                i += 1
                continue
            if self.pending is None:
                self.start(i)
            elif (self.pending_kind == "paragraph" and LIST_ITEM.match(line)) or (
                self.pending_kind != "table"
                and line.lstrip().startswith("|")
                and i + 1 < len(lines)
                and TABLE_DELIM.match(lines[i + 1])
            ):
                self.flush(i - 1)
                self.start(i)
            i += 1
        self.flush(len(lines) - 1)


def parse_markdown(path: Path, data: bytes) -> ParsedDocument:
    """Markdown → blocks under their heading path; the title is front matter's or the first H1."""
    text = decode_source(data)
    lines = Lines(text)
    first, title = _front_matter(lines)
    scanner = _Scanner(lines)
    scanner.run(first)
    blocks = scanner.blocks
    if not blocks and scanner.headings:
        # A document of headings only: keep them searchable.
        for line, hpath in scanner.headings:
            block = lines.block(line, line, "heading", hpath)
            if block is not None:
                blocks.append(block)
    return ParsedDocument(
        text=text, blocks=blocks, format="markdown", title=title or scanner.first_h1
    )
