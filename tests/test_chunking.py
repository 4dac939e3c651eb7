"""Chunking with the real MiniLM tokenizer: limits, structure, overlap, exact positions."""

from __future__ import annotations

import random
import re
from itertools import pairwise
from pathlib import Path

import pytest

from localrag.chunking import MAX_CHARS_PER_TOKEN, chunk_document
from localrag.documents import Block, ParsedDocument
from localrag.parsers import parse_file
from tests.helpers.chunks import COUNTER, check, check_lines, doc_of
from tests.helpers.tokenizer import MiniLMCounter


class PlainCounter:
    """Only `count` (no batch method), tallying the characters it is asked to tokenize."""

    def __init__(self) -> None:
        self.inner = MiniLMCounter()
        self.chars = 0
        self.calls = 0

    def count(self, text: str) -> int:
        self.calls += 1
        self.chars += len(text)
        return self.inner.count(text)


class LumpyCounter:
    """Not additive at all: every blank line costs 5 tokens, so sums underestimate."""

    def count(self, text: str) -> int:
        return len(text.split()) + 5 * text.count("\n\n")


def sentences(rng: random.Random, n: int) -> str:
    words = ("alpha", "beta", "gamma", "delta", "retrieval", "index", "chunk", "vector", "query")
    return " ".join(
        " ".join(rng.choice(words) for _ in range(rng.randint(5, 18))).capitalize() + "."
        for _ in range(n)
    )


def test_small_blocks_merge_within_a_heading_but_never_across(tmp_path: Path) -> None:
    src = "# A\n\none.\n\ntwo.\n\nthree.\n\n# B\n\nfour.\n\n## C\n\nfive.\n"
    path = tmp_path / "m.md"
    path.write_text(src)
    doc = parse_file(path, path.read_bytes())
    chunks = chunk_document(doc, COUNTER, 128)
    check(doc, chunks, 128)
    assert [(c.heading_path, c.text) for c in chunks] == [
        (("A",), "one.\n\ntwo.\n\nthree."),
        (("B",), "four."),
        (("B", "C"), "five."),
    ]
    assert [(c.line_start, c.line_end) for c in chunks] == [(3, 7), (11, 11), (15, 15)]
    assert chunks[0].embed_text == "A\n\none.\n\ntwo.\n\nthree."
    assert chunks[0].token_count == COUNTER.count(chunks[0].embed_text)


def test_long_paragraph_splits_at_sentences_with_overlap() -> None:
    text = sentences(random.Random(1), 60)
    doc = doc_of([(text, ("Guide",), None)])
    chunks = chunk_document(doc, COUNTER, 96, overlap_tokens=24)
    check(doc, chunks, 96)
    assert len(chunks) >= 5
    for a, b in pairwise(chunks):
        assert a.text.endswith("."), "cuts fall after a sentence"
        # The next piece starts by repeating the previous piece's last sentence(s).
        assert b.char_start < a.char_end
        repeated = doc.text[b.char_start : a.char_end]
        assert a.text.endswith(repeated) and b.text.startswith(repeated)
        assert 0 < COUNTER.count(repeated) <= 24
    # Without overlap, pieces tile the paragraph exactly.
    plain = chunk_document(doc, COUNTER, 96, overlap_tokens=0)
    assert " ".join(c.text for c in plain) == text


def test_no_overlap_between_different_blocks() -> None:
    rng = random.Random(2)
    doc = doc_of([(sentences(rng, 8), ("S",), None), (sentences(rng, 8), ("S",), None)])
    chunks = chunk_document(doc, COUNTER, 200, overlap_tokens=24)
    check(doc, chunks, 200)
    for a, b in pairwise(chunks):
        assert b.char_start >= a.char_end


def test_split_code_block_reports_exact_lines(tmp_path: Path) -> None:
    body = "\n".join(f"    value_{i} = compute({i}, 'label number {i}')" for i in range(1, 400))
    src = f"# Header comment\n\ndef big():\n{body}\n    return 0\n"
    path = tmp_path / "big.py"
    path.write_text(src)
    doc = parse_file(path, path.read_bytes())
    chunks = chunk_document(doc, COUNTER, 120, overlap_tokens=16)
    check(doc, chunks, 120)
    check_lines(src, chunks)
    assert len(chunks) > 10
    for c in chunks:
        m = re.match(r"\s*value_(\d+)", c.text)
        if m:  # value_N is on line N + 3 of the file.
            assert c.line_start == int(m.group(1)) + 3
        assert c.heading_path in (("big.py",), ("big.py", "big"))
    assert chunks[-1].text.endswith("return 0")
    assert chunks[-1].line_end == src.count("\n")


def test_html_chunks_point_at_source_lines(tmp_path: Path) -> None:
    paras = "\n".join(
        f"<p>Paragraph {i} starts here.\n{sentences(random.Random(i), 3)}\nends {i}.</p>"
        for i in range(40)
    )
    src = f"<html><head><title>T</title></head><body><h1>Top</h1>\n{paras}\n</body></html>\n"
    path = tmp_path / "p.html"
    path.write_text(src)
    doc = parse_file(path, path.read_bytes())
    chunks = chunk_document(doc, COUNTER, 100)
    check(doc, chunks, 100)
    check_lines(src, chunks)


def test_crlf_source_lines_survive_chunking(tmp_path: Path) -> None:
    src = "\n\n".join(f"Paragraph {i}.\n{sentences(random.Random(i), 4)}" for i in range(30))
    path = tmp_path / "w.txt"
    path.write_bytes(src.replace("\n", "\r\n").encode())
    doc = parse_file(path, path.read_bytes())
    chunks = chunk_document(doc, COUNTER, 80)
    check(doc, chunks, 80)
    check_lines(src, chunks)


def test_huge_line_without_spaces_is_cut_by_tokens() -> None:
    rng = random.Random(5)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789+/="
    blob = "".join(rng.choice(alphabet) for _ in range(20_000))
    wordpiece_unk = "x" * 10_000  # One [UNK] token for WordPiece: the char cap must cut it.
    doc = doc_of([(blob, (), None), (wordpiece_unk, (), None)])
    chunks = chunk_document(doc, COUNTER, 64, overlap_tokens=0)
    check(doc, chunks, 64)
    assert "".join(c.text for c in chunks) == blob + wordpiece_unk
    assert max(len(c.text) for c in chunks) <= 64 * MAX_CHARS_PER_TOKEN
    assert sum(c.token_count for c in chunks) >= COUNTER.count(blob)


def test_pages_merge_only_when_a_side_is_tiny() -> None:
    rng = random.Random(9)
    doc = doc_of(
        [
            (sentences(rng, 6), (), 1),
            (sentences(rng, 6), (), 2),
            ("Runt.", (), 2),
            ("Top of three.", (), 3),
            (sentences(rng, 6), (), 3),
        ],
        fmt="pdf",
    )
    chunks = chunk_document(doc, COUNTER, 250)
    check(doc, chunks, 250)
    pages = [(c.page_start, c.page_end) for c in chunks]
    assert pages[0] == (1, 1) and pages[-1][1] == 3
    spanning = [c for c in chunks if c.page_start != c.page_end]
    assert spanning and all("Runt." in c.text or "Top of three." in c.text for c in spanning)
    assert all(c.line_start is None for c in chunks)


def test_pdf_end_to_end_pages(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    rng = random.Random(4)
    for page in range(1, 4):
        pdf.add_page()
        pdf.multi_cell(0, 5, f"Marker page{page}word. " + sentences(rng, 12))
    path = tmp_path / "r.pdf"
    path.write_bytes(bytes(pdf.output()))
    doc = parse_file(path, path.read_bytes())
    chunks = chunk_document(doc, COUNTER, 128)
    check(doc, chunks, 128)
    for page in (2, 3):
        hit = next(c for c in chunks if f"page{page}word" in c.text)
        assert hit.page_start <= page == hit.page_end
        # A page's own text is never cited as an earlier page unless a runt was merged in.
        if hit.text.startswith("Marker"):
            assert hit.page_start == page
    assert all(c.page_end - c.page_start <= 1 for c in chunks)


def test_long_heading_is_shortened_to_fit() -> None:
    path = ("Outer Part", "Middle " * 200, "Inner Section")
    doc = doc_of([("Body text here.", path, None)])
    chunks = chunk_document(doc, COUNTER, 32)
    check(doc, chunks, 32)
    assert chunks[0].heading_path == ("Inner Section",)
    giant = doc_of([("Body.", ("word " * 500,), None)])
    chunks = chunk_document(giant, COUNTER, 32)
    check(giant, chunks, 32)
    assert COUNTER.count(chunks[0].heading) <= 16


def test_empty_and_whitespace_documents() -> None:
    assert chunk_document(ParsedDocument("", [], "text"), COUNTER, 64) == []
    ws = doc_of([("   \n\t ", ("H",), None)])
    ws.blocks[0] = Block("   \n\t ", "paragraph", ("H",), 0, 6)
    assert chunk_document(ws, COUNTER, 64) == []
    with pytest.raises(ValueError):
        chunk_document(ws, COUNTER, 4)


def test_non_additive_counter_is_still_respected() -> None:
    rng = random.Random(11)
    doc = doc_of([(sentences(rng, 3).replace(". ", ".\n\n"), ("H",), None) for _ in range(20)])
    counter = LumpyCounter()
    chunks = chunk_document(doc, counter, 40)
    check(doc, chunks, 40, counter)


def test_tokenizer_work_is_linear_in_document_size() -> None:
    rng = random.Random(12)
    blocks = [(sentences(rng, rng.randint(1, 30)), (f"H{i // 7}",), None) for i in range(300)]
    doc = doc_of(blocks)
    counter = PlainCounter()
    chunks = chunk_document(doc, counter, 128)
    check(doc, chunks, 128)
    # Every character is tokenized a small constant number of times, never per chunk pair:
    # once per block, once per sentence of a block too long to keep whole, once per chunk.
    assert counter.chars <= 5 * len(doc.text)
    assert counter.calls <= doc.text.count(".") + 3 * len(chunks) + len(blocks) + 10


def random_text(rng: random.Random) -> str:
    """Awkward text: prose, CJK, emoji, code, long tokens, blank lines, odd whitespace."""
    pieces = []
    for _ in range(rng.randint(1, 16)):
        kind = rng.random()
        if kind < 0.35:
            pieces.append(sentences(rng, rng.randint(1, 6)))
        elif kind < 0.45:
            pieces.append(
                "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(rng.randint(1, 400))) + "。"
            )
        elif kind < 0.5:
            pieces.append("🙂" * rng.randint(1, 80))
        elif kind < 0.6:
            pieces.append(
                "\n".join(
                    "    x = f(y)  # " + "z" * rng.randint(0, 60) for _ in range(rng.randint(1, 30))
                )
            )
        elif kind < 0.7:
            pieces.append("".join(rng.choice("ab1-_/.") for _ in range(rng.randint(50, 3000))))
        elif kind < 0.8:
            pieces.append(rng.choice(["\n\n", "\n", "  ", "\t", "\n \n\n"]))
        elif kind < 0.9:
            pieces.append("supercalifragilistic" * rng.randint(1, 50))
        else:
            pieces.append("Ünïcödé façade — “quoted” naïve résumé! ¿Qué? ")
    return rng.choice([" ", "\n", "\n\n", ""]).join(pieces)


def test_random_documents_respect_every_guarantee() -> None:
    rng = random.Random(2024)
    for _ in range(40):
        blocks = []
        for _ in range(rng.randint(1, 6)):
            depth = rng.randint(0, 3)
            path = tuple(
                rng.choice(["Intro", "Setup " * rng.randint(1, 60), "細節", "API"])
                for _ in range(depth)
            )
            page = rng.choice([None, 1, 2])
            text = random_text(rng).strip() or "x"
            blocks.append((text, path, page))
        doc = doc_of(blocks)
        max_tokens = rng.choice([8, 16, 33, 64, 128, 254])
        overlap = rng.choice([0, 8, 24, 64])
        chunks = chunk_document(doc, COUNTER, max_tokens, overlap_tokens=overlap)
        check(doc, chunks, max_tokens)
        if overlap == 0:
            # Nothing dropped: all non-space characters come back, in order.
            got = re.sub(r"\s+", "", "".join(c.text for c in chunks))
            want = re.sub(r"\s+", "", "".join(b.text for b in doc.blocks))
            assert got == want
