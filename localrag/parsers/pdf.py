"""PDF with pypdf: paragraphs per page, headings from the outline (bookmarks)."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localrag.documents import BlockJoiner, ParsedDocument
from localrag.errors import ParseError, SkipFile
from localrag.parsers.limits import DEFAULT_MAX_UNPACKED_BYTES, check_blocks
from localrag.parsers.running_lines import RunningLineFilter, running_lines
from localrag.sizes import megabytes

# pypdf logs every structural quirk it recovers from ("EOF marker not found", "Ignoring wrong
# pointing object"); failures still raise, and the warnings would flood indexing output.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# pypdf caches every object it resolves; dropping the cache every few pages keeps a huge
# PDF's memory bounded, while not re-parsing shared fonts on every single page.
CACHE_FLUSH_PAGES = 32
# The cache also keeps each page's decoded content: it is dropped sooner when that adds up.
CACHE_FLUSH_BYTES = 32 * 1024 * 1024
# One page's content may unpack to 1/4 of max_unpacked_bytes ("a quarter" in the message):
# extracting a page holds ~13 bytes per content byte (one page of 60 MB of text: 811 MB).
PAGE_CONTENT_SHARE = 4

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")
# Typeset ligatures (ﬁ, ﬂ, ﬀ, ﬃ, ﬄ, ﬅ, ﬆ) as their letters: "ﬁle" must match "file" in the
# keyword index and mean "file" to the embedder. TeX-made PDFs are full of them.
_LIGATURES = str.maketrans(
    {
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
    }
)
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANKS = re.compile(r"\n{3,}")
# A word broken across lines ("man-\nagement"): joined when the next line goes on in lowercase.
_HYPHEN_BREAK = re.compile(r"(?<=[a-z])-\n(?=[a-z])")
_PAGE_NUMBER = re.compile(r"^\s*(?:page\s+)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?\s*$", re.I)
# Table-of-contents dot leaders (". . . . . 12") cost dozens of tokens and say nothing.
_LEADER = re.compile(r"(?:\s?\.){4,}\s?")
_BULLET = re.compile(r"^(?:[•◦▪‣∙·\-*]|\d{1,3}[.)])\s")


@dataclass
class _Section:
    page: int  # 0-based
    level: int
    title: str


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _limits(max_unpacked_bytes: int) -> dict[str, int]:
    """pypdf's own decompression limits (75 MB per stream by default), set to ours."""
    names = (
        "zlib_maximum_output_length",
        "lzw_maximum_output_length",
        "run_length_maximum_output_length",
        "brotli_maximum_output_length",
        "jbig2_maximum_output_length",
        "array_based_stream_maximum_output_length",
        "image_maximum_buffer_size",
    )
    return dict.fromkeys(names, max_unpacked_bytes)


def _limit_reason(exc: BaseException, limit: int) -> str:
    """pypdf says "Limit reached while decompressing."; say which limit, and that it is ours."""
    return (
        f"PDF stream unpacks past the {megabytes(limit)} limit for unpacked content "
        f"({_reason(exc)})"
    )


def _open(data: bytes, limit: int) -> Any:
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError

    try:
        reader = PdfReader(io.BytesIO(data))
    except LimitReachedError as exc:
        raise SkipFile(_limit_reason(exc, limit)) from exc
    except Exception as exc:
        raise ParseError(f"corrupt PDF ({_reason(exc)})") from exc
    if reader.is_encrypted:
        from pypdf.errors import DependencyError

        try:
            result = reader.decrypt("")
        except DependencyError as exc:
            # AES needs the optional `cryptography` package; RC4 decrypts without it.
            raise ParseError("encrypted PDF (needs the 'cryptography' package)") from exc
        except Exception as exc:
            raise ParseError(f"encrypted PDF (cannot decrypt: {_reason(exc)})") from exc
        if not result:
            raise ParseError("encrypted PDF (password protected)")
    return reader


def _outline(reader: Any) -> list[_Section]:
    """Bookmarks as (page, level, title), in page order; [] when there are none."""
    found: list[_Section] = []

    def walk(items: list[Any], level: int) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item, level + 1)
                continue
            try:
                page = reader.get_destination_page_number(item)
                title = " ".join(str(item.title).split())
            except Exception:
                continue
            if page is not None and page >= 0 and title:
                found.append(_Section(page, level, title))

    try:
        walk(reader.outline, 0)
    except Exception:
        return []
    found.sort(key=lambda s: s.page)  # stable: document order within a page
    return found


def _content_bytes(page: Any) -> int:
    """Decoded size of a page's content streams; pypdf keeps the data for extract_text."""
    from pypdf.generic import ArrayObject, StreamObject

    contents = page.get("/Contents")
    contents = contents.get_object() if contents is not None else None
    streams = list(contents) if isinstance(contents, ArrayObject) else [contents]
    total = 0
    for item in streams:
        stream = item.get_object() if item is not None else None
        if isinstance(stream, StreamObject):
            total += len(stream.get_data())
    return total


def _page_text(page: Any) -> str:
    """A page's text with paragraph breaks (blank lines) where the layout has gaps."""
    try:
        raw = page.extract_text(extraction_mode="layout")
    except Exception:
        raw = page.extract_text()
    text = _LEADER.sub(" ... ", _CONTROL.sub("", raw or "")).translate(_LIGATURES)
    lines = [_SPACES.sub(" ", ln).strip() for ln in text.split("\n")]
    # Drop a bare page number at the top or bottom of the page.
    while lines and (not lines[0] or _PAGE_NUMBER.match(lines[0])):
        lines.pop(0)
    while lines and (not lines[-1] or _PAGE_NUMBER.match(lines[-1])):
        lines.pop()
    text = _HYPHEN_BREAK.sub("", "\n".join(lines))
    return _BLANKS.sub("\n\n", text)


class _PageTooBig(Exception):
    """A page whose content passes the per-page limit; the message says by how much."""


class _Pages:
    """Page texts one at a time, each page's content checked first, pypdf's cache bounded."""

    def __init__(self, reader: Any, limit: int) -> None:
        self.reader = reader
        self.limit = limit
        self.page_limit = limit // PAGE_CONTENT_SHARE
        self.cached = 0  # decoded content bytes pypdf holds since the last flush
        self.read = 0

    def text(self, index: int) -> str:
        try:
            page = self.reader.pages[index]
            size = _content_bytes(page)
            self.cached += size
            if size > self.page_limit:
                raise _PageTooBig(
                    f"PDF page {index + 1} unpacks to {megabytes(size)} of content, over the "
                    f"{megabytes(self.page_limit)} limit for one page (a quarter of the "
                    f"{megabytes(self.limit)} limit for unpacked content)"
                )
            return _page_text(page)
        finally:
            self.read += 1
            self._flush()

    def _flush(self) -> None:
        if self.read % CACHE_FLUSH_PAGES and self.cached <= CACHE_FLUSH_BYTES:
            return
        if hasattr(self.reader, "resolved_objects"):
            self.reader.resolved_objects.clear()
        self.cached = 0


def _failure(exc: Exception, limit: int) -> ParseError:
    """Why a PDF gave no text at all: a limit of ours (SkipFile) or damage."""
    from pypdf.errors import LimitReachedError

    if isinstance(exc, _PageTooBig):
        return SkipFile(str(exc))
    if isinstance(exc, LimitReachedError):
        return SkipFile(_limit_reason(exc, limit))
    return ParseError(f"corrupt PDF ({_reason(exc)})")


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def parse_pdf(
    path: Path, data: bytes, *, max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
) -> ParsedDocument:
    """PDF → paragraph blocks with their page; streams page by page.

    No stream may unpack past `max_unpacked_bytes`, no page's content past a quarter of it,
    and the text of all pages together not past it either (SkipFile says which).
    """
    from pypdf import apply_configuration

    with apply_configuration(None, **_limits(max_unpacked_bytes)):
        return _parse(data, max_unpacked_bytes)


def _parse(data: bytes, limit: int) -> ParsedDocument:
    reader = _open(data, limit)
    try:
        page_count = len(reader.pages)
    except Exception as exc:
        raise _failure(exc, limit) from exc
    if page_count == 0:
        raise ParseError("corrupt PDF (no pages)")
    title: str | None = None
    try:
        meta = reader.metadata
        if meta is not None and meta.title:
            title = " ".join(str(meta.title).split()) or None
    except Exception:
        title = None
    sections = _outline(reader)
    next_section = 0
    stack: list[_Section] = []

    def enter(section: _Section) -> None:
        while stack and stack[-1].level >= section.level:
            stack.pop()
        stack.append(section)

    joined = BlockJoiner()
    failed: list[str] = []
    last_error: Exception | None = None
    pages = _Pages(reader, limit)
    chars = 0
    texts: list[str | None] = []
    for index in range(page_count):
        try:
            text = pages.text(index)
        except Exception as exc:  # One broken page does not lose the rest of the file.
            failed.append(str(index + 1))
            last_error = exc
            texts.append(None)
            continue
        chars += len(text)
        if chars > limit:
            raise SkipFile(
                f"PDF unpacks to more than {limit:,} characters of text by page {index + 1} "
                f"of {page_count}, over the {megabytes(limit)} limit for unpacked content"
            )
        texts.append(text)
    # All pages' text is held anyway (the document's text is built whole), so running
    # headers and footers can be found over the whole document before any is kept.
    running = RunningLineFilter(running_lines(texts))
    for index, page_text in enumerate(texts):
        if page_text is None:
            continue
        text = running.page(page_text, index)
        # Sections of this page that start at one of its paragraphs switch there, the rest
        # apply from the top of the page.
        here: list[_Section] = []
        while next_section < len(sections) and sections[next_section].page <= index:
            here.append(sections[next_section])
            next_section += 1
        paragraphs = [p.strip() for p in text.split("\n\n")]
        paragraphs = [p for p in paragraphs if p]
        norms = [_norm(p) for p in paragraphs]
        pending: list[_Section] = []
        for section in here:
            wanted = _norm(section.title)
            if section.page == index and any(n.startswith(wanted) for n in norms):
                pending.append(section)
            else:
                enter(section)
        for para, key in zip(paragraphs, norms, strict=True):
            while pending and key.startswith(_norm(pending[0].title)):
                enter(pending.pop(0))
            joined.add(
                para,
                "list" if _BULLET.match(para) else "paragraph",
                tuple(s.title for s in stack),
                page=index + 1,
            )
            check_blocks(len(joined.blocks))
        for section in pending:
            enter(section)
    if not joined.blocks:
        if failed and last_error is not None:
            raise _failure(last_error, limit)
        raise ParseError("no extractable text (scanned PDF?)")
    metadata = {"failed_pages": ",".join(failed)} if failed else {}
    return ParsedDocument(
        text=joined.text,
        blocks=joined.blocks,
        format="pdf",
        title=title or (sections[0].title if sections else None),
        page_count=page_count,
        metadata=metadata,
    )
