"""Answer quality on held-out questions: does retrieval, fine-tuning or both answer best?

The comparison of Ovadia et al. 2023 (arXiv 2312.05934) on the user's own documents: the same
questions go to the base model and the fine-tuned one, each without retrieval (the question
alone) and with it (localrag's own `ask` pipeline). Each answer is scored against the reference
answer by containment (the normalised reference appears in the answer) and token F1 (SQuAD
style), citations by precision (cited passages that come from the question's source document),
and each mode by its latency. Optionally a local judge model grades every answer as correct or
incorrect against the reference, which credits a right answer in other words.
"""

from __future__ import annotations

import json
import re
import string
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from localrag.errors import ConfigError, ModelError
from localrag.reasoning import final_answer

if TYPE_CHECKING:
    from localrag.answer import Answerer, AnswerSettings
    from localrag.embedder import Embedder
    from localrag.llm import LocalLLM
    from localrag.store import Store

CLOSED_BOOK_PROMPT = (
    "Answer the question in one or two sentences. If you do not know, say so; do not guess."
)
JUDGE_PROMPT = (
    "You grade a candidate answer against a reference answer. Reply with one word. correct: the "
    "candidate conveys the reference's facts, even in other words. incorrect: it contradicts "
    "them, leaves them out, or says it does not know."
)
# The verdict is forced, so even a small judge cannot ramble or answer something unparseable.
JUDGE_GRAMMAR = 'root ::= "correct" | "incorrect"'
# Judge tokens per part: a long answer must not push the instructions out of the context.
JUDGE_PART_TOKENS = {"question": 512, "reference": 512, "candidate": 1024}


@dataclass(frozen=True)
class HeldOutQuestion:
    question: str
    answer: str  # the reference answer: short, what a correct answer must contain
    document: str | None = None  # path (or path suffix) of the document that answers it


@dataclass
class ModeScores:
    """One row of the comparison: a model, with or without retrieval."""

    mode: str
    questions: int = 0
    containment: float = 0.0
    f1: float = 0.0
    citation_precision: float | None = None  # None: no citations to judge (closed book)
    seconds_per_answer: float = 0.0
    answers: list[str] = field(default_factory=list)
    judge: float | None = None  # share judged correct; None: no judge model was asked
    verdicts: list[bool] = field(default_factory=list)  # one per answer, when judged


# -- questions ------------------------------------------------------------------------------------


def load_held_out(path: Path) -> list[HeldOutQuestion]:
    """Questions from JSONL: localrag's dataset test split, or {"question", "answer"} lines.

    A dataset example's reference is its `final_answer` when it has one (the RAFT answer
    also holds reasoning and quotes); its document is its oracle's path.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    questions: list[HeldOutQuestion] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        question = item.get("question") or item.get("q") if isinstance(item, dict) else None
        answer = (
            (item.get("final_answer") or item.get("answer")) if isinstance(item, dict) else None
        )
        if not isinstance(question, str) or not isinstance(answer, str) or not answer.strip():
            raise ConfigError(f"{path}:{number}: expected an object with question and answer")
        document = item.get("document") or item.get("file")
        oracle = item.get("oracle")
        if document is None and isinstance(oracle, dict):
            document = oracle.get("path")
        questions.append(HeldOutQuestion(question, answer, str(document) if document else None))
    if not questions:
        raise ConfigError(f"{path} holds no questions")
    return questions


# -- scoring --------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise_answer(text: str) -> str:
    """Lower case, no punctuation or articles, single spaces (the SQuAD normalisation)."""
    text = _ARTICLES.sub(" ", text.casefold().translate(_PUNCTUATION))
    return " ".join(text.split())


def contains_answer(prediction: str, reference: str) -> bool:
    wanted = normalise_answer(reference)
    return bool(wanted) and f" {wanted} " in f" {normalise_answer(prediction)} "


def token_f1(prediction: str, reference: str) -> float:
    predicted = normalise_answer(prediction).split()
    wanted = normalise_answer(reference).split()
    common = sum((Counter(predicted) & Counter(wanted)).values())
    if not predicted or not wanted or not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def citation_precision(cited_paths: Sequence[str], document: str | None) -> float | None:
    """Share of cited passages from the question's document; None when nothing can be judged."""
    if document is None or not cited_paths:
        return None
    return sum(1 for p in cited_paths if p.endswith(document)) / len(cited_paths)


# -- running --------------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]


# A pre-trained base model (a GGUF without a chat template) continues text and follows
# examples, not instructions; given a chat prompt it echoes the chat markup. So it is asked in
# the form it continues: worked examples, then the open question, and its first line is its
# answer. With retrieval, the examples show numbered sources and a citation.
BASE_CLOSED_BOOK_EXAMPLES = (
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What does a barometer measure?", "A barometer measures air pressure."),
)
BASE_RAG_EXAMPLE = (
    "Sources:\n[1] handbook.md (lines 4-6)\nThe library opens at 9 am on weekdays and at 10 am "
    "on Saturdays.\n[2] handbook.md (lines 9-10)\nBooks are lent for three weeks.\n\n"
    "Question: When does the library open on Saturdays?\nAnswer: At 10 am [1].\n\n"
)
# Sources a base model is shown (the product shows a base model's user this many passages),
# each cut to this many characters: a small base model loses the question behind long ones.
BASE_RAG_PASSAGES = 3
BASE_PASSAGE_CHARS = 1200


def base_prompt(question: str, sources: Sequence[tuple[str, str]] = ()) -> str:
    """The text a base model continues: examples, the (label, text) sources, the question."""
    if not sources:
        shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in BASE_CLOSED_BOOK_EXAMPLES)
        return f"{shots}Question: {question}\nAnswer:"
    listed = "\n".join(
        f"[{number}] {label}\n{' '.join(text.split())[:BASE_PASSAGE_CHARS]}"
        for number, (label, text) in enumerate(sources, start=1)
    )
    return f"{BASE_RAG_EXAMPLE}Sources:\n{listed}\n\nQuestion: {question}\nAnswer:"


def first_line(llm: LocalLLM, prompt: str, max_tokens: int) -> str:
    """What a base model writes up to its first line break (generation stops there)."""
    text = ""
    stream = llm.stream(llm.text_prompt(prompt), max_tokens=max_tokens, temperature=0.0)
    try:
        for piece in stream:
            text += piece
            if "\n" in text.lstrip():
                break
    finally:
        stream.close()  # stops the model at once
    return text.strip().split("\n", 1)[0].strip()


def closed_book_answer(llm: LocalLLM, question: str, max_tokens: int) -> str:
    if llm.is_base_model:
        return first_line(llm, base_prompt(question), max_tokens)
    prompt = llm.chat_prompt(
        [{"role": "system", "content": CLOSED_BOOK_PROMPT}, {"role": "user", "content": question}]
    )
    # A model fine-tuned on RAFT examples may reason first here too; its answer is what is scored.
    return final_answer(llm.complete(prompt.tokens, max_tokens=max_tokens, temperature=0.0))


def evaluate_answers(
    questions: Sequence[HeldOutQuestion],
    models: dict[str, LocalLLM],
    store: Store,
    embedder: Embedder,
    *,
    max_tokens: int = 256,  # room for RAFT reasoning before the answer
    progress: Progress | None = None,
    settings: AnswerSettings | None = None,
) -> list[ModeScores]:
    """Each model without and with retrieval, on the same questions, in a fixed order."""
    rows: list[ModeScores] = []
    for label, llm in models.items():
        rows += evaluate_model(
            label,
            llm,
            questions,
            store,
            embedder,
            max_tokens=max_tokens,
            progress=progress,
            settings=settings,
        )
    return rows


def evaluate_model(
    label: str,
    llm: LocalLLM,
    questions: Sequence[HeldOutQuestion],
    store: Store,
    embedder: Embedder,
    *,
    max_tokens: int = 256,  # room for RAFT reasoning before the answer
    progress: Progress | None = None,
    settings: AnswerSettings | None = None,
) -> list[ModeScores]:
    """One model's two rows: closed book, then with localrag's retrieval, answering as `ask`
    does with these settings (the CLI passes the user's `[answer]` settings)."""
    from localrag.answer import Answerer

    rows: list[ModeScores] = []
    for with_rag in (False, True):
        row = ModeScores(f"{label} + RAG" if with_rag else label)
        answerer = Answerer(store, embedder, llm, settings) if with_rag else None
        precisions: list[float] = []
        started = time.perf_counter()
        for index, item in enumerate(questions):
            if progress:
                progress(row.mode, index, len(questions))
            cited: list[str] = []  # paths of the passages the answer cites
            if answerer is None:
                text = closed_book_answer(llm, item.question, max_tokens)
            elif llm.is_base_model:  # `ask` would show it passages only: prompt it as above
                text, cited = base_rag_answer(answerer, llm, item.question, max_tokens)
            else:
                answer = answerer.ask(item.question)
                text = answer.read()  # a fine-tuned model's ##Reason: part is not in it
                cited = [s.path for s in answer.cited]
            score = citation_precision(cited, item.document)
            if score is not None:  # None: nothing cited (closed book, or no citation)
                precisions.append(score)
            row.answers.append(text)
            row.containment += contains_answer(text, item.answer)
            row.f1 += token_f1(text, item.answer)
        count = max(1, len(questions))
        row.questions = len(questions)
        row.containment /= count
        row.f1 /= count
        row.seconds_per_answer = (time.perf_counter() - started) / count
        row.citation_precision = sum(precisions) / len(precisions) if precisions else None
        rows.append(row)
    return rows


def base_rag_answer(
    answerer: Answerer, llm: LocalLLM, question: str, max_tokens: int
) -> tuple[str, list[str]]:
    """A base model's answer from the passages `ask` retrieves, and the paths it cited."""
    from localrag.citations import check_citations

    found = answerer.ask(question, generate=False)
    sources = found.sources[:BASE_RAG_PASSAGES]
    if found.mode != "extractive" or not sources:
        return found.read(), []  # nothing relevant, or a collection question: as `ask` says
    labelled = [(f"{s.passage.path} ({s.location})", s.passage.text) for s in sources]
    text = first_line(llm, base_prompt(question, labelled), max_tokens)
    _checked, numbers, _invalid = check_citations(text, range(1, len(sources) + 1))
    return text, [sources[n - 1].path for n in numbers]


# -- judging --------------------------------------------------------------------------------------


def judge_messages(
    judge: LocalLLM, question: str, reference: str, candidate: str
) -> list[dict[str, str]]:
    parts = {"question": question, "reference": reference, "candidate": candidate}
    cut = {name: judge.truncate(text, JUDGE_PART_TOKENS[name]) for name, text in parts.items()}
    user = (
        f"Question: {cut['question']}\n"
        f"Reference answer: {cut['reference']}\n"
        f"Candidate answer: {cut['candidate']}"
    )
    return [{"role": "system", "content": JUDGE_PROMPT}, {"role": "user", "content": user}]


def parse_verdict(text: str) -> bool:
    """True for "correct", False for "incorrect"; anything else means the grammar was not kept."""
    verdict = text.strip().casefold()
    if verdict not in ("correct", "incorrect"):
        raise ModelError(f"the judge replied {text!r} instead of correct or incorrect")
    return verdict == "correct"


def judge_answer(judge: LocalLLM, question: str, reference: str, candidate: str) -> bool:
    prompt = judge.chat_prompt(judge_messages(judge, question, reference, candidate))
    # "incorrect" is a few tokens even in a small vocabulary; 16 leaves room for any tokenizer.
    text = judge.complete(prompt.tokens, max_tokens=16, temperature=0.0, grammar=JUDGE_GRAMMAR)
    return parse_verdict(text)


def judge_rows(
    rows: Sequence[ModeScores],
    questions: Sequence[HeldOutQuestion],
    judge: LocalLLM,
    *,
    progress: Progress | None = None,
) -> None:
    """Grade every answer of every row, after answering, so only the judge needs to be loaded."""
    # Checked first: a mismatch found after minutes of judging would waste them.
    for row in rows:
        if len(row.answers) != len(questions):
            raise ValueError(f"{row.mode}: {len(row.answers)} answers, {len(questions)} questions")
    for row in rows:
        row.verdicts = []
        for index, (item, answer) in enumerate(zip(questions, row.answers, strict=True)):
            if progress:
                progress(row.mode, index, len(questions))
            row.verdicts.append(judge_answer(judge, item.question, item.answer, answer))
        row.judge = sum(row.verdicts) / max(1, len(row.verdicts))


# -- reporting ------------------------------------------------------------------------------------


def scores_json(rows: Sequence[ModeScores]) -> list[dict[str, object]]:
    return [
        {
            "mode": r.mode,
            "questions": r.questions,
            "containment": round(r.containment, 4),
            "f1": round(r.f1, 4),
            "citation_precision": None
            if r.citation_precision is None
            else round(r.citation_precision, 4),
            "seconds_per_answer": round(r.seconds_per_answer, 3),
            "judge": None if r.judge is None else round(r.judge, 4),
            "verdicts": None
            if r.judge is None
            else ["correct" if v else "incorrect" for v in r.verdicts],
            "answers": r.answers,  # in question order, so each can be read beside its verdict
        }
        for r in rows
    ]


def chart_svg(rows: Sequence[ModeScores], title: str = "Answer quality by mode") -> str:
    """A grouped bar chart (containment, F1, citation precision, judge if any) as standalone SVG."""
    metrics = [("containment", "#4c78a8"), ("F1", "#f58518"), ("citation precision", "#54a24b")]
    judged = any(r.judge is not None for r in rows)
    if judged:
        metrics.append(("judge", "#b279a2"))
    bar, left, top, height = 36, 60, 50, 220
    group_width = len(metrics) * (bar + 4) + 30
    width = left + max(group_width * max(1, len(rows)), 150 * len(metrics)) + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + height + 90}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="24" font-size="16">{_escape(title)}</text>',
    ]
    for tick in range(0, 11, 2):
        y = top + height - tick / 10 * height
        parts.append(
            f'<line x1="{left - 4}" y1="{y}" x2="{width - 20}" y2="{y}" stroke="#ddd"/>'
            f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{tick / 10:.1f}</text>'
        )
    for index, row in enumerate(rows):
        x0 = left + index * group_width + 10
        values = [row.containment, row.f1, row.citation_precision] + ([row.judge] if judged else [])
        for offset, ((_, colour), value) in enumerate(zip(metrics, values, strict=True)):
            if value is None:
                continue
            h = value * height
            parts.append(
                f'<rect x="{x0 + offset * (bar + 4)}" y="{top + height - h:.1f}" width="{bar}" '
                f'height="{h:.1f}" fill="{colour}"><title>{value:.3f}</title></rect>'
            )
        parts.append(
            f'<text x="{x0 + (len(metrics) * (bar + 4)) / 2}" y="{top + height + 18}" '
            f'text-anchor="middle">{_escape(row.mode)}</text>'
        )
    for offset, (name, colour) in enumerate(metrics):
        x = left + offset * 150
        parts.append(
            f'<rect x="{x}" y="{top + height + 40}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{x + 18}" y="{top + height + 50}">{name}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
