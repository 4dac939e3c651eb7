"""Scoring answers against references, and the four-way comparison on a real index and model."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

from localrag.answer_eval import (
    HeldOutQuestion,
    chart_svg,
    citation_precision,
    contains_answer,
    evaluate_answers,
    load_held_out,
    normalise_answer,
    scores_json,
    token_f1,
)
from localrag.errors import ConfigError
from localrag.indexer import Indexer
from localrag.llm import LLMSettings, LocalLLM
from localrag.store import Store
from tests.handbook import write_handbook
from tests.helpers_llm import ScriptedLLM


def test_normalisation_and_containment() -> None:
    assert normalise_answer("The  VPN, disconnects!") == "vpn disconnects"
    assert contains_answer("It disconnects after Twelve hours.", "twelve hours")
    assert not contains_answer("It disconnects after twelve-ish hours.", "twelve hours")
    assert not contains_answer("anything", "the")  # a reference of only articles matches nothing


def test_token_f1() -> None:
    assert token_f1("twenty weeks of leave", "twenty weeks") == pytest.approx(2 * 0.5 / 1.5)
    assert token_f1("nothing shared", "twenty weeks") == 0.0
    assert token_f1("Twenty weeks.", "twenty weeks") == 1.0


def test_citation_precision() -> None:
    assert citation_precision(["/d/hr/leave.md", "/d/it/vpn.md"], "hr/leave.md") == 0.5
    assert citation_precision([], "hr/leave.md") is None
    assert citation_precision(["/d/hr/leave.md"], None) is None


def test_held_out_questions_from_both_formats(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    lines = [
        {"question": "How long is leave?", "answer": "twenty weeks", "document": "hr/leave.md"},
        {
            "question": "When are tapes rotated?",
            "answer": "##begin_quote##…##end_quote## Every quarter [1].",
            "final_answer": "every quarter",
            "oracle": {"path": "/d/security/backups.md"},
        },
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    first, second = load_held_out(path)
    assert first == HeldOutQuestion("How long is leave?", "twenty weeks", "hr/leave.md")
    assert second.answer == "every quarter" and second.document == "/d/security/backups.md"
    path.write_text('{"question": "no answer"}\n')
    with pytest.raises(ConfigError, match=r"q\.jsonl:1: expected an object"):
        load_held_out(path)


def test_four_way_comparison_on_a_real_index(tmp_path: Path, embedder, tiny_gguf) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([write_handbook(tmp_path / "handbook")])
    questions = [
        HeldOutQuestion("How long can new parents take leave?", "twenty weeks", "hr/leave.md"),
        HeldOutQuestion("How often are backup tapes rotated?", "every quarter", "backups.md"),
    ]
    settings = LLMSettings(n_ctx=1024, max_tokens=48, temperature=0.0)

    def model(*answers: str) -> ScriptedLLM:
        return ScriptedLLM(LocalLLM.load(tiny_gguf["q4_k_m"], settings), *answers)

    # "base" knows nothing without sources; "tuned" learned one fact; with retrieval both cite.
    base = model("I do not know.", "I do not know.", "Twenty weeks [1].", "Every quarter [1].")
    tuned = model("Twenty weeks.", "No idea.", "Twenty weeks [1].", "Every quarter [2].")
    with Store.open(db) as store:
        rows = evaluate_answers(questions, {"base": base, "fine-tuned": tuned}, store, embedder)
    base.close()
    tuned.close()
    table = {r.mode: r for r in rows}
    assert list(table) == ["base", "base + RAG", "fine-tuned", "fine-tuned + RAG"]
    assert table["base"].containment == 0.0 and table["base"].citation_precision is None
    assert table["base + RAG"].containment == 1.0
    assert table["base + RAG"].citation_precision == 1.0
    assert table["fine-tuned"].containment == 0.5
    assert table["fine-tuned + RAG"].containment == 1.0
    # The tapes question had one source: the invented [2] is dropped, not counted as a citation.
    assert table["fine-tuned + RAG"].answers[1] == "Every quarter."
    assert table["fine-tuned + RAG"].citation_precision == 1.0
    assert all(r.seconds_per_answer > 0 for r in rows)
    assert [row["mode"] for row in scores_json(rows)] == list(table)
    svg = chart_svg(rows)
    bars = ElementTree.fromstring(svg).findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == 3 + 4 * 2 + 2  # legend, two metrics per mode, citations for RAG rows
