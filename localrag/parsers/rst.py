"""reStructuredText by a line scanner: section titles, literal blocks, code directives."""

from __future__ import annotations

import re
from pathlib import Path

from localrag.documents import Block, ParsedDocument
from localrag.parsers.text import LIST_ITEM, Lines, decode_source

# Any run of one repeated non-alphanumeric printable ASCII character.
ADORNMENT = re.compile(r"""^([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])\1+[ \t]*$""")
CODE_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+(?:code-block|code|sourcecode|highlight)::")
DIRECTIVE = re.compile(r"^(\s*)\.\.\s")
RST_LIST = re.compile(r"^\s*(?:[-*+•]|\d+[.)]|#\.|\(?[a-zA-Z0-9]+\))\s+\S")
_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")
_REF = re.compile(r"`([^`<]*?)(?:\s*<[^>]*>)?`_{1,2}")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def clean_title(raw: str) -> str:
    """Title text without inline markup (roles, references, emphasis, literals)."""
    text = _ROLE.sub(r"\1", raw)
    text = _REF.sub(r"\1", text)
    text = text.replace("``", "").replace("**", "")
    return " ".join(text.split())


class _Scanner:
    """One pass over the lines, keeping the adornment styles seen and the title stack."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self.blocks: list[Block] = []
        self.styles: list[tuple[str, bool]] = []
        self.stack: list[str] = []
        self.title: str | None = None

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.stack)

    def _is_adornment(self, i: int) -> bool:
        return 0 <= i < len(self.lines) and ADORNMENT.match(self.lines[i]) is not None

    def _blank_or_edge(self, i: int) -> bool:
        return i < 0 or i >= len(self.lines) or self.lines.is_blank(i)

    def section_at(self, i: int) -> tuple[int, str, tuple[str, bool]] | None:
        """If a section title starts at line i: (lines it spans, title text, style)."""
        lines = self.lines
        line = lines[i]
        if self._is_adornment(i) and i + 2 < len(lines):
            # Overline, title, underline of the same character.
            title, under = lines[i + 1], lines[i + 2]
            if (
                title.strip()
                and not self._is_adornment(i + 1)
                and self._is_adornment(i + 2)
                and under.strip()[0] == line.strip()[0]
                and self._blank_or_edge(i - 1)
            ):
                return 3, title.strip(), (line.strip()[0], True)
        if (
            line.strip()
            and not line[0].isspace()
            and not self._is_adornment(i)
            and self._blank_or_edge(i - 1)
            and self._is_adornment(i + 1)
        ):
            under = lines[i + 1].strip()
            # Docutils accepts a short underline with a warning; still demand 3 characters
            # unless the underline covers the whole title.
            if len(under) >= min(len(line.rstrip()), 3):
                return 2, line.strip(), (under[0], False)
        return None

    def enter_section(self, title: str, style: tuple[str, bool]) -> None:
        if style in self.styles:
            level = self.styles.index(style)
        else:
            self.styles.append(style)
            level = len(self.styles) - 1
        text = clean_title(title)
        self.stack = [*self.stack[:level], text]
        if self.title is None:
            self.title = text

    def indented_end(self, i: int, base: int) -> int:
        """Last line of the block indented deeper than `base` that follows line i."""
        lines = self.lines
        last = i
        j = i + 1
        while j < len(lines):
            if lines[j].strip():
                if _indent(lines[j]) <= base:
                    break
                last = j
            j += 1
        return last

    def emit(self, first: int, last: int, kind: str) -> None:
        block = self.lines.block(first, last, kind, self.path, keep_indent=kind == "code")
        if block is not None and block.text.strip() != "::":
            self.blocks.append(block)

    def run(self) -> None:
        lines = self.lines
        i = 0
        n = len(lines)
        while i < n:
            if self.lines.is_blank(i):
                i += 1
                continue
            section = self.section_at(i)
            if section is not None:
                span, title, style = section
                self.enter_section(title, style)
                i += span
                continue
            line = lines[i]
            if CODE_DIRECTIVE.match(line):
                last = self.indented_end(i, _indent(line))
                self.emit(i, last, "code")
                i = last + 1
                continue
            if DIRECTIVE.match(line):
                last = self.indented_end(i, _indent(line))
                self.emit(i, last, "paragraph")
                i = last + 1
                continue
            # A paragraph: non-blank lines up to a blank line or a title underline pair.
            j = i
            while j + 1 < n and not self.lines.is_blank(j + 1) and self.section_at(j + 1) is None:
                j += 1
            kind = "list" if RST_LIST.match(line) or LIST_ITEM.match(line) else "paragraph"
            if line.lstrip().startswith(("+-", "+=", "|")):
                kind = "table"
            self.emit(i, j, kind)
            if lines[j].rstrip().endswith("::"):
                # Literal block: everything indented deeper than the paragraph that follows.
                k = j + 1
                while k < n and self.lines.is_blank(k):
                    k += 1
                if k < n and _indent(lines[k]) > _indent(line):
                    last = self.indented_end(k - 1, _indent(line))
                    self.emit(k, last, "code")
                    j = last
            i = j + 1


def parse_rst(path: Path, data: bytes) -> ParsedDocument:
    """reStructuredText → blocks under their section path; the first title is the title."""
    text = decode_source(data)
    lines = Lines(text)
    scanner = _Scanner(lines)
    scanner.run()
    return ParsedDocument(text=text, blocks=scanner.blocks, format="rst", title=scanner.title)
