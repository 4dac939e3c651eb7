"""Bounded memory: pathological files are chunked in little memory or refused with a reason.

The peak-memory tests run the indexer's read + parse + chunk in a fresh interpreter
(tests/helpers/memory.py) on inputs scaled down so they take seconds; the bounds are ones the
code before the fix broke by far (a 4 MB line needed ~750 MB, the bombs gigabytes).
bench/bench_memory.py measures the same at the size limit.
"""

from __future__ import annotations

import io
import random
import re
import struct
import tracemalloc
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from localrag.chunking import COUNT_BATCH_CHARS, EXACT_COUNT_CHARS, chunk_document
from localrag.config import DEFAULT_MAX_UNPACKED_BYTES, IndexSettings
from localrag.documents import ParsedDocument
from localrag.errors import ParseError, SkipFile
from localrag.indexer import Indexer
from localrag.parsers import limits, parse_file
from localrag.parsers.detect import decode_text
from localrag.store import Store
from tests.helpers import bombs
from tests.helpers.chunks import check, doc_of
from tests.helpers.memory import measure
from tests.helpers.tokenizer import MiniLMCounter

MB = 1024 * 1024  # the bombs are sized in binary megabytes (MiB)
# The child's whole RSS (model and imports included) past which it is stopped.
CHILD_CAP_MB = 2500


def model_dir(models_root: Path) -> Path:
    return models_root / "embedders" / "all-MiniLM-L6-v2"


# -- peak memory, in a fresh interpreter -----------------------------------------------------------


@pytest.mark.parametrize("builder", [bombs.one_line_text, bombs.many_line_text])
def test_a_huge_block_is_chunked_in_bounded_memory(tmp_path, models_root, builder) -> None:
    path = builder(tmp_path / "big.txt", 4 * MB)
    result = measure(path, model_dir(models_root), CHILD_CAP_MB)
    # Before: one tokenizer call over the whole 4 MB block, ~750 MB (5.8 GB at 40 MB).
    assert result["peak_mb"] < 250, result
    assert re.fullmatch(r"\d{4,} chunks", result["outcome"]), result


def test_a_docx_bomb_is_refused_before_it_is_unpacked(tmp_path, models_root) -> None:
    path = bombs.docx_bomb(tmp_path / "bomb.docx", 100 * MB)
    assert path.stat().st_size < 2 * MB
    result = measure(path, model_dir(models_root), CHILD_CAP_MB)
    assert result["peak_mb"] < 150, result  # before: python-docx unpacked it all, then GBs
    assert result["outcome"].startswith("SkipFile: DOCX unpacks to 10"), result
    assert "limit for unpacked content" in result["outcome"]


def test_a_pdf_page_that_inflates_hugely_is_refused_in_bounded_memory(
    tmp_path, models_root
) -> None:
    path = bombs.pdf_pages(tmp_path / "bomb.pdf", [bombs.long_strings(40 * MB)])
    assert path.stat().st_size < MB
    result = measure(path, model_dir(models_root), CHILD_CAP_MB)
    # Before: pypdf extracted 40 MB of text from the one page (~550 MB), then it was chunked.
    assert result["peak_mb"] < 250, result
    assert result["outcome"].startswith("SkipFile: PDF page 1 unpacks to 4"), result


# -- the chunker never hands the tokenizer a huge text ---------------------------------------------


class WidestCallCounter(MiniLMCounter):
    """The real tokenizer, remembering the most characters any one call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.widest = 0

    def count(self, text: str) -> int:
        self.widest = max(self.widest, len(text))
        return super().count(text)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        self.widest = max(self.widest, sum(len(t) for t in texts))
        return super().count_many(list(texts))


def huge_blocks_doc() -> ParsedDocument:
    """A line of prose and a run without whitespace, each longer than any exact count."""
    rng = random.Random(3)
    blob = "".join(rng.choice("abcdefghij0123456789") for _ in range(EXACT_COUNT_CHARS + 5000))
    return doc_of(
        [
            (bombs.prose(3 * EXACT_COUNT_CHARS), ("Guide",), None),
            ("A short paragraph between them.", ("Guide",), None),
            (blob, (), None),
        ]
    )


def test_the_tokenizer_never_sees_more_than_a_batch_at_once() -> None:
    doc = huge_blocks_doc()
    counter = WidestCallCounter()
    chunks = chunk_document(doc, counter, 254)
    check(doc, chunks, 254)
    # Before: the 790k-character block went to the tokenizer whole.
    assert 0 < counter.widest <= 2 * COUNT_BATCH_CHARS


def test_huge_blocks_keep_every_guarantee_and_lose_nothing() -> None:
    doc = huge_blocks_doc()
    counter = MiniLMCounter()
    chunks = chunk_document(doc, counter, 128, overlap_tokens=0)
    check(doc, chunks, 128)
    got = re.sub(r"\s+", "", "".join(c.text for c in chunks))
    want = re.sub(r"\s+", "", "".join(b.text for b in doc.blocks))
    assert got == want


def test_a_heading_too_long_to_count_is_shortened() -> None:
    doc = doc_of([("Body text.", ("word " * (EXACT_COUNT_CHARS // 4),), None)])
    chunks = chunk_document(doc, MiniLMCounter(), 32)
    check(doc, chunks, 32)
    assert chunks[0].text == "Body text."


def test_legacy_encoded_text_is_decoded_without_a_list_of_its_characters(tmp_path) -> None:
    data = bombs.legacy_text(tmp_path / "quotes.txt", 8 * MB).read_bytes()
    tracemalloc.start()
    try:
        text = decode_text(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert text.startswith("\u201c") and len(text) == len(data)
    # Two 16 MB decodings at most; before, a list of its 1.8M curly quotes took 189 MB.
    assert peak < 100 * MB


# -- DOCX ------------------------------------------------------------------------------------------


def test_docx_over_the_unpacked_limit_is_skipped_with_its_size(tmp_path: Path) -> None:
    path = bombs.docx_bomb(tmp_path / "bomb.docx", 2 * MB)
    with pytest.raises(SkipFile) as caught:
        parse_file(path, path.read_bytes(), max_unpacked_bytes=1_000_000)
    assert re.fullmatch(
        r"DOCX unpacks to 2\.\d MB, over the 1\.0 MB limit for unpacked content", str(caught.value)
    )


def test_docx_dense_in_xml_tags_is_skipped(tmp_path: Path) -> None:
    # Half a megabyte of one-word paragraphs: ~100k tags, python-docx's cost, in 0.5 MB.
    path = bombs.docx_bomb(tmp_path / "dense.docx", MB // 2, paragraph_chars=4)
    with pytest.raises(SkipFile, match=r"more than 31,250 XML tags"):
        parse_file(path, path.read_bytes(), max_unpacked_bytes=1_000_000)
    # The same document at the default limit is an ordinary document.
    doc = parse_file(path, path.read_bytes())
    assert len(doc.blocks) > 10_000


def _lying_zip(real_size: int, declared: int) -> bytes:
    """A DOCX whose document.xml says it unpacks to `declared` bytes but inflates to more."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", bombs._DOCX_TYPES)
        zf.writestr("_rels/.rels", bombs._DOCX_RELS)
        zf.writestr("word/document.xml", b"<w:p/>" * (real_size // 6))
    data = bytearray(buffer.getvalue())
    name = b"word/document.xml"
    local = data.find(b"PK\x03\x04")
    while local >= 0:
        if data[local + 30 : local + 30 + len(name)] == name:
            struct.pack_into("<I", data, local + 22, declared)
        local = data.find(b"PK\x03\x04", local + 4)
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        if data[central + 46 : central + 46 + len(name)] == name:
            struct.pack_into("<I", data, central + 24, declared)
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(data)


def test_a_zip_entry_never_yields_more_than_it_declares(tmp_path: Path) -> None:
    data = _lying_zip(real_size=6 * MB, declared=1000)
    package = zipfile.ZipFile(io.BytesIO(data))
    assert package.getinfo("word/document.xml").file_size == 1000
    # What the size check relies on: zipfile stops at the declared size and fails the CRC.
    with pytest.raises(zipfile.BadZipFile, match="CRC"):
        package.read("word/document.xml")
    path = tmp_path / "liar.docx"
    path.write_bytes(data)
    with pytest.raises(ParseError, match="corrupt DOCX"):
        parse_file(path, data)


# -- PDF -------------------------------------------------------------------------------------------


def test_pdf_page_over_its_share_of_the_limit_is_skipped(tmp_path: Path) -> None:
    path = bombs.pdf_pages(tmp_path / "page.pdf", [bombs.long_strings(2 * MB)])
    with pytest.raises(SkipFile) as caught:
        parse_file(path, path.read_bytes(), max_unpacked_bytes=4_000_000)
    assert re.fullmatch(
        r"PDF page 1 unpacks to 2\.\d MB of content, over the 1\.0 MB limit for one page "
        r"\(a quarter of the 4\.0 MB limit for unpacked content\)",
        str(caught.value),
    )


def test_pdf_stream_over_the_limit_is_skipped(tmp_path: Path) -> None:
    path = bombs.pdf_pages(tmp_path / "stream.pdf", [bombs.text_operators(3 * MB)])
    with pytest.raises(SkipFile, match=r"^PDF stream unpacks past the 2\.0 MB limit"):
        parse_file(path, path.read_bytes(), max_unpacked_bytes=2_000_000)


def test_pdf_keeps_its_other_pages_when_one_is_over_the_limit(tmp_path: Path) -> None:
    streams = [bombs.text_operators(2000, "Quarterly results"), bombs.long_strings(2 * MB)]
    path = bombs.pdf_pages(tmp_path / "mixed.pdf", streams)
    doc = parse_file(path, path.read_bytes(), max_unpacked_bytes=4_000_000)
    assert "Quarterly results" in doc.text
    assert doc.metadata["failed_pages"] == "2"


def test_pdf_text_over_the_limit_is_skipped(tmp_path: Path) -> None:
    # Six pages share one 0.9 MB stream: each page is under its limit, together they are not.
    path = bombs.pdf_pages(tmp_path / "pages.pdf", [bombs.long_strings(900_000)], [0] * 6)
    with pytest.raises(SkipFile) as caught:
        parse_file(path, path.read_bytes(), max_unpacked_bytes=4_000_000)
    assert re.fullmatch(
        r"PDF unpacks to more than 4,000,000 characters of text by page 5 of 6, over the "
        r"4\.0 MB limit for unpacked content",
        str(caught.value),
    )


# -- too many blocks -------------------------------------------------------------------------------

MANY_BLOCKS = {
    "notes.txt": "".join(f"Note {i}.\n\n" for i in range(1500)),
    "manual.md": "".join(f"# Part {i}\n\nText {i}.\n\n" for i in range(1500)),
    "manual.rst": "".join(f"Para {i}.\n\n" for i in range(1500)),
    "strings.yaml": "".join(f"key_{i}: value {i}\n" for i in range(1500)),
    "page.html": "<html><body>" + "".join(f"<p>Para {i}</p>" for i in range(1500)) + "</body>",
}


@pytest.mark.parametrize("name", sorted(MANY_BLOCKS))
def test_a_file_with_too_many_blocks_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = tmp_path / name
    path.write_text(MANY_BLOCKS[name])
    assert len(parse_file(path, path.read_bytes()).blocks) >= 1000
    monkeypatch.setattr(limits, "MAX_BLOCKS", 1000)
    with pytest.raises(SkipFile, match=r"^more than 1,000 paragraphs, headings and other blocks"):
        parse_file(path, path.read_bytes())


# -- the indexer records the reason and goes on ----------------------------------------------------


def test_indexing_records_the_bomb_and_indexes_the_rest(tmp_path: Path, embedder) -> None:
    assert IndexSettings().max_unpacked_bytes == DEFAULT_MAX_UNPACKED_BYTES == 64_000_000
    folder = tmp_path / "docs"
    folder.mkdir()
    bombs.docx_bomb(folder / "bomb.docx", 100 * MB)
    bombs.pdf_pages(folder / "bomb.pdf", [bombs.long_strings(20 * MB)])
    (folder / "notes.md").write_text("# Notes\n\nThe backup tapes rotate every quarter.\n")
    with Store.open(tmp_path / "index.db") as store:
        Indexer(store, embedder).index([folder])
        problems = {Path(p).name: (status, reason) for p, status, reason in store.problems()}
        assert store.document(str(folder / "notes.md")) is not None
    assert problems["bomb.docx"][0] == "skipped"
    assert problems["bomb.docx"][1].startswith("DOCX unpacks to 10")
    assert problems["bomb.pdf"][0] == "skipped"
    assert problems["bomb.pdf"][1].startswith("PDF page 1 unpacks to 2")
    assert "notes.md" not in problems


def test_the_unpacked_limit_setting_reaches_the_parsers(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    bombs.docx_bomb(folder / "report.docx", 3 * MB)  # fine at the default limit
    with Store.open(tmp_path / "index.db") as store:
        Indexer(store, embedder, IndexSettings(max_unpacked_bytes=1 * MB)).index([folder])
        status, reason = store.problems()[0][1:]
    assert status == "skipped" and reason.startswith("DOCX unpacks to 3")
