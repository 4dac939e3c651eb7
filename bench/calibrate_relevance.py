"""Calibrate the "nothing relevant enough" gate of `localrag ask` on a real index.

On-topic questions (bench/questions/*.jsonl, written for the indexed corpus) should pass the
gate; off-topic questions (below: everyday subjects absent from a software manual) should not.
Prints, for a range of similarity floors, the share of each that passes, using the same rule
as `Answerer._is_relevant` (vector cosine ≥ floor, or a keyword hit covering the question).

    python bench/calibrate_relevance.py --db /path/to/postgres.db
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from localrag.answer import Answerer, AnswerSettings
from localrag.embedder import load_embedder
from localrag.store import Store

OFF_TOPIC = [
    "What is the capital of Australia?",
    "How long should I boil an egg for a soft yolk?",
    "Who won the football world cup in 1998?",
    "What are the symptoms of iron deficiency anaemia?",
    "How do I file for divorce in California?",
    "What is the best fertiliser for tomato plants?",
    "How many moons does Jupiter have?",
    "What is the plot of Pride and Prejudice?",
    "How do I change a flat tyre on a bicycle?",
    "What is the recommended daily intake of vitamin D?",
    "When did the Roman empire fall?",
    "How do I train a puppy to sit?",
    "What is the tax-free allowance for a pension in the UK?",
    "Which wine goes well with grilled salmon?",
    "How does photosynthesis work in plants?",
    "What is a good stretching routine for runners?",
    "How do I knit a scarf for beginners?",
    "What are the rules of cricket?",
    "Who painted the Mona Lisa?",
    "How much does a kilogram of gold cost?",
    "What should I pack for a hiking trip in the Alps?",
    "How do vaccines train the immune system?",
    "What is the difference between a violin and a viola?",
    "How do I get rid of mould in a bathroom?",
    "What causes the northern lights?",
    "Which breed of cat sheds the least?",
    "How do I make sourdough starter?",
    "What does a notary public do?",
    "How many calories are in a banana?",
    "What is the tallest mountain in Africa?",
    "How should I store fresh basil?",
    "What is the treatment for a sprained ankle?",
    "Who wrote the theory of general relativity?",
    "How do I apply for a passport renewal?",
    "What is the boiling point of water at high altitude?",
    "What are good exercises for lower back pain?",
    "How did the stock market crash of 1929 start?",
    "What is the life cycle of a butterfly?",
    "Which planets have rings?",
    "How do I remove a red wine stain from carpet?",
]


def passes(answerer: Answerer, question: str) -> tuple[float, bool]:
    """(best cosine among the results, whether any result is a covering keyword hit)."""
    results = answerer.retriever.search(question, answerer.settings.candidates)
    best = max((r.vector_score or 0.0 for r in results), default=0.0)
    keyword = any(r.keyword_score is not None for r in results)
    return best, keyword


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--questions", type=Path, default=Path("bench/questions/postgresql.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/relevance.json"))
    args = parser.parse_args()
    on_topic = [json.loads(line)["q"] for line in args.questions.read_text().splitlines() if line]
    with Store.open(args.db, create=False) as store:
        answerer = Answerer(store, load_embedder(None), None, AnswerSettings())
        on = [passes(answerer, q) for q in on_topic]
        off = [passes(answerer, q) for q in OFF_TOPIC]
    rows = []
    for floor in (0.20, 0.25, 0.30, 0.35, 0.40):
        on_rate = sum(best >= floor or kw for best, kw in on) / len(on)
        off_rate = sum(best >= floor or kw for best, kw in off) / len(off)
        rows.append({"floor": floor, "on_topic_pass": on_rate, "off_topic_pass": off_rate})
        print(f"floor {floor:.2f}: on-topic pass {on_rate:.1%}, off-topic pass {off_rate:.1%}")
    print("off-topic keyword hits:", sum(kw for _, kw in off), "of", len(off))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"db": str(args.db), "on": len(on), "off": len(off), "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
