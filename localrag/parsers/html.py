"""HTML with the standard library's tokenizer: readable text, headings and source lines.

Each block's text keeps one "\\n" per source line it spans (whitespace inside a line is
collapsed), so a position inside a block maps back to an exact source line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from localrag.documents import BlockJoiner, ParsedDocument
from localrag.errors import ParseError, SkipFile
from localrag.parsers.detect import declared_html_charset
from localrag.parsers.limits import check_blocks
from localrag.parsers.text import decode_source

HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


VOID = _words("area base br col embed hr img input keygen link meta param source track wbr")
# Never content: scripts, styling, page chrome, form controls.
SKIP_TAGS = _words(
    "script style noscript template nav footer svg iframe canvas select button head object "
    "embed audio video map datalist dialog"
)
# Class names of navigation chrome: DocBook (navheader/navfooter), Sphinx (related,
# sphinxsidebar, headerlink "¶" anchors), MkDocs, Javadoc, common CMS themes.
SKIP_CLASSES = _words(
    "navheader navfooter navigation nav navbar breadcrumb breadcrumbs sidebar sphinxsidebar "
    "related headerlink toc skip-link skiplink topnav bottomnav subnav md-header md-footer "
    "md-sidebar site-header site-footer cookie-banner visually-hidden sr-only "
    "screen-reader-text"
)
BLOCK_TAGS = _words(
    "address article aside blockquote body caption center dd details dir div dl dt fieldset "
    "figcaption figure form h1 h2 h3 h4 h5 h6 hgroup hr html legend li main menu ol p pre "
    "section summary table tbody td tfoot th thead tr ul"
)
SKIP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search"})
LIST_CONTEXT = frozenset({"li", "dd", "dt"})
# Containers whose end also ends the headings inside them: HTML5 sectioning elements and
# DocBook's section divs ("sect1", "refsect2", "chapter", ...).
SECTION_TAGS = frozenset({"section", "article"})
SECTION_CLASS = re.compile(
    r"^(?:sect\d|refsect\d|refsynopsisdiv|simplesect|section|chapter|appendix|preface|part"
    r"|reference|article)$"
)
# Admonitions title themselves with a heading ("Note"); that is text, not a section.
ADMONITION_CLASSES = frozenset(
    {"note", "tip", "warning", "caution", "important", "admonition", "callout", "danger"}
)
# Start tags that implicitly close an open element, and the boundary that stops the search.
IMPLIED_CLOSE: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "li": (frozenset({"li"}), frozenset({"ul", "ol", "menu"})),
    "dt": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "dd": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "tr": (frozenset({"tr", "td", "th"}), frozenset({"table", "thead", "tbody", "tfoot"})),
    "td": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "th": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "thead": (frozenset({"tr", "td", "th", "thead", "tbody"}), frozenset({"table"})),
    "tbody": (frozenset({"tr", "td", "th", "thead", "tbody"}), frozenset({"table"})),
    "tfoot": (frozenset({"tr", "td", "th", "thead", "tbody"}), frozenset({"table"})),
    "option": (frozenset({"option"}), frozenset({"select"})),
}
_HSPACE = re.compile(r"[ \t\f\v\u00a0\u200b]+")
# A block whose visible text is at least this share link text, at most this many words per
# link, is navigation (a menu, an index of links), not content (boilerpipe's link density).
LINK_SHARE = 0.8
MAX_WORDS_PER_LINK = 4


def _collapse(text: str) -> str:
    return " ".join(text.split())


@dataclass
class _Text:
    """Text gathered for one block; newlines track source lines exactly."""

    pre: bool = False
    parts: list[str] = field(default_factory=list)
    start: int | None = None
    line: int = 0
    # For telling menus from prose: characters in all, characters inside links, and links.
    chars: int = 0
    linked_chars: int = 0
    links: int = 0

    def count(self, data: str, linked: bool) -> None:
        visible = len(data) - data.count(" ") - data.count("\n")
        self.chars += visible
        if linked:
            self.linked_chars += visible

    def is_link_list(self) -> bool:
        """Mostly short links and little else: a menu, a link index, a "see also" bar."""
        if not self.links or self.linked_chars < LINK_SHARE * self.chars:
            return False
        words = len("".join(self.parts).split())
        return words <= MAX_WORDS_PER_LINK * self.links

    def add(self, data: str, line: int) -> None:
        if self.start is None:
            stripped = data.lstrip(" \t\n\r\f\v\u00a0") if not self.pre else data.lstrip("\n")
            if not stripped.strip():
                return
            line += data[: len(data) - len(stripped)].count("\n")
            data = stripped
            self.start = self.line = line
        elif line > self.line:
            # Newlines hidden inside tags (attributes split over lines).
            self.parts.append("\n" * (line - self.line))
            self.line = line
        self.parts.append(data)
        self.line += data.count("\n")

    def space(self) -> None:
        if self.start is not None:
            self.parts.append(" ")

    def finish(self) -> tuple[str, int, int] | None:
        """(text, first line, last line), or None when nothing but whitespace was seen."""
        if self.start is None:
            return None
        lines = "".join(self.parts).split("\n")
        if self.pre:
            lines = [ln.rstrip() for ln in lines]
        else:
            lines = [_HSPACE.sub(" ", ln).strip() for ln in lines]
        while lines and not lines[-1]:
            lines.pop()
        if not lines:
            return None
        return "\n".join(lines), self.start, self.start + len(lines) - 1


@dataclass
class _Open:
    tag: str
    skip: bool = False
    mute: bool = False
    section: bool = False
    admonition: bool = False


class _Extractor(HTMLParser):
    """Turns the tag stream into (text, kind, heading path, first line, last line) tuples."""

    def __init__(self, has_h1: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.has_h1 = has_h1
        self.stack: list[_Open] = []
        self.skip = 0
        self.mute = 0
        self.pre = 0
        self.title_parts: list[str] | None = None
        self.title: str | None = None
        self.root: str | None = None
        self.headings: list[tuple[int, str, int]] = []  # (level, text, section depth)
        self.sections = 0
        self.admonitions = 0
        self.heading: _Text | None = None
        self.buf = _Text()
        self.row: list[tuple[str, int, int] | None] | None = None
        self.cell: _Text | None = None
        self.cell_tables = 0
        self.out: list[tuple[str, str, tuple[str, ...], int, int]] = []

    # -- state helpers -------------------------------------------------------------------

    @property
    def path(self) -> tuple[str, ...]:
        texts = tuple(text for _, text, _ in self.headings)
        return (self.root, *texts) if self.root else texts

    def _open_tags(self) -> set[str]:
        return {o.tag for o in self.stack}

    def _flush(self, closing: str | None = None) -> None:
        result = self.buf.finish()
        pre = self.pre > 0
        if result is not None and not self.buf.is_link_list():
            text, first, last = result
            if self.buf.pre:
                kind = "code"
            elif closing in LIST_CONTEXT or self._open_tags() & LIST_CONTEXT:
                kind = "list"
            else:
                kind = "paragraph"
            self._emit((text, kind, self.path, first, last))
        self.buf = _Text(pre=pre)

    def _emit(self, item: tuple[str, str, tuple[str, ...], int, int]) -> None:
        self.out.append(item)
        check_blocks(len(self.out))

    def _end_row(self) -> None:
        if self.cell is not None:
            self._end_cell()
        row, self.row = self.row, None
        if not row:
            return
        while row and row[-1] is None:
            row.pop()
        cells = [c for c in row if c is not None]
        if not cells:
            return
        text_parts: list[str] = []
        first_line = cells[0][1]
        line = first_line
        for i, cell in enumerate(row):
            text, start, end = cell if cell is not None else ("", line, line)
            if i:
                text_parts.append(" |" + "\n" * (start - line) if start > line else " | ")
            text_parts.append(text)
            line = max(line, end)
        self._emit(("".join(text_parts), "table", self.path, first_line, line))

    def _end_cell(self) -> None:
        cell, self.cell = self.cell, None
        self.cell_tables = 0
        if self.row is None or cell is None:
            return
        result = cell.finish()
        self.row.append(result)

    def _set_heading(self, level: int, text: str) -> None:
        if not text:
            return
        if self.root and not self.headings and text.casefold() == self.root.casefold():
            return  # The page's own title, already the root of the path.
        while self.headings and self.headings[-1][0] >= level:
            self.headings.pop()
        self.headings.append((level, text, self.sections))

    # -- tokenizer callbacks -------------------------------------------------------------

    def _skips(self, tag: str, attrs: list[tuple[str, str | None]]) -> tuple[bool, bool]:
        """(skip entirely, mute text but keep headings) for an element."""
        a = {k: (v or "") for k, v in attrs}
        if tag == "header":
            in_content = bool(self._open_tags() & {"article", "main", "section"})
            return (not in_content, in_content)
        if tag in SKIP_TAGS or "hidden" in a or a.get("aria-hidden", "").lower() == "true":
            return True, False
        if a.get("role", "").lower() in SKIP_ROLES:
            return True, False
        if SKIP_CLASSES.intersection(a.get("class", "").lower().split()):
            return True, False
        if tag == "table" and "navigation" in a.get("summary", "").lower():
            return True, False
        return False, False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and self.title is None and not self._open_tags() & {"svg", "math"}:
            self.title_parts = []
            return
        if tag in VOID:
            if not (self.skip or self.mute):
                self._void(tag)
            return
        self._implied_close(tag)
        skip, mute = (False, False) if self.skip else self._skips(tag, attrs)
        classes = set((dict(attrs).get("class") or "").lower().split())
        section = tag in SECTION_TAGS or (
            tag == "div" and any(SECTION_CLASS.match(c) for c in classes)
        )
        admonition = bool(classes & ADMONITION_CLASSES)
        self.stack.append(_Open(tag, skip, mute, section, admonition))
        self.skip += skip
        self.mute += mute
        self.sections += section
        self.admonitions += admonition
        if self.skip:
            return
        if tag in HEADINGS and self.cell is None and not self.admonitions:
            self._flush()
            self.heading = _Text()
            return
        if self.mute:
            return
        if tag == "a" and self.cell is None:
            self.buf.links += 1
        if self.cell is not None:
            if tag == "table":
                self.cell_tables += 1
            if tag in BLOCK_TAGS:
                self.cell.space()
            return
        if tag == "tr" or (tag in ("td", "th") and self.row is None):
            self._flush()
            self._end_row()
            self.row = []
        if tag in ("td", "th"):
            self.cell = _Text()
            return
        if tag in BLOCK_TAGS:
            self._flush()
            if tag == "pre":
                self.pre += 1
                self.buf = _Text(pre=True)

    def _void(self, tag: str) -> None:
        target = self.heading or self.cell or self.buf
        if tag in ("br", "wbr", "img", "input"):
            if tag == "br":
                target.space()
        elif tag == "hr" and target is self.buf:
            self._flush()

    def _implied_close(self, tag: str) -> None:
        if self.cell is not None and self.cell_tables:
            return  # Inside a nested table in a cell: no implied closes of the outer row.
        if tag in BLOCK_TAGS and self.stack and self.stack[-1].tag == "p":
            self._close_top()
        rule = IMPLIED_CLOSE.get(tag)
        if rule is None:
            return
        closes, boundary = rule
        for i in range(len(self.stack) - 1, -1, -1):
            t = self.stack[i].tag
            if t in boundary:
                return
            if t in closes:
                while len(self.stack) > i:
                    self._close_top()
                return

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID and tag != "title":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            if self.title_parts is not None:
                self.title = _collapse("".join(self.title_parts)) or None
                if self.title and not self.has_h1:
                    self.root = self.title
                self.title_parts = None
            return
        if tag == "br":
            self._void("br")
            return
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i].tag == tag:
                while len(self.stack) > i:
                    self._close_top()
                return

    def _close_top(self) -> None:
        el = self.stack.pop()
        tag = el.tag
        was_skipping = self.skip > 0
        self.skip -= el.skip
        self.mute -= el.mute
        self.admonitions -= el.admonition
        if el.section:
            self.sections -= 1
            if not was_skipping:
                self._flush(tag)
            while self.headings and self.headings[-1][2] > self.sections:
                self.headings.pop()
        if was_skipping:
            return
        if tag in HEADINGS and self.heading is not None and self.cell is None:
            result = self.heading.finish()
            self.heading = None
            if result is not None:
                self._set_heading(HEADINGS[tag], _collapse(result[0]))
            return
        if el.mute or self.mute:
            return
        if self.cell is not None:
            if tag in ("td", "th") and not self.cell_tables:
                self._end_cell()
            elif tag == "table" and self.cell_tables:
                self.cell_tables -= 1
            elif tag in ("tr", "table") and not self.cell_tables:
                self._end_row()
            elif tag in BLOCK_TAGS:
                self.cell.space()
            return
        if tag in ("tr", "table", "thead", "tbody", "tfoot"):
            self._end_row()
        if tag in BLOCK_TAGS:
            self._flush(tag)
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
                self.buf = _Text(pre=self.pre > 0)

    def handle_data(self, data: str) -> None:
        if self.title_parts is not None:
            self.title_parts.append(data)
            return
        if self.skip:
            return
        line = self.getpos()[0]
        if self.heading is not None:
            self.heading.add(data, line)
        elif self.mute:
            return
        elif self.cell is not None:
            self.cell.add(data, line)
        else:
            self.buf.add(data, line)
            self.buf.count(data, any(o.tag == "a" for o in self.stack))

    def finish(self) -> None:
        self.close()
        while self.stack:
            self._close_top()
        self._end_row()
        self._flush()


def parse_html(path: Path, data: bytes) -> ParsedDocument:
    """HTML → blocks of readable text with source lines; navigation and scripts dropped."""
    text = decode_source(data, declared_html_charset(data))
    extractor = _Extractor(has_h1=re.search(r"<h1[\s>]", text, re.I) is not None)
    try:
        extractor.feed(text)
        extractor.finish()
    except SkipFile:
        raise
    except Exception as exc:  # html.parser is lenient; anything it raises means garbage.
        raise ParseError(f"malformed HTML ({exc})") from exc
    joined = BlockJoiner()
    for chunk_text, kind, hpath, first, last in extractor.out:
        joined.add(chunk_text, kind, hpath, line_start=first, line_end=last)
    title = extractor.title
    if title is None:
        title = next((b.heading_path[0] for b in joined.blocks if b.heading_path), None)
    return ParsedDocument(text=joined.text, blocks=joined.blocks, format="html", title=title)
