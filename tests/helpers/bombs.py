"""Pathological files for memory tests and bench/bench_memory.py, written to exact sizes.

Every builder streams to disk, so making a 50 MB file (or a DOCX whose document.xml unpacks
to 200 MB) never needs that much memory in the test process itself.
"""

from __future__ import annotations

import random
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

UNIT = 1 << 20  # Text is written as a repeated 1 MiB unit: fast, and size-exact.


def _vocabulary(seed: int = 13) -> list[str]:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(4000)]


def prose(size: int, seed: int = 13, sentence_words: int = 14) -> str:
    """About `size` characters of sentences of random words, single spaces, no newlines."""
    rng = random.Random(seed)
    vocab = _vocabulary(seed)
    parts: list[str] = []
    total = 0
    while total < size:
        words = rng.choices(vocab, k=sentence_words)
        sentence = " ".join(words).capitalize() + ". "
        parts.append(sentence)
        total += len(sentence)
    return "".join(parts)[:size]


def _repeat_to(path: Path, unit: str, size: int) -> Path:
    """Write `unit` again and again until the file holds exactly `size` bytes (ASCII)."""
    data = unit.encode("ascii")
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            piece = data[:left]
            fh.write(piece)
            left -= len(piece)
    return path


def one_line_text(path: Path, size: int) -> Path:
    """Prose with no newline at all: one block, one line."""
    return _repeat_to(path, prose(UNIT), size)


def many_line_text(path: Path, size: int) -> Path:
    """Short lines and no blank line: one block of a million lines."""
    text = prose(UNIT)
    lines = [text[i : i + 59].strip() for i in range(0, len(text), 60)]
    return _repeat_to(path, "\n".join(lines) + "\n", size)


def no_space_text(path: Path, size: int) -> Path:
    """Letters and digits without any whitespace or punctuation (a base64 blob, a hash dump)."""
    rng = random.Random(7)
    unit = "".join(
        rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=UNIT)
    )
    return _repeat_to(path, unit, size)


def markdown_text(path: Path, size: int) -> Path:
    """A long manual: headings, paragraphs, lists and fenced code."""
    rng = random.Random(3)
    text = prose(UNIT * 2)
    parts: list[str] = []
    pos = 0
    section = 0
    while pos < UNIT:
        section += 1
        parts.append(f"## Section {section}\n\n")
        for _ in range(rng.randint(2, 5)):
            n = rng.randint(200, 900)
            parts.append(text[pos : pos + n].strip() + "\n\n")
            pos += n
        parts.append("- " + text[pos : pos + 60].strip() + "\n- " + text[pos + 60 : pos + 120])
        parts.append("\n\n```python\ndef f(x):\n    return x * 2\n```\n\n")
        pos += 120
    return _repeat_to(path, "".join(parts), size)


def code_text(path: Path, size: int) -> Path:
    """A Python module of many small functions."""
    vocab = _vocabulary(5)
    rng = random.Random(5)
    parts: list[str] = []
    total = 0
    while total < UNIT:
        name, arg, other = rng.choices(vocab, k=3)
        body = (
            f"def {name}_{total}({arg}, {other}=None):\n"
            f'    """Return {arg} combined with {other}."""\n'
            f"    if {other} is None:\n"
            f"        return {arg}\n"
            f"    return [{arg}, {other}, {rng.randint(0, 999)}]\n\n\n"
        )
        parts.append(body)
        total += len(body)
    return _repeat_to(path, "".join(parts), size)


def minified_js(path: Path, size: int) -> Path:
    """One line of minified JavaScript: code with no newline and few spaces."""
    vocab = _vocabulary(11)
    rng = random.Random(11)
    parts: list[str] = []
    total = 0
    while total < UNIT:
        a, b, c = rng.choices(vocab, k=3)
        piece = f"function {a}({b},{c}){{return {b}.{c}({rng.randint(0, 99)})||{a}}};"
        parts.append(piece)
        total += len(piece)
    return _repeat_to(path, "".join(parts), size)


def html_text(path: Path, size: int) -> Path:
    """A large page: headings, paragraphs, a table now and then, navigation to drop."""
    rng = random.Random(9)
    text = prose(UNIT * 2)
    parts = ["<!doctype html><html><head><title>Big page</title></head><body>\n"]
    parts.append('<nav class="navbar"><a href="/">Home</a></nav>\n')
    pos = 0
    section = 0
    while pos < UNIT:
        section += 1
        parts.append(f"<h2>Section {section}</h2>\n")
        for _ in range(rng.randint(2, 4)):
            n = rng.randint(200, 900)
            parts.append(f"<p>{text[pos : pos + n].strip()}</p>\n")
            pos += n
        parts.append(f"<table><tr><td>{section}</td><td>{text[pos : pos + 40]}</td></tr></table>\n")
        pos += 40
    return _repeat_to(path, "".join(parts), size)


def _xml_paragraphs(total: int, words: int) -> Iterator[bytes]:
    """WordprocessingML paragraphs of `words` characters adding up to about `total` bytes."""
    text = prose(words)
    para = f"<w:p><w:r><w:t>{text}</w:t></w:r></w:p>".encode()
    for _ in range(max(1, total // len(para))):
        yield para


_DOCX_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
_DOCX_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Target="word/document.xml" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/officeDocument"/></Relationships>'
)
_W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def docx_bomb(path: Path, unpacked: int, paragraph_chars: int = 4000) -> Path:
    """A minimal valid DOCX whose document.xml unpacks to about `unpacked` bytes.

    Short paragraphs make it dense in XML tags, which is what python-docx's memory follows.
    """
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("[Content_Types].xml", _DOCX_TYPES)
        zf.writestr("_rels/.rels", _DOCX_RELS)
        with zf.open("word/document.xml", "w", force_zip64=True) as fh:
            fh.write(f'<?xml version="1.0"?><w:document xmlns:w="{_W_NS}"><w:body>'.encode())
            for para in _xml_paragraphs(unpacked, paragraph_chars):
                fh.write(para)
            fh.write(b"</w:body></w:document>")
    return path


def _flate(content: Iterator[bytes]) -> bytes:
    packer = zlib.compressobj(9)
    return b"".join(packer.compress(piece) for piece in content) + packer.flush()


def _stream(content: Iterator[bytes]) -> bytes:
    data = _flate(content)
    return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"


def _write_pdf(path: Path, objects: list[bytes]) -> Path:
    """Objects numbered from 1 (the catalog), then the cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def pdf_pages(
    path: Path, streams: list[Callable[[], Iterator[bytes]]], layout: list[int] | None = None
) -> Path:
    """A PDF with one FlateDecode content stream per entry of `streams`; page i shows
    stream layout[i] (default: a page per stream), so pages may share one stream."""
    layout = list(range(len(streams))) if layout is None else layout
    first_stream = 4
    first_page = first_stream + len(streams)
    kids = b" ".join(b"%d 0 R" % (first_page + i) for i in range(len(layout)))
    fonts = b"/Font << /F1 3 0 R >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(layout)),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    objects += [_stream(content()) for content in streams]
    for stream in layout:
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << %s >> >>" % (first_stream + stream, fonts)
        )
    return _write_pdf(path, objects)


def text_operators(
    size: int, line: str = "All work and no play makes a dull document"
) -> Callable[[], Iterator[bytes]]:
    """A content stream of about `size` bytes: many short lines of text, one operator each."""
    op = b"BT /F1 10 Tf 72 700 Td (%s) Tj ET\n" % line.encode("ascii")

    def content() -> Iterator[bytes]:
        block = op * 1000
        for _ in range(max(1, size // len(block))):
            yield block
        yield op * max(0, (size % len(block)) // len(op))

    return content


def long_strings(size: int) -> Callable[[], Iterator[bytes]]:
    """A content stream of about `size` bytes showing few, very long strings."""
    op = b"BT /F1 10 Tf 72 700 Td (" + b"abcdefgh " * 6000 + b") Tj ET\n"

    def content() -> Iterator[bytes]:
        for _ in range(max(1, size // len(op))):
            yield op

    return content


def pdf_bomb(path: Path, unpacked: int) -> Path:
    """One page whose content stream inflates to about `unpacked` bytes of text operators."""
    return pdf_pages(path, [text_operators(unpacked)])


def many_headings(path: Path, sections: int) -> Path:
    """Markdown of one-line sections: a heading and ~80 characters each (a block per section)."""
    text = prose(80 * 1000)
    with open(path, "w", encoding="ascii") as fh:
        for i in range(sections):
            start = (i % 1000) * 80
            fh.write(f"# Part {i}\n\n{text[start : start + 80].strip()}\n\n")
    return path


def legacy_text(path: Path, size: int) -> Path:
    """Windows-1252 prose with every word in curly quotes: ~28% of bytes non-ASCII."""
    words = prose(UNIT).split(" ")
    unit = " ".join(f"\x93{w}\x94" for w in words).encode("latin-1")
    with open(path, "wb") as fh:
        left = size
        while left > 0:
            fh.write(unit[:left])
            left -= min(left, len(unit))
    return path
