"""Parsers on real files written by the tests: exact lines, pages, headings and errors."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from localrag.documents import Block, ParsedDocument
from localrag.errors import ParseError, SkipFile
from localrag.parsers import (
    SUPPORTED_EXTENSIONS,
    format_for,
    is_probably_binary,
    parse_file,
)
from localrag.parsers.running_lines import RunningLineFilter, running_lines


def parse(tmp_path: Path, name: str, content: str | bytes) -> ParsedDocument:
    """Write a real file and parse it the way the indexer does."""
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return parse_file(path, path.read_bytes())


def line_of(source: str, needle: str) -> int:
    """1-based line of needle in source, counting only \\n (as an editor shows it)."""
    return source[: source.index(needle)].count("\n") + 1


def block_with(doc: ParsedDocument, needle: str) -> Block:
    found = [b for b in doc.blocks if needle in b.text]
    assert len(found) == 1, f"{needle!r} in {len(found)} blocks: {[b.text for b in doc.blocks]}"
    return found[0]


def assert_spans(doc: ParsedDocument) -> None:
    for b in doc.blocks:
        assert doc.text[b.char_start : b.char_end] == b.text
        assert b.text.strip() == b.text or b.kind == "code"
        if b.line_start is not None:
            assert b.line_end is not None and b.line_start <= b.line_end
            assert b.text.count("\n") == b.line_end - b.line_start


# -- Markdown ------------------------------------------------------------------------------

MARKDOWN = """---
title: "The Guide"
tags: [a, b]
---
# Install

Run the installer
on your machine.

- first item
- second item

| name | value |
|------|-------|
| a    | 1     |

Setup Details
-------------

```python
# this is a comment, not a heading
def f():
    return 1
```

~~~
## also not a heading
~~~

### Deep *emphasis* and `code`

Deep paragraph.

Other Top
=========

Last words here.
"""


def test_markdown_headings_lines_and_blocks(tmp_path: Path) -> None:
    doc = parse(tmp_path, "guide.md", MARKDOWN)
    assert doc.format == "markdown"
    assert doc.title == "The Guide"
    assert_spans(doc)
    assert all("title:" not in b.text for b in doc.blocks), "front matter must be skipped"

    para = block_with(doc, "Run the installer")
    assert para.heading_path == ("Install",)
    assert (para.line_start, para.line_end) == (7, 8)
    assert para.kind == "paragraph"

    lst = block_with(doc, "first item")
    assert lst.kind == "list" and (lst.line_start, lst.line_end) == (10, 11)

    table = block_with(doc, "| a    | 1     |")
    assert table.kind == "table" and table.line_start == line_of(MARKDOWN, "| name")

    code = block_with(doc, "this is a comment")
    assert code.kind == "code"
    assert code.heading_path == ("Install", "Setup Details")
    assert code.line_start == line_of(MARKDOWN, "```python")
    assert code.line_end == line_of(MARKDOWN, "    return 1") + 1

    tilde = block_with(doc, "also not a heading")
    assert tilde.kind == "code" and tilde.heading_path == ("Install", "Setup Details")

    deep = block_with(doc, "Deep paragraph.")
    assert deep.heading_path == ("Install", "Setup Details", "Deep emphasis and code")

    last = block_with(doc, "Last words")
    assert last.heading_path == ("Other Top",)
    assert last.line_start == line_of(MARKDOWN, "Last words")
    # No heading text leaks into blocks.
    assert not any(b.text.startswith(("#", "Other Top", "Setup Details")) for b in doc.blocks)


def test_markdown_title_falls_back_to_first_h1(tmp_path: Path) -> None:
    doc = parse(tmp_path, "a.MD", "intro\n\n## Sub\n\n# Main Title\n\ntext\n")
    assert doc.title == "Main Title"
    assert block_with(doc, "intro").heading_path == ()
    assert block_with(doc, "text").heading_path == ("Main Title",)


def test_markdown_crlf_and_lone_cr_keep_editor_lines(tmp_path: Path) -> None:
    for newline in ("\r\n", "\r"):
        doc = parse(tmp_path, "crlf.md", MARKDOWN.replace("\n", newline))
        assert "\r" not in doc.text
        assert block_with(doc, "Last words").line_start == line_of(MARKDOWN, "Last words")
        assert block_with(doc, "Run the installer").line_end == 8


def test_unclosed_fence_runs_to_end_and_hides_headings(tmp_path: Path) -> None:
    doc = parse(tmp_path, "x.md", "# A\n\n```\n# not a heading\n\ntext\n")
    assert [b.kind for b in doc.blocks] == ["code"]
    assert doc.blocks[0].heading_path == ("A",)
    assert (doc.blocks[0].line_start, doc.blocks[0].line_end) == (3, 6)


def test_headings_only_document_is_still_searchable(tmp_path: Path) -> None:
    doc = parse(tmp_path, "h.md", "# One\n\n## Two\n")
    assert [b.kind for b in doc.blocks] == ["heading", "heading"]
    assert doc.blocks[1].heading_path == ("One", "Two")


# -- reStructuredText ---------------------------------------------------------------------

RST = """=============
 Project Title
=============

Intro paragraph.

Usage
=====

Call it like this::

    result = run(1)
    # indented literal

Back to prose.

Options
-------

.. code-block:: python

   def main():
       return 0

Trailing text.

Second Chapter
==============

Final paragraph.
"""


def test_rst_sections_literal_and_code_blocks(tmp_path: Path) -> None:
    doc = parse(tmp_path, "doc.rst", RST)
    assert doc.format == "rst" and doc.title == "Project Title"
    assert_spans(doc)
    assert block_with(doc, "Intro paragraph").heading_path == ("Project Title",)
    literal = block_with(doc, "result = run(1)")
    assert literal.kind == "code"
    assert literal.heading_path == ("Project Title", "Usage")
    assert (literal.line_start, literal.line_end) == (12, 13)
    assert block_with(doc, "Back to prose").kind == "paragraph"
    directive = block_with(doc, "def main()")
    assert directive.kind == "code"
    assert directive.heading_path == ("Project Title", "Usage", "Options")
    assert directive.line_start == line_of(RST, ".. code-block::")
    assert directive.line_end == line_of(RST, "return 0")
    final = block_with(doc, "Final paragraph")
    assert final.heading_path == ("Project Title", "Second Chapter")
    assert final.line_start == line_of(RST, "Final paragraph")
    assert not any("=====" in b.text or "-----" in b.text for b in doc.blocks)


# -- Source code --------------------------------------------------------------------------

PYTHON = '''"""Module docstring."""

import os


# Helper comment belongs to the function.
@decorator
def load(path):
    data = open(path).read()

    return data


class Store:
    def put(self, key):
        return key


CONSTANT = 3
'''


def test_python_blocks_follow_definitions(tmp_path: Path) -> None:
    doc = parse(tmp_path, "store.py", PYTHON)
    assert doc.format == "code" and doc.metadata["language"] == "python"
    assert_spans(doc)
    head = block_with(doc, "Module docstring")
    assert head.heading_path == ("store.py",)
    deco = block_with(doc, "@decorator")
    assert deco.heading_path == ("store.py", "load")
    assert deco.line_start == line_of(PYTHON, "# Helper comment"), "comment joins its def"
    body = block_with(doc, "return data")
    assert body.heading_path == ("store.py", "load")
    assert body.line_start == line_of(PYTHON, "    return data")
    assert body.text.startswith("    return"), "code keeps indentation"
    assert block_with(doc, "def put").heading_path == ("store.py", "Store")
    assert block_with(doc, "CONSTANT").heading_path == ("store.py",)


@pytest.mark.parametrize(
    ("name", "source", "needle", "owner"),
    [
        ("a.js", "export async function fetchAll(x) {\n  return x;\n}\n", "return x", "fetchAll"),
        ("b.ts", "export const handler = async (e) => {\n  go(e);\n};\n", "go(e)", "handler"),
        ("c.go", "func (s *Server) Serve(c int) error {\n\treturn nil\n}\n", "return nil", "Serve"),
        ("d.rs", "pub fn parse(input: &str) -> u32 {\n    7\n}\n", "7", "parse"),
        ("e.c", "static int\nmain(int argc)\n{\n  return 0;\n}\n", "return 0", "main"),
        ("f.yaml", "server:\n  port: 80\nclient:\n  retries: 3\n", "retries", "client"),
        ("g.sql", "CREATE TABLE users (\n  id int\n);\n", "id int", "users"),
        ("Makefile", "build:\n\tcc -o x x.c\n", "cc -o", "build"),
    ],
)
def test_definition_names_across_languages(
    tmp_path: Path, name: str, source: str, needle: str, owner: str
) -> None:
    doc = parse(tmp_path, name, source)
    assert doc.format == "code"
    assert block_with(doc, needle).heading_path == (name, owner)


# -- HTML ---------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><title>Widget &amp; Co Manual</title>
<style>body { color: red }</style>
<script>var junk = "<p>not text</p>";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/docs">Docs</a></nav>
<header><p>Site banner text</p></header>
<h1>Widget Manual</h1>
<p>First paragraph about widgets
that spans two lines &mdash; with entities &lt;ok&gt;.</p>
<h2>Install</h2>
<ul><li>Step one</li>
<li>Step
two</li></ul>
<pre>
  indented   code
    keeps   spacing
</pre>
<h3>Sizes</h3>
<table><tr><th>Size</th><th>Price</th></tr>
<tr><td>Small</td><td>$5</td></tr></table>
<p class="x"
   id="multi-line-tag">After a tag split over lines.</p>
<h2>Support</h2>
<div>Plain div text.</div>
<footer><p>Copyright footer</p></footer>
</body></html>
"""


def test_html_text_headings_lines_and_junk(tmp_path: Path) -> None:
    doc = parse(tmp_path, "manual.html", HTML)
    assert doc.format == "html"
    assert doc.title == "Widget & Co Manual"
    assert_spans(doc)
    for junk in ("not text", "Home", "Docs", "Site banner", "Copyright", "color: red"):
        assert junk not in doc.text
    first = block_with(doc, "First paragraph")
    assert first.heading_path == ("Widget Manual",)
    assert first.text == (
        "First paragraph about widgets\nthat spans two lines — with entities <ok>."
    )
    assert (first.line_start, first.line_end) == (9, 10)
    step = block_with(doc, "Step one")
    assert step.kind == "list" and step.heading_path == ("Widget Manual", "Install")
    two = block_with(doc, "Step\ntwo")
    assert (two.line_start, two.line_end) == (13, 14)
    pre = block_with(doc, "indented")
    assert pre.kind == "code"
    assert pre.text == "  indented   code\n    keeps   spacing"
    assert pre.line_start == line_of(HTML, "  indented")
    row = block_with(doc, "Small")
    assert row.kind == "table" and row.text == "Small | $5"
    assert row.heading_path == ("Widget Manual", "Install", "Sizes")
    assert block_with(doc, "Size | Price").line_start == line_of(HTML, "<table>")
    tagged = block_with(doc, "After a tag")
    assert tagged.line_start == line_of(HTML, "multi-line-tag")
    assert block_with(doc, "Plain div").heading_path == ("Widget Manual", "Support")


DOCBOOK = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>2.6. Joins Between Tables</title></head>
<body><div class="navheader"><table width="100%" summary="Navigation header"><tr>
<th colspan="5" align="center">2.6. Joins Between Tables</th></tr><tr><td>
<a accesskey="p" href="a.html">Prev</a> </td><td><a accesskey="u" href="b.html">Up</a></td>
<td><a accesskey="n" href="c.html">Next</a></td></tr></table><hr /></div>
<div class="sect1"><div class="titlepage"><div><div><h2 class="title">2.6. Joins Between Tables
</h2></div></div></div><div class="toc"><dl><dt>2.6.1. <a href="x.html">Inner</a></dt></dl></div>
<p>Queries can access multiple tables at once.</p>
<div class="note"><h3 class="title">Note</h3><p>A note body.</p></div>
<div class="sect2"><div class="titlepage"><h3 class="title">2.6.1. Outer Joins</h3></div>
<p>Outer join text.</p></div>
<p>Back in the section.</p>
</div><div class="navfooter"><hr /><table summary="Navigation footer"><tr><td>
<a href="a.html">Prev</a></td><td><a href="c.html">Next</a></td></tr></table></div>
</body></html>
"""


def test_docbook_pages_have_clean_headings_and_no_navigation(tmp_path: Path) -> None:
    doc = parse(tmp_path, "tutorial-join.html", DOCBOOK)
    for junk in ("Prev", "Next", "Up", "Inner"):
        assert junk not in doc.text.split(), junk
    title = "2.6. Joins Between Tables"
    assert doc.title == title
    assert block_with(doc, "multiple tables").heading_path == (title,)
    # An admonition's "Note" heading is text, not a section that swallows what follows.
    assert block_with(doc, "A note body").heading_path == (title,)
    assert block_with(doc, "Outer join text").heading_path == (title, "2.6.1. Outer Joins")
    # The sect2 div closed: its heading no longer applies.
    assert block_with(doc, "Back in the section").heading_path == (title,)


MENU_PAGE = """<html><head><title>Backups</title></head><body>
<div class="top"><a href="/">Home</a> <a href="/about">About</a> <a href="/docs">Documentation</a>
<a href="/download">Download</a> <a href="/license">License</a> <a href="/support">Support</a>
</div>
<ul class="links"><li><a href="/a">Index</a></li><li><a href="/b">Changes</a></li></ul>
<h1>Backups</h1>
<p>Take a copy with the <a href="/backup-api">online backup interface</a> while readers and
writers keep working; the copy is consistent as of the moment it finishes.</p>
<ul><li>Run <a href="/vacuum">VACUUM INTO</a> to write a compacted copy to a new file.</li>
<li><a href="/faq">See the questions about copies</a></li></ul>
</body></html>
"""


def test_html_blocks_that_are_only_links_are_navigation(tmp_path: Path) -> None:
    """A menu without a telling class name is still a menu: its text is mostly short links."""
    doc = parse(tmp_path, "backup.html", MENU_PAGE)
    for junk in ("Home", "About", "Documentation", "License", "Index", "Changes"):
        assert junk not in doc.text.split(), junk
    # Prose with links in it stays, and so does a list item that is a link of many words.
    assert "online backup interface" in block_with(doc, "Take a copy").text
    assert block_with(doc, "VACUUM INTO").kind == "list"
    assert "See the questions about copies" in doc.text


def test_html_declared_legacy_charset(tmp_path: Path) -> None:
    page = '<html><head><meta charset="iso-8859-1"></head><body><p>Caf\xe9 cr\xe8me</p></body>'
    doc = parse(tmp_path, "old.htm", page.encode("latin-1"))
    assert doc.blocks[0].text == "Café crème"


# -- Plain text and encodings -------------------------------------------------------------


def test_text_paragraphs_and_lines(tmp_path: Path) -> None:
    src = "Alpha line one\nalpha line two\n\n\n  Beta indented\n\n- item a\n- item b\n"
    doc = parse(tmp_path, "notes.txt", src)
    assert doc.format == "text"
    assert_spans(doc)
    assert [(b.line_start, b.line_end) for b in doc.blocks] == [(1, 2), (5, 5), (7, 8)]
    assert doc.blocks[1].text == "Beta indented"
    assert doc.blocks[2].kind == "list"


def test_only_real_newlines_count_as_lines(tmp_path: Path) -> None:
    # str.splitlines() would break on \x0c, \x1c, \x85 and \u2028; editors do not.
    src = "page one\x0cstill line one\u2028same\x85line\n\nsecond paragraph\n"
    doc = parse(tmp_path, "ff.txt", src)
    assert block_with(doc, "second paragraph").line_start == 3


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig"])
def test_bom_encodings(tmp_path: Path, encoding: str) -> None:
    src = "Größe ünd naïve\r\n\r\nzweiter Absatz ✓\r\n"
    data = src.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    assert not is_probably_binary(data)
    doc = parse(tmp_path, "bom.txt", data)
    assert doc.blocks[0].text == "Größe ünd naïve"
    assert block_with(doc, "zweiter").line_start == 3
    assert not doc.text.startswith("\ufeff")


def test_latin1_text_falls_back_when_clearly_text(tmp_path: Path) -> None:
    doc = parse(tmp_path, "old.txt", "Le café était crème, à bientôt.\n".encode("cp1252"))
    assert doc.blocks[0].text == "Le café était crème, à bientôt."


def test_undecodable_text_is_a_parse_error(tmp_path: Path) -> None:
    # Shift-JIS Japanese: no NULs, not UTF-8, not plausibly a Western code page either.
    data = ("日本語のテキストファイルです。" * 20).encode("shift_jis")
    with pytest.raises(ParseError, match=r"^cannot decode text \(not UTF-8\)$"):
        parse(tmp_path, "jp.txt", data)


def test_mostly_utf8_with_a_stray_byte_is_kept(tmp_path: Path) -> None:
    data = ("naïve café " * 50).encode("utf-8") + b"\xff end"
    doc = parse(tmp_path, "log.log", data)
    assert "naïve café" in doc.text and doc.text.endswith("\ufffd end")


def test_huge_single_line(tmp_path: Path) -> None:
    data = "x" * 300_000 + " tail"
    doc = parse(tmp_path, "big.txt", data)
    assert len(doc.blocks) == 1
    assert (doc.blocks[0].line_start, doc.blocks[0].line_end) == (1, 1)


# -- Binary detection ---------------------------------------------------------------------


def test_binary_files_are_skipped(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
    elf = b"\x7fELF\x02\x01\x01" + bytes(100)
    noise = random.Random(7).randbytes(4096)
    for name, data in [("img.png", png), ("prog", elf), ("blob.bin", noise), ("fake.txt", png)]:
        assert is_probably_binary(data)
        with pytest.raises(SkipFile, match="binary file"):
            parse(tmp_path, name, data)


def test_binary_without_nul_bytes_is_detected() -> None:
    rng = random.Random(3)
    noise = bytes(rng.choice([b for b in range(256) if b]) for _ in range(4096))
    assert b"\x00" not in noise
    assert is_probably_binary(noise)
    assert is_probably_binary(b"GIF89a" + b"x" * 50)
    assert not is_probably_binary(b"plain text\twith tab\nand a form feed \x0c here\n")
    assert not is_probably_binary(b"")


def test_unknown_extension_text_is_parsed_as_text(tmp_path: Path) -> None:
    doc = parse(tmp_path, "README.weird", "just some text\n\nmore\n")
    assert doc.format == "text" and len(doc.blocks) == 2


def test_format_for_and_supported_extensions() -> None:
    assert format_for(Path("A.MD")) == "markdown"
    assert format_for("x.HTM") == "html"
    assert format_for("deep/Makefile") == "code"
    assert format_for("report.PDF") == "pdf"
    assert format_for("a.unknownext") is None
    assert {".md", ".rst", ".txt", ".py", ".html", ".pdf", ".docx", ".json"} <= SUPPORTED_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in SUPPORTED_EXTENSIONS)


def test_library_exceptions_never_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import localrag.parsers as parsers

    def boom(path: Path, data: bytes) -> ParsedDocument:
        raise ValueError("library blew up")

    monkeypatch.setitem(parsers._PARSERS, "markdown", boom)
    with pytest.raises(ParseError, match="library blew up"):
        parse(tmp_path, "x.md", "# hi\n")


# -- PDF ----------------------------------------------------------------------------------


def make_pdf(pages: list[list[str]], **encryption: str) -> bytes:
    """A real PDF: one list of paragraphs per page, paragraphs separated by a gap."""
    pdf = FPDF()
    pdf.set_title("Quarterly Report")
    pdf.set_font("helvetica", size=12)
    for paragraphs in pages:
        pdf.add_page()
        for para in paragraphs:
            if para.startswith("#"):
                pdf.start_section(para.lstrip("# "))
            pdf.multi_cell(0, 6, para.lstrip("# "))
            pdf.ln(8)
    if encryption:
        pdf.set_encryption(**encryption)
    return bytes(pdf.output())


PAGES = [
    ["# Overview", "Opening remarks about apples.", "A second paragraph on oranges."],
    ["Page two talks about bananas in detail."],
    ["# Appendix", "Page three mentions cherries."],
]


def test_pdf_pages_paragraphs_and_outline(tmp_path: Path) -> None:
    doc = parse(tmp_path, "report.pdf", make_pdf(PAGES))
    assert doc.format == "pdf" and doc.page_count == 3
    assert doc.title == "Quarterly Report"
    assert_spans(doc)
    assert block_with(doc, "bananas").page == 2
    assert block_with(doc, "cherries").page == 3
    apples = block_with(doc, "apples")
    assert apples.page == 1 and "oranges" not in apples.text, "paragraphs split on gaps"
    assert apples.line_start is None
    assert block_with(doc, "bananas").heading_path == ("Overview",)
    assert block_with(doc, "cherries").heading_path == ("Appendix",)


def test_encrypted_pdf_with_password_is_reported(tmp_path: Path) -> None:
    data = make_pdf([["secret text"]], owner_password="own", user_password="usr")
    with pytest.raises(ParseError, match=r"^encrypted PDF \(password protected\)$"):
        parse(tmp_path, "locked.pdf", data)


def test_pdf_encrypted_with_empty_user_password_opens(tmp_path: Path) -> None:
    doc = parse(tmp_path, "perm.pdf", make_pdf([["readable text"]], owner_password="own"))
    assert block_with(doc, "readable text").page == 1


def test_corrupt_pdf(tmp_path: Path) -> None:
    data = make_pdf(PAGES)
    for bad in (data[: len(data) // 2], b"%PDF-1.4\n garbage", b"not a pdf at all"):
        with pytest.raises(ParseError, match=r"^corrupt PDF \("):
            parse(tmp_path, "broken.pdf", bad)


def test_pdf_without_text_is_probably_scanned(tmp_path: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 100, style="F")
    with pytest.raises(ParseError, match=r"^no extractable text \(scanned PDF\?\)$"):
        parse(tmp_path, "scan.pdf", bytes(pdf.output()))


# -- DOCX ---------------------------------------------------------------------------------


def make_docx() -> bytes:
    d = docx.Document()
    d.core_properties.title = "Team Handbook"
    d.add_heading("Handbook", 0)
    d.add_heading("Onboarding", 1)
    d.add_paragraph("Welcome to the team.")
    d.add_paragraph("Get a laptop", style="List Bullet")
    d.add_paragraph("Get a badge", style="List Bullet")
    d.add_heading("Equipment", 2)
    table = d.add_table(rows=3, cols=3)
    for r, row in enumerate([["Item", "Qty", "Owner"], ["Laptop", "1", "IT"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    merged = table.cell(2, 0).merge(table.cell(2, 2))
    merged.text = "All items are returned on leaving"
    d.add_heading("Leaving", 1)
    d.add_paragraph("Return everything.")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def test_docx_headings_paragraphs_lists_tables(tmp_path: Path) -> None:
    doc = parse(tmp_path, "handbook.docx", make_docx())
    assert doc.format == "docx" and doc.title == "Team Handbook"
    assert_spans(doc)
    welcome = block_with(doc, "Welcome")
    assert welcome.heading_path == ("Handbook", "Onboarding")
    assert welcome.line_start is None and welcome.page is None
    items = block_with(doc, "Get a laptop")
    assert items.kind == "list" and items.text == "Get a laptop\nGet a badge"
    table = block_with(doc, "Laptop")
    assert table.kind == "table"
    assert table.heading_path == ("Handbook", "Onboarding", "Equipment")
    assert table.text.split("\n") == [
        "Item | Qty | Owner",
        "Laptop | 1 | IT",
        "All items are returned on leaving",
    ]
    assert block_with(doc, "Return everything").heading_path == ("Handbook", "Leaving")


def test_corrupt_docx(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"^corrupt DOCX \(not a valid zip archive\)$"):
        parse(tmp_path, "bad.docx", b"this is not a zip")
    with pytest.raises(ParseError, match=r"^corrupt DOCX"):
        parse(tmp_path, "cut.docx", make_docx()[:5000])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "not word")
    with pytest.raises(ParseError, match=r"^corrupt DOCX \(missing part"):
        parse(tmp_path, "empty.docx", buf.getvalue())
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)
    with pytest.raises(ParseError, match=r"^not a DOCX zip"):
        parse(tmp_path, "old.docx", ole)


DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@pytest.mark.skipif(not DEJAVU.exists(), reason="needs a font with ligature glyphs (DejaVu Sans)")
def test_pdf_ligatures_become_letters(tmp_path: Path) -> None:
    """TeX-made PDFs write "ﬁle" with one ligature character: it must read (and match) "file"."""
    pdf = FPDF()
    pdf.add_font("DejaVu", fname=str(DEJAVU))
    pdf.add_page()
    pdf.set_font("DejaVu", size=12)
    pdf.multi_cell(0, 8, "The \ufb01le \ufb02oats, e\ufb00ort and o\ufb03ce.")
    path = tmp_path / "typeset.pdf"
    pdf.output(str(path))
    doc = parse(tmp_path, "typeset.pdf", path.read_bytes())
    assert "The file floats, effort and office." in doc.text
    assert not any("\ufb00" <= ch <= "\ufb06" for ch in doc.text)


class _LetterheadPDF(FPDF):
    """Every page carries the same header and a numbered footer, as contracts and reports do."""

    def header(self) -> None:
        self.set_font("helvetica", size=9)
        self.cell(0, 8, "ACME Corp - Confidential - Master Services Agreement")
        self.ln(14)

    def footer(self) -> None:
        self.set_y(-15)
        self.set_font("helvetica", size=9)
        self.cell(0, 8, f"Page {self.page_no()} of 5 - Draft 3")


def _letterhead_pdf(pages: list[str]) -> bytes:
    pdf = _LetterheadPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.set_font("helvetica", size=12)
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def test_pdf_running_headers_and_footers_are_dropped(tmp_path: Path) -> None:
    clauses = ["Delivery", "Inspection", "Payment", "Warranty", "Termination"]
    body = [
        f"{name}: the parties agree on {name.lower()}.\n\n"
        f"The buyer inspects each batch within {n * 7} days.\n\nDefects are reported in writing."
        for n, name in enumerate(clauses, 1)
    ]
    body[2] += "\n\nThis clause is Confidential - Master Services Agreement wording."
    doc = parse(tmp_path, "msa.pdf", _letterhead_pdf(body))
    # The letterhead and the numbered footer stay on the first page only.
    assert doc.text.count("ACME Corp") == 1 and block_with(doc, "ACME Corp").page == 1
    assert doc.text.count("Draft 3") == 1 and "Page 2 of 5" not in doc.text
    for n, name in enumerate(clauses, 1):  # the body of every page is kept, on its page
        assert block_with(doc, f"agree on {name.lower()}").page == n
        assert block_with(doc, f"within {n * 7} days").page == n
    # The same words inside a page's body are content, not a running line.
    assert block_with(doc, "This clause is Confidential").page == 3
    # A line every page ends with is kept once: a repeated line may be content.
    assert doc.text.count("Defects are reported in writing.") == 2  # page 1, and page 3's body


def test_pdf_short_documents_keep_their_first_and_last_lines(tmp_path: Path) -> None:
    """Two pages that start alike are a coincidence, not a running header."""
    doc = parse(tmp_path, "memo.pdf", _letterhead_pdf(["First page.", "Second page."]))
    assert doc.text.count("ACME Corp") == 2 and "Page 2 of 5" in doc.text


def test_running_lines_follow_page_numbers_and_need_many_pages() -> None:
    fruit = ["apples", "pears", "plums", "figs", "limes", "kiwis"]
    pages = [
        f"Report 2024 - p. {n + 3}\n{w} grow\ntext\n{w} ripen\n- {n + 1} -"
        for n, w in enumerate(fruit)
    ]
    pages.append("A page with no header\nBody\nmore\nthen\nthe end")
    running = running_lines(pages)
    kept = RunningLineFilter(running)
    assert kept.page(pages[0], 0).startswith("Report 2024 - p. 3\napples")  # first copy stays
    assert kept.page(pages[1], 1) == "pears grow\ntext\npears ripen"
    assert kept.page(pages[6], 6) == pages[6]
    # "- 8 -" on page 8 of the counting is the same footer; "- 2 -" there is not.
    assert kept.page("x\na\nb\nc\n- 8 -", 7).endswith("c")
    assert kept.page("x\na\nb\nc\n- 2 -", 7).endswith("- 2 -")
    # A heading at the top of two pages of seven is not running.
    pages[0] = "Chapter One\n" + pages[0]
    pages[1] = "Chapter One\n" + pages[1]
    assert not any("chapter" in key for key in running_lines(pages))
