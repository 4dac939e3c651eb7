"""Scoring retrieval on labelled questions: the question file, what counts as a hit, and the
hit@k and MRR arithmetic on a small real index whose rankings the test knows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localrag.embedder import Embedder
from localrag.errors import ConfigError
from localrag.evaluate import (
    ABLATIONS,
    DEFAULT_KS,
    Question,
    ablate_retrieval,
    evaluate_retrieval,
    is_hit,
    load_questions,
)
from localrag.indexer import Indexer
from localrag.retrieval import Retriever, SearchResult
from localrag.store import ChunkHit, Store

# -- the question file -------------------------------------------------------------------------


def test_a_question_file_is_read_line_by_line_skipping_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"q": "How long is parental leave?", "file": "hr/leave.md", "answer": "twenty weeks"}\n'
        "\n   \n"
        '{"answer": "WireGuard", "file": "it/vpn.md", "q": "Which VPN client?", "note": "x"}\n',
        encoding="utf-8",
    )
    assert load_questions(path) == [
        Question("How long is parental leave?", "hr/leave.md", "twenty weeks"),
        Question("Which VPN client?", "it/vpn.md", "WireGuard"),
    ]


@pytest.mark.parametrize(
    "bad_line",
    [
        '{"q": "unterminated',  # not JSON
        '["q", "file", "answer"]',  # JSON, not an object
        '"just a string"',
        "null",
        '{"q": "no answer", "file": "a.md"}',
        '{"question": "wrong key", "file": "a.md", "answer": "x"}',
    ],
)
def test_a_bad_line_is_an_error_naming_the_file_and_line(tmp_path: Path, bad_line: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(
        '{"q": "a", "file": "b.md", "answer": "c"}\n\n' + bad_line + "\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_questions(path)
    assert str(caught.value).startswith(
        f"{path}:3: expected a JSON object with q, file and answer ("
    )


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_a_file_without_questions_is_an_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"q\.jsonl holds no questions$"):
        load_questions(path)


def test_a_missing_question_file_is_an_error_saying_why(tmp_path: Path) -> None:
    path = tmp_path / "missing.jsonl"
    with pytest.raises(ConfigError) as caught:
        load_questions(path)
    assert str(caught.value) == f"cannot read questions file {path}: No such file or directory"


def test_a_question_file_that_is_not_utf8_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"q": "caf\xe9?", "file": "menu.md", "answer": "espresso"}\n')
    with pytest.raises(ConfigError, match=r"q\.jsonl"):
        load_questions(path)


# -- what counts as a hit ----------------------------------------------------------------------


def _result(path: str, text: str, rank: int = 1) -> SearchResult:
    chunk = ChunkHit(
        chunk_id=1,
        document_id=1,
        path=path,
        ordinal=0,
        text=text,
        heading="",
        line_start=1,
        line_end=3,
        page_start=None,
        page_end=None,
        char_start=0,
        char_end=len(text),
        embedding_id=1,
    )
    return SearchResult(rank=rank, score=1.0, chunk=chunk)


LEAVE = _result(
    "/home/ann/handbook/hr/leave.md",
    "New parents may take up to Twenty\n   weeks away from work with full pay.",
)


@pytest.mark.parametrize(
    "file",
    [
        "leave.md",
        "hr/leave.md",
        "handbook/hr/leave.md",
        "/home/ann/handbook/hr/leave.md",
        "/hr/leave.md",  # a leading slash is not required to be the root
        "hr\\leave.md",  # written on Windows
    ],
)
def test_a_hit_comes_from_the_labelled_file_named_by_any_trailing_part(file: str) -> None:
    assert is_hit(LEAVE, Question("q", file, "twenty weeks"))


@pytest.mark.parametrize(
    "file", ["eave.md", "r/leave.md", "leave", "hr/leave.md.bak", "it/leave.md"]
)
def test_a_file_name_must_match_whole_path_components(file: str) -> None:
    assert not is_hit(LEAVE, Question("q", file, "twenty weeks"))


@pytest.mark.parametrize(
    "answer",
    ["twenty weeks", "TWENTY WEEKS", "  twenty\tweeks ", "up to twenty weeks away", "full pay."],
)
def test_the_answer_span_is_compared_with_whitespace_and_case_folded(answer: str) -> None:
    assert is_hit(LEAVE, Question("q", "hr/leave.md", answer))


def test_case_folding_goes_beyond_lowercase() -> None:
    street = _result("/docs/addresses.md", "The office is at Hauptstraße 5.")
    assert is_hit(street, Question("q", "addresses.md", "HAUPTSTRASSE 5"))


@pytest.mark.parametrize("answer", ["twenty days", "twentyweeks", "thirty weeks"])
def test_a_passage_without_the_answer_span_is_not_a_hit(answer: str) -> None:
    assert not is_hit(LEAVE, Question("q", "hr/leave.md", answer))


def test_the_answer_span_in_another_file_is_not_a_hit() -> None:
    assert not is_hit(LEAVE, Question("q", "hr/holiday.md", "twenty weeks"))


def test_a_passage_found_in_several_files_is_a_hit_for_each_of_them() -> None:
    """Search shows a passage held by two files once, the second in `also_in`."""
    copied = _result(LEAVE.path, LEAVE.chunk.text)
    copied.also_in.append("/home/ann/archive/2023/leave.md")
    assert is_hit(copied, Question("q", "archive/2023/leave.md", "twenty weeks"))
    assert is_hit(copied, Question("q", "hr/leave.md", "twenty weeks"))
    assert not is_hit(copied, Question("q", "archive/2024/leave.md", "twenty weeks"))


# -- scores on a real index --------------------------------------------------------------------

DOCS = {
    # "quokkaberry" is in two files: more often in tomatoes.md, which BM25 ranks first.
    "garden/tomatoes.md": "# Tomatoes\n\nTomatoes need six hours of sun. The quokkaberry "
    "trellis holds quokkaberry vines, and quokkaberry shoots grow quokkaberry fruit.\n",
    "garden/beans.md": "# Beans\n\nRunner beans climb the quokkaberry trellis by June, "
    "and the pods are picked young.\n",
    "kitchen/bread.md": "# Bread\n\nKnead the zorblat dough for ten minutes, then let it rise "
    "overnight in a cool kitchen.\n",
    "finance/tax.md": "# Tax\n\nThe vexillum form is due on the thirty-first of January, with "
    "receipts for every expense claimed.\n",
}
QUESTIONS = [
    Question("zorblat", "kitchen/bread.md", "knead the ZORBLAT   dough"),  # rank 1
    Question("quokkaberry", "garden/beans.md", "runner beans"),  # rank 2
    Question("vexillum form", "finance/tax.md", "due on the first of March"),  # no such span
    Question("vexillum", "tax.md", "thirty-first of january"),  # rank 1
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Store]:
    root = tmp_path_factory.mktemp("evaluate") / "docs"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    store = Store.open(root.parent / "index.db")
    Indexer(store, embedder).index([root])
    yield store
    store.close()


def test_the_rankings_the_scores_below_rely_on(index: Store, embedder: Embedder) -> None:
    retriever = Retriever(index, embedder)
    paths = [r.path for r in retriever.search("quokkaberry", 10, mode="keyword")]
    assert [Path(p).name for p in paths] == ["tomatoes.md", "beans.md"]
    for query, name in (("zorblat", "bread.md"), ("vexillum", "tax.md")):
        assert Path(retriever.search(query, 10, mode="keyword")[0].path).name == name


def test_hits_at_k_and_mrr_follow_from_the_rank_of_the_first_hit(
    index: Store, embedder: Embedder
) -> None:
    scores = evaluate_retrieval(Retriever(index, embedder), QUESTIONS, mode="keyword", ks=(1, 3))
    assert scores.mode == "keyword" and scores.questions == 4
    assert scores.hits_at == {1: 2 / 4, 3: 3 / 4}  # ranks 1, 2, none, 1
    assert scores.mrr == pytest.approx((1 + 1 / 2 + 0 + 1) / 4)
    assert scores.misses == [QUESTIONS[2]]


def test_a_hit_below_the_deepest_k_is_a_miss(index: Store, embedder: Embedder) -> None:
    scores = evaluate_retrieval(Retriever(index, embedder), QUESTIONS, mode="keyword", ks=(1,))
    assert scores.hits_at == {1: 2 / 4}
    assert scores.mrr == pytest.approx(2 / 4)
    assert scores.misses == [QUESTIONS[1], QUESTIONS[2]]


def test_the_default_is_hybrid_search_scored_at_the_default_depths(
    index: Store, embedder: Embedder
) -> None:
    scores = evaluate_retrieval(Retriever(index, embedder), [QUESTIONS[0], QUESTIONS[3]])
    assert scores.mode == "hybrid"
    assert list(scores.hits_at) == list(DEFAULT_KS)
    assert scores.hits_at == dict.fromkeys(DEFAULT_KS, 1.0) and scores.mrr == 1.0
    assert scores.misses == []


def test_ablation_scores_one_row_per_stage_removed(index: Store, embedder: Embedder) -> None:
    rows = ablate_retrieval(index, embedder, QUESTIONS)
    assert [row.label for row in rows] == [label for label, _, _ in ABLATIONS]
    assert [row.scores.mode for row in rows] == [mode for _, _, mode in ABLATIONS]
    for row in rows:
        assert row.scores.questions == 4
        assert list(row.scores.hits_at) == list(DEFAULT_KS)
        assert QUESTIONS[2] in row.scores.misses  # no stage finds a span that is not there
    keyword_only = next(row.scores for row in rows if row.label == "keywords only (BM25)")
    assert keyword_only.hits_at == {1: 0.5, 3: 0.75, 5: 0.75, 10: 0.75}
    assert keyword_only.mrr == pytest.approx(0.625)
