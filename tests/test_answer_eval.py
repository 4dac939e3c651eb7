"""Scoring answers against references, and the four-way comparison on a real index and model."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner

from localrag.answer_eval import (
    JUDGE_PROMPT,
    HeldOutQuestion,
    ModeScores,
    chart_svg,
    citation_precision,
    contains_answer,
    evaluate_answers,
    judge_answer,
    judge_rows,
    load_held_out,
    normalise_answer,
    parse_verdict,
    scores_json,
    token_f1,
)
from localrag.cli import cli
from localrag.errors import ConfigError, ModelError
from localrag.indexer import Indexer
from localrag.llm import LLMSettings, LocalLLM
from localrag.models.registry import ModelRegistry
from localrag.store import Store
from tests.helpers.handbook import write_handbook
from tests.helpers.llm import ScriptedLLM


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
    # The tuned model answers RAFT-style; only what follows ##Answer: is scored. Its second
    # closed-book reasoning names the reference, which must not count as answering.
    tuned = model(
        "##Reason: I recall ##begin_quote##twenty weeks##end_quote##\n##Answer: Twenty weeks.",
        "##Reason: perhaps ##begin_quote##every quarter##end_quote##\n##Answer: No idea.",
        "##Reason: source [1] says ##begin_quote##twenty weeks##end_quote##\n"
        "##Answer: Twenty weeks [1].",
        "Every quarter [2].",
    )
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
    assert table["fine-tuned"].answers == ["Twenty weeks.", "No idea."]
    assert table["fine-tuned + RAG"].answers[0] == "Twenty weeks [1]."
    assert table["fine-tuned + RAG"].containment == 1.0
    # The tapes question had one source: the invented [2] is dropped, not counted as a citation.
    assert table["fine-tuned + RAG"].answers[1] == "Every quarter."
    assert table["fine-tuned + RAG"].citation_precision == 1.0
    assert all(r.seconds_per_answer > 0 for r in rows)
    assert [row["mode"] for row in scores_json(rows)] == list(table)
    assert scores_json(rows)[2]["answers"] == ["Twenty weeks.", "No idea."]
    svg = chart_svg(rows)
    bars = ElementTree.fromstring(svg).findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == 3 + 4 * 2 + 2  # legend, two metrics per mode, citations for RAG rows


def test_a_base_model_is_asked_in_the_form_it_continues(
    tmp_path: Path, embedder, gemma_gguf
) -> None:  # type: ignore[no-untyped-def]
    """Gemma 3 270M, a real pre-trained model without a chat template: a chat prompt made it
    echo the chat markup, and `ask` gives a base model's user passages only. Measured, it is
    asked with worked examples (and the retrieved sources) and answers in one line."""
    from localrag.answer_eval import evaluate_model

    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([write_handbook(tmp_path / "handbook")])
    settings = LLMSettings(n_ctx=2048, temperature=0.0)
    llm = LocalLLM.load(gemma_gguf, settings)
    try:
        assert llm.is_base_model
        with Store.open(db) as store:
            rows = evaluate_model("base", llm, QUESTIONS, store, embedder, max_tokens=64)
    finally:
        llm.close()
    closed, with_sources = rows
    for answer in closed.answers + with_sources.answers:
        assert answer and "\n" not in answer  # its first line, generation stopped there
        assert "<" not in answer and "Question:" not in answer  # no markup, no next example
    # Not the passages themselves (what `ask` shows): the tapes passage starts "Backup tapes
    # are rotated", the model's answer is its own words, and right.
    assert with_sources.answers[1] == "Every quarter."
    assert with_sources.containment == 0.5
    assert closed.containment == 0.0  # it cannot know the handbook


# -- the judge ------------------------------------------------------------------------------------

QUESTIONS = [
    HeldOutQuestion("How long can new parents take leave?", "twenty weeks", "hr/leave.md"),
    HeldOutQuestion("How often are backup tapes rotated?", "every quarter", "backups.md"),
]
SVG = "{http://www.w3.org/2000/svg}"


def test_parse_verdict() -> None:
    assert parse_verdict("correct") is True
    assert parse_verdict(" Incorrect\n") is False
    with pytest.raises(ModelError, match="instead of correct or incorrect"):
        parse_verdict("mostly correct")


def test_judge_scores_are_the_share_of_correct_verdicts(tiny_gguf) -> None:  # type: ignore[no-untyped-def]
    settings = LLMSettings(n_ctx=1024, temperature=0.0)
    judge = ScriptedLLM(
        LocalLLM.load(tiny_gguf["q4_k_m"], settings), "correct", "incorrect", "incorrect", "correct"
    )
    rows = [
        ModeScores("base", questions=2, answers=["Twenty weeks.", "I do not know."]),
        ModeScores("base + RAG", questions=2, answers=["Six months [1].", "Quarterly [1]."]),
    ]
    try:
        judge_rows(rows, QUESTIONS, judge)
    finally:
        judge.close()
    assert [r.verdicts for r in rows] == [[True, False], [False, True]]
    assert [r.judge for r in rows] == [0.5, 0.5]
    assert [r["verdicts"] for r in scores_json(rows)] == [
        ["correct", "incorrect"],
        ["incorrect", "correct"],
    ]
    # Each prompt holds the instructions, the question, the reference and that very answer.
    prompts = [judge.text(i) for i in range(4)]
    answers = [a for r in rows for a in r.answers]
    for prompt, item, answer in zip(prompts, QUESTIONS * 2, answers, strict=True):
        assert JUDGE_PROMPT in prompt
        assert f"Question: {item.question}" in prompt
        assert f"Reference answer: {item.answer}" in prompt
        assert prompt.rstrip().count(f"Candidate answer: {answer}") == 1
    svg = ElementTree.fromstring(chart_svg(rows))
    # A legend of four (judge included); per row containment, F1, judge (no citation precision).
    assert len(svg.findall(f"{SVG}rect")) == 4 + 2 * 3


def test_judge_rejects_a_reply_that_is_not_a_verdict(tiny_gguf) -> None:  # type: ignore[no-untyped-def]
    judge = ScriptedLLM(LocalLLM.load(tiny_gguf["q4_k_m"], LLMSettings(n_ctx=1024)), "maybe")
    try:
        with pytest.raises(ModelError, match="'maybe'"):
            judge_answer(judge, "Q?", "twenty weeks", "Twenty weeks.")
    finally:
        judge.close()


def test_judge_grammar_forces_a_verdict_from_a_random_model(tiny_gguf) -> None:  # type: ignore[no-untyped-def]
    """Unscripted: the tiny model's own reply, held to the judge's grammar by llama.cpp."""
    judge = LocalLLM.load(tiny_gguf["q4_k_m"], LLMSettings(n_ctx=1024, temperature=0.0))
    try:
        verdicts = {judge_answer(judge, q.question, q.answer, "No idea.") for q in QUESTIONS}
    finally:
        judge.close()
    assert verdicts <= {True, False}


@pytest.fixture
def eval_setup(tmp_path: Path, embedder, models_root: Path, tiny_gguf) -> list[str]:  # type: ignore[no-untyped-def]
    """An index of the handbook, three questions and an installed model: the CLI's arguments."""
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([write_handbook(tmp_path / "handbook")])
    questions = tmp_path / "questions.jsonl"
    extra = HeldOutQuestion("Where do visitors park?", "level one", "facilities/parking.md")
    lines = [json.dumps(q.__dict__) for q in [*QUESTIONS, extra]]
    questions.write_text("\n".join(lines) + "\n")
    ModelRegistry().import_file(tiny_gguf["q4_k_m"], name="tiny-base")
    return [
        *("eval", "answers", str(questions), "--db", str(db)),
        *("--embedder", str(models_root / "embedders" / "all-MiniLM-L6-v2")),
        *("--base", "tiny-base", "--finetuned", str(tiny_gguf["q8_0"])),
        *("--max-tokens", "6", "--limit", "2"),
    ]


def _run(args: list[str]) -> str:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_judge_column_and_json(eval_setup: list[str], tmp_path: Path) -> None:
    chart = tmp_path / "chart.svg"
    judged = [*eval_setup, "--judge", "tiny-base"]
    report = json.loads(_run([*judged, "--json", "--chart", str(chart)]))
    assert report["questions"] == 2 and report["judge"] == "tiny-base"
    modes = report["modes"]
    assert [m["mode"] for m in modes] == ["base", "base + RAG", "fine-tuned", "fine-tuned + RAG"]
    for mode in modes:
        assert 0.0 <= mode["judge"] <= 1.0
        assert len(mode["verdicts"]) == 2 and set(mode["verdicts"]) <= {"correct", "incorrect"}
        assert mode["judge"] == mode["verdicts"].count("correct") / 2
    bars = ElementTree.fromstring(chart.read_text()).findall(f"{SVG}rect")
    legend = [b for b in bars if b.get("width") == "12"]
    assert len(legend) == 4
    assert sum(b.get("fill") == "#b279a2" for b in bars) == 1 + 4  # the legend and every mode

    table = _run(judged)
    header = next(line for line in table.splitlines() if "contains answer" in line)
    assert header.rstrip(" │┃").endswith("judge")
    assert "judge: share of answers tiny-base graded correct" in table


def test_cli_without_judge(eval_setup: list[str]) -> None:
    report = json.loads(_run([*eval_setup, "--json"]))
    assert report["judge"] is None
    assert all(m["judge"] is None and m["verdicts"] is None for m in report["modes"])
    table = _run(eval_setup)
    assert "contains answer" in table and "judge" not in table


def test_cli_unknown_judge_fails_before_answering(eval_setup: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [*eval_setup, "--judge", "no-such-judge"])
    assert result.exit_code != 0
    assert "no language model named 'no-such-judge'; installed: tiny-base" in result.output
    # Checked before the index is even opened: a missing index is not what gets reported.
    missing_db = [*eval_setup, "--db", str(tmp_path / "none.db"), "--judge", "no-such-judge"]
    result = CliRunner().invoke(cli, missing_db)
    assert result.exit_code != 0 and "'no-such-judge'" in result.output
