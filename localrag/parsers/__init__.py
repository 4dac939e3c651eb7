"""File → ParsedDocument, one module per format.

Every parser keeps `block.text == doc.text[block.char_start:block.char_end]`. For formats with
line numbers (text, markdown, rst, code, html), each "\\n" inside a block's text is one source
line, so `block.line_start + block.text.count("\\n", 0, i)` is the exact line of offset i;
the chunker relies on this.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from localrag.documents import ParsedDocument
from localrag.errors import LocalragError, ParseError, SkipFile
from localrag.parsers.code import FILENAMES, LANGUAGES, language_for, parse_code
from localrag.parsers.detect import decode_text, is_probably_binary
from localrag.parsers.docx import parse_docx
from localrag.parsers.html import parse_html
from localrag.parsers.limits import DEFAULT_MAX_UNPACKED_BYTES
from localrag.parsers.markdown import parse_markdown
from localrag.parsers.pdf import parse_pdf
from localrag.parsers.rst import parse_rst
from localrag.parsers.text import parse_text

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "decode_text",
    "format_for",
    "is_probably_binary",
    "parse_file",
]

_FORMATS: dict[str, str] = {
    **dict.fromkeys(("md", "markdown", "mdown", "mkd", "mkdn", "mdx"), "markdown"),
    **dict.fromkeys(("rst", "rest"), "rst"),
    **dict.fromkeys(("txt", "text", "log", "adoc", "asciidoc", "org", "tex", "me"), "text"),
    **dict.fromkeys(("html", "htm", "xhtml"), "html"),
    "pdf": "pdf",
    "docx": "docx",
    **dict.fromkeys(LANGUAGES, "code"),
}

# Lower-case, with the leading dot, as Path.suffix gives them.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(f".{ext}" for ext in _FORMATS)

_PARSERS: dict[str, Callable[[Path, bytes], ParsedDocument]] = {
    "markdown": parse_markdown,
    "rst": parse_rst,
    "text": parse_text,
    "html": parse_html,
    "pdf": parse_pdf,
    "docx": parse_docx,
    "code": parse_code,
}


def format_for(path: Path | str) -> str | None:
    """The parser format for a file name ("markdown", "pdf", "code", ...), or None if unknown."""
    p = Path(path)
    if p.name.lower() in FILENAMES:
        return "code"
    return _FORMATS.get(p.suffix.lower().lstrip("."))


def parse_file(
    path: Path, data: bytes, *, max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
) -> ParsedDocument:
    """Parse a file's bytes; raises ParseError (or SkipFile) with a user-facing reason.

    `max_unpacked_bytes` bounds what a compressed format (DOCX, PDF) may unpack to.
    """
    fmt = format_for(path)
    if fmt not in ("pdf", "docx") and is_probably_binary(data):
        raise SkipFile("binary file")
    parser = _PARSERS[fmt or "text"]
    try:
        if fmt == "code":
            return parse_code(path, data, language_for(path))
        if fmt == "docx":
            return parse_docx(path, data, max_unpacked_bytes=max_unpacked_bytes)
        if fmt == "pdf":
            return parse_pdf(path, data, max_unpacked_bytes=max_unpacked_bytes)
        return parser(path, data)
    except LocalragError:
        raise
    except RecursionError as exc:
        raise ParseError(f"cannot parse {fmt or 'text'} (nested too deeply)") from exc
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        if len(detail) > 120:
            detail = detail[:117] + "..."
        raise ParseError(f"cannot parse {fmt or 'text'} ({detail})") from exc
