"""What a reranker could buy at most: how often the answer is among the passages it reorders.

    python bench/rerank_ceiling.py QUESTIONS.jsonl --db INDEX.db [QUESTIONS --db INDEX ...]

A cross-encoder (`--reranker`) reorders the first `retrieval.RERANK_CANDIDATES` passages of
hybrid search, before neighbouring passages are joined. A perfect one would put a passage
holding the answer first whenever one is among them, so the share of questions with such a
passage there is the ceiling of hit@1 with any reranker; today's hit@5 is printed beside it.
No cross-encoder can be had from the package registries here, so this bounds what importing
one would buy on each labelled set; the README quotes it. Halves as everywhere: tuning = odd
lines, held-out = even lines.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from localrag.embedder import load_embedder  # noqa: E402
from localrag.evaluate import evaluate_retrieval, load_questions  # noqa: E402
from localrag.retrieval import RERANK_CANDIDATES, Retriever, Stages  # noqa: E402
from localrag.store import Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", help="QUESTIONS.jsonl --db INDEX.db, repeated")
    parser.add_argument("--db", action="append", type=Path, required=True)
    parser.add_argument("--embedder", default=None)
    args = parser.parse_intermixed_args()
    if len(args.pairs) != len(args.db):
        parser.error("give one --db per question file")
    embedder = load_embedder(args.embedder)
    print(f"| set | half | hit@5 now | answer among the {RERANK_CANDIDATES} reranked passages |")
    print("|---|---|---|---|")
    for questions_path, db in zip(args.pairs, args.db, strict=True):
        questions = load_questions(Path(questions_path))
        halves = {"tuning": questions[0::2], "held-out": questions[1::2]}
        with Store.open(db, create=False, read_only=True) as store:
            now = Retriever(store, embedder)
            passages = Retriever(store, embedder, Stages(neighbour_runs=False))
            for half, items in halves.items():
                today = evaluate_retrieval(now, items, ks=(5,)).hits_at[5]
                reach = evaluate_retrieval(passages, items, ks=(RERANK_CANDIDATES,))
                print(
                    f"| {Path(questions_path).stem} | {half} | {today:.3f} "
                    f"| {reach.hits_at[RERANK_CANDIDATES]:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
