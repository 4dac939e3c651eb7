"""Word .docx with python-docx: headings by style, paragraphs, lists, tables."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

from localrag.documents import BlockJoiner, ParsedDocument
from localrag.errors import ParseError, SkipFile
from localrag.parsers.limits import (
    DEFAULT_MAX_UNPACKED_BYTES,
    check_blocks,
    over_limit,
)
from localrag.sizes import megabytes

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
# python-docx holds every part in memory and parses its XML into lxml trees (~135 bytes an
# element) plus Python objects per paragraph, so tags, not bytes, decide its memory: 32 MB
# of one-word paragraphs took 1.2 GB. Real documents carry one tag per 30-60 bytes.
BYTES_PER_TAG = 32
_READ_SIZE = 1 << 20


def _count_tags(package: zipfile.ZipFile, info: zipfile.ZipInfo, most: int) -> int:
    """'<' bytes in one part, streamed; stops counting once past `most`."""
    tags = 0
    with package.open(info) as fh:
        while tags <= most and (piece := fh.read(_READ_SIZE)):
            tags += piece.count(b"<")
    return tags


def _check_package(data: bytes, limit: int) -> None:
    """Refuse a package that unpacks past the limit, before python-docx reads it whole.

    zipfile never returns more than an entry's declared size (a lying entry fails its CRC),
    so the declared sizes bound what python-docx can be handed.
    """
    try:
        package = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        return  # _open says what is wrong with it.
    with package:
        infos = package.infolist()
        total = sum(info.file_size for info in infos)
        if total > limit:
            raise over_limit("DOCX", total, limit)
        most = limit // BYTES_PER_TAG
        tags = 0
        try:
            for info in infos:
                tags += _count_tags(package, info, most - tags)
                if tags > most:
                    raise SkipFile(
                        f"DOCX has more than {most:,} XML tags, the most allowed for the "
                        f"{megabytes(limit)} limit for unpacked content (one per "
                        f"{BYTES_PER_TAG} bytes)"
                    )
        except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError, EOFError):
            return  # A damaged part: python-docx reports it in its own words.


def _open(data: bytes) -> Any:
    import docx

    try:
        return docx.Document(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        if data.startswith(_OLE2):
            # Password-protected .docx files are OLE2 containers too, as are renamed .doc files.
            raise ParseError("not a DOCX zip (encrypted, or an old .doc renamed)") from exc
        raise ParseError("corrupt DOCX (not a valid zip archive)") from exc
    except KeyError as exc:
        raise ParseError(f"corrupt DOCX (missing part {exc})") from exc
    except Exception as exc:
        raise ParseError(f"corrupt DOCX ({type(exc).__name__}: {exc})"[:160]) from exc


def _style(paragraph: Any) -> Any:
    try:
        return paragraph.style
    except Exception:  # A broken styles part should not lose the text.
        return None


def _style_name(paragraph: Any) -> str:
    style = _style(paragraph)
    return (style.name or "") if style is not None else ""


def _outline_level(paragraph: Any) -> int | None:
    """An explicit outline level on the paragraph or its style (localized heading styles)."""
    for element in (paragraph._p, getattr(_style(paragraph), "element", None)):
        if element is None:
            continue
        found = element.find(f"{_W}pPr/{_W}outlineLvl")
        if found is not None:
            try:
                level = int(found.get(f"{_W}val"))
            except (TypeError, ValueError):
                return None
            return level + 1 if level < 9 else None  # 9 means "body text"
    return None


def _heading_level(paragraph: Any) -> int | None:
    """0 for Title, 1-9 for headings, None for body text."""
    name = _style_name(paragraph)
    if name.lower() == "title":
        return 0
    m = _HEADING_STYLE.match(name.strip())
    if m:
        return int(m.group(1))
    return _outline_level(paragraph)


def _is_list(paragraph: Any) -> bool:
    if "list" in _style_name(paragraph).lower():
        return True
    ppr = paragraph._p.pPr
    return ppr is not None and ppr.numPr is not None


def _cell_text(cell: Any) -> str:
    parts = [" ".join(p.text.split()) for p in cell.paragraphs]
    for inner in cell.tables:
        parts.extend(_table_rows(inner))
    return " ".join(p for p in parts if p)


def _table_rows(table: Any) -> list[str]:
    """Each row as its cells joined by " | "; merged cells appear once."""
    rows: list[str] = []
    for row in table.rows:
        try:
            cells = list(row.cells)
        except Exception:  # Malformed grid spans: fall back to the raw cell elements.
            texts = ["".join(tc.itertext()).strip() for tc in row._tr.tc_lst]
        else:
            texts = []
            previous = None
            for cell in cells:
                if previous is not None and cell._tc is previous._tc:
                    continue  # A horizontally merged cell repeats itself.
                previous = cell
                texts.append(_cell_text(cell))
        while texts and not texts[-1]:
            texts.pop()
        if any(texts):
            rows.append(" | ".join(texts))
    return rows


def parse_docx(
    path: Path, data: bytes, *, max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
) -> ParsedDocument:
    """DOCX → blocks (paragraphs, lists, tables) under the heading path from heading styles."""
    _check_package(data, max_unpacked_bytes)
    document = _open(data)
    from docx.table import Table

    stack: list[tuple[int, str]] = []
    out: list[tuple[str, str, tuple[str, ...]]] = []
    headings: list[tuple[str, tuple[str, ...]]] = []
    list_items: list[str] = []
    first_title: str | None = None

    def current() -> tuple[str, ...]:
        return tuple(text for _, text in stack)

    def end_list() -> None:
        if list_items:
            out.append(("\n".join(list_items), "list", current()))
            list_items.clear()

    try:
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                end_list()
                rows = _table_rows(item)
                if rows:
                    out.append(("\n".join(rows), "table", current()))
                continue
            text = "\n".join(" ".join(line.split()) for line in item.text.split("\n")).strip()
            if not text:
                continue
            level = _heading_level(item)
            if level is not None:
                end_list()
                while stack and stack[-1][0] >= level:
                    stack.pop()
                heading = " ".join(text.split())
                stack.append((level, heading))
                headings.append((heading, current()))
                if level == 0 and first_title is None:
                    first_title = heading
                continue
            if _is_list(item):
                list_items.append(text)
                continue
            end_list()
            out.append((text, "paragraph", current()))
            check_blocks(len(out))
        end_list()
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(f"corrupt DOCX ({type(exc).__name__}: {exc})"[:160]) from exc
    if not out:
        out = [(text, "heading", hpath) for text, hpath in headings]
    joined = BlockJoiner()
    for text, kind, hpath in out:
        joined.add(text, kind, hpath)
    title: str | None = None
    try:
        title = " ".join((document.core_properties.title or "").split()) or None
    except Exception:
        title = None
    return ParsedDocument(
        text=joined.text, blocks=joined.blocks, format="docx", title=title or first_title
    )
