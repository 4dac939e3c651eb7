"""Retrieval quality on labelled questions: hit@k and mean reciprocal rank.

A question file is JSON Lines: {"q": "...", "file": "path/suffix", "answer": "substring"}.
A result is a hit when it comes from that file and its text contains that substring
(whitespace and case are normalised, since extraction reflows text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from localrag.errors import ConfigError
from localrag.retrieval import ALL_STAGES, Mode, Retriever, SearchResult, Stages

if TYPE_CHECKING:
    from localrag.embedder import Embedder
    from localrag.reranker import Reranker
    from localrag.store import Store

DEFAULT_KS = (1, 3, 5, 10)


@dataclass(frozen=True)
class Question:
    q: str
    file: str
    answer: str


@dataclass
class RetrievalScores:
    mode: Mode
    questions: int
    hits_at: dict[int, float]
    mrr: float
    misses: list[Question] = field(default_factory=list)


def load_questions(path: Path) -> list[Question]:
    """Read a JSONL question file; a bad line is an error naming the line, not a skip."""
    questions: list[Question] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read questions file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"questions file {path} is not UTF-8 text ({exc.reason})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            questions.append(Question(str(item["q"]), str(item["file"]), str(item["answer"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path}:{number}: expected a JSON object with q, file and answer ({exc})"
            ) from exc
    if not questions:
        raise ConfigError(f"{path} holds no questions")
    return questions


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def is_hit(result: SearchResult, question: Question) -> bool:
    """The passage holds the answer and comes from the question's file; a passage found in
    several files is one result (`also_in` lists the others), so any of them counts."""
    wanted = question.file.replace("\\", "/").lstrip("/")
    from_file = any(
        path == wanted or path.endswith("/" + wanted)
        for path in (p.replace("\\", "/") for p in (result.path, *result.also_in))
    )
    return from_file and _normalise(question.answer) in _normalise(result.chunk.text)


def evaluate_retrieval(
    retriever: Retriever,
    questions: Sequence[Question],
    *,
    mode: Mode = "hybrid",
    ks: Sequence[int] = DEFAULT_KS,
) -> RetrievalScores:
    depth = max(ks)
    hits = dict.fromkeys(ks, 0)
    reciprocal = 0.0
    misses: list[Question] = []
    for question in questions:
        results = retriever.search(question.q, depth, mode=mode)
        rank = next((r.rank for r in results if is_hit(r, question)), None)
        if rank is None:
            misses.append(question)
            continue
        reciprocal += 1.0 / rank
        for k in ks:
            if rank <= k:
                hits[k] += 1
    n = len(questions)
    return RetrievalScores(
        mode=mode,
        questions=n,
        hits_at={k: hits[k] / n for k in ks},
        mrr=reciprocal / n,
        misses=misses,
    )


@dataclass(frozen=True)
class Ablation:
    """Hybrid search with one stage taken away (or all of them kept), and what it scored."""

    label: str
    scores: RetrievalScores


# (label, stages, mode): each row takes one thing away from the full pipeline.
ABLATIONS: tuple[tuple[str, Stages, Mode], ...] = (
    ("all stages", ALL_STAGES, "hybrid"),
    ("without the exact lane", Stages(exact_lane=False), "hybrid"),
    ("without the keyword coverage filter", Stages(coverage_filter=False), "hybrid"),
    ("with plain fusion (RRF k=60, equal weights)", Stages(tuned_fusion=False), "hybrid"),
    ("without joining neighbouring passages", Stages(neighbour_runs=False), "hybrid"),
    ("without the keyword side (vectors only)", ALL_STAGES, "vector"),
    ("keywords only (BM25)", ALL_STAGES, "keyword"),
)


# With a reranker, one more row: the search without it.
WITHOUT_RERANKER: tuple[str, Stages, Mode] = (
    "without the reranker",
    Stages(reranking=False),
    "hybrid",
)


def ablate_retrieval(
    store: Store,
    embedder: Embedder,
    questions: Sequence[Question],
    reranker: Reranker | None = None,
) -> list[Ablation]:
    """What each stage of hybrid search buys on these questions: one row per stage removed
    (the reranker, where one is given, is a stage of every row but its own)."""
    rows = []
    ablations = (*ABLATIONS[:1], WITHOUT_RERANKER, *ABLATIONS[1:]) if reranker else ABLATIONS
    for label, stages, mode in ablations:
        retriever = Retriever(store, embedder, stages, reranker)
        rows.append(Ablation(label, evaluate_retrieval(retriever, questions, mode=mode)))
    return rows
