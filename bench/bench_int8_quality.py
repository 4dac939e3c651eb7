"""Retrieval quality of the int8 embedder against the float32 one it was made from.

    python bench/bench_int8_quality.py [--set postgresql] [--set nodejs-api] [--set texlive-latex]
        [--scope pages|whole] [--float NAME] [--int8 NAME] [--threads N] [--keep DIR]

For each labelled set (bench/questions/*.jsonl, corpora under bench/corpora; see
bench/questions/README.md): the corpus is indexed once with the float32 model; a copy of that
index is moved to the int8 model with `localrag.reembed` (what `localrag index --reembed`
runs), so both indexes hold exactly the same passages and only the vectors differ. Then
hit@1/5/10 and MRR, hybrid and vectors only, on the whole set and on its tuning (odd lines)
and held-out (even lines) halves, as `localrag eval retrieval` computes them. Also the cosine
between each passage's float32 and int8 vector (a large real-text sample of the fidelity
`quantize-embedder` checks), and the time each embedding took.

--scope pages (default) indexes only the files the questions name (the PostgreSQL set's 84
pages: minutes on 2 cores); --scope whole indexes the whole corpus as the README's tables do
(Node.js: about 4 minutes a model, LaTeX: 7). Writes bench/results/int8_quality.txt.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe as describe_machine  # noqa: E402
from localrag.embedder import load_embedder  # noqa: E402
from localrag.evaluate import Question, evaluate_retrieval, load_questions  # noqa: E402
from localrag.indexer import Indexer  # noqa: E402
from localrag.reembed import reembed  # noqa: E402
from localrag.retrieval import Retriever  # noqa: E402
from localrag.store import Store  # noqa: E402

SETS = {
    "postgresql": "postgresql-15",
    "nodejs-api": "nodejs-18-api",
    "texlive-latex": "texlive-latex",
}
MODES = ("hybrid", "vector")


def halves(questions: list[Question]) -> dict[str, list[Question]]:
    """Whole set, tuning = odd lines (awk 'NR%2==1'), held-out = even lines."""
    return {"whole": questions, "tuning": questions[0::2], "held-out": questions[1::2]}


def corpus_for(name: str, questions: list[Question], scope: str, work: Path) -> Path:
    """The corpus folder, or a copy of just the files the questions name."""
    corpus = ROOT / "bench" / "corpora" / SETS[name]
    if not corpus.is_dir():
        sys.exit(f"no corpus at {corpus}: see bench/questions/README.md for its fetch script")
    if scope == "whole":
        return corpus
    pages = work / f"{name}-pages"
    files = [p for p in corpus.rglob("*") if p.is_file()]
    for wanted in sorted({q.file for q in questions}):
        suffix = wanted.lstrip("/")
        relative = {p: p.relative_to(corpus).as_posix() for p in files}
        # As bench/check_questions.py and localrag.evaluate match: whole path components.
        matches = [p for p, r in relative.items() if r == suffix or r.endswith("/" + suffix)]
        if len(matches) != 1:
            sys.exit(f"{name}: {wanted!r} matches {len(matches)} corpus files")
        dest = pages / matches[0].relative_to(corpus)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(matches[0], dest)
    return pages


def vector_agreement(float_db: Path, int8_db: Path) -> dict[str, float]:
    """Cosine of each passage's float32 and int8 vectors (same passages, keyed by text)."""
    vectors = []
    for db in (float_db, int8_db):
        with Store.open(db, create=False, read_only=True) as store:
            rows = store.db.execute("SELECT text_hash, vector FROM embeddings ORDER BY text_hash")
            vectors.append({h: np.frombuffer(v, dtype=np.float32) for h, v in rows})
    common = sorted(set(vectors[0]) & set(vectors[1]))
    a = np.stack([vectors[0][h] for h in common])
    b = np.stack([vectors[1][h] for h in common])
    cosines = np.sum(a * b, axis=1)
    return {
        "passages": len(common),
        "min": float(cosines.min()),
        "p1": float(np.percentile(cosines, 1)),
        "mean": float(cosines.mean()),
        "below_0.99": int((cosines < 0.99).sum()),
    }


def run_set(name: str, args: argparse.Namespace, work: Path) -> list[str]:
    questions = load_questions(ROOT / "bench" / "questions" / f"{name}.jsonl")
    corpus = corpus_for(name, questions, args.scope, work)
    float_embedder = load_embedder(args.float, threads=args.threads)
    int8_embedder = load_embedder(args.int8 or f"{args.float}-int8", threads=args.threads)
    float_db, int8_db = work / f"{name}-float32.db", work / f"{name}-int8.db"

    print(f"{name}: indexing {corpus} with {float_embedder.identity.name} …", flush=True)
    with Store.open(float_db) as store:
        report = Indexer(store, float_embedder).index([corpus])
    index_s = report.seconds
    shutil.copy(float_db, int8_db)  # closed: the WAL is checkpointed into the file
    print(f"{name}: re-embedding a copy with {int8_embedder.identity.name} …", flush=True)
    with Store.open(int8_db) as store:
        moved = reembed(store, int8_embedder)
    assert moved.switched and not moved.recut_documents
    agreement = vector_agreement(float_db, int8_db)

    lines = [
        f"## {name} ({args.scope}: {report.files_seen} files, {report.chunks_embedded} "
        f"passages; {len(questions)} questions)",
        "",
        f"float32 indexing {index_s:.0f} s (parse + embed); int8 re-embedding of the same "
        f"passages {moved.seconds:.0f} s (embed only). Cosine float32 vs int8 over the "
        f"{agreement['passages']} passages: min {agreement['min']:.4f}, 1st percentile "
        f"{agreement['p1']:.4f}, mean {agreement['mean']:.4f}; {agreement['below_0.99']} below "
        "0.99.",
        "",
        "| half | mode | float32 hit@1 | hit@5 | hit@10 | MRR | int8 hit@1 | hit@5 | hit@10 "
        "| MRR | Δ hit@5 | Δ MRR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    scores = {}
    for kind, db, embedder in (
        ("float32", float_db, float_embedder),
        ("int8", int8_db, int8_embedder),
    ):
        with Store.open(db, create=False, read_only=True) as store:
            retriever = Retriever(store, embedder)
            for half, items in halves(questions).items():
                for mode in MODES:
                    scores[kind, half, mode] = evaluate_retrieval(retriever, items, mode=mode)
    for half in halves(questions):
        for mode in MODES:
            f, q = scores["float32", half, mode], scores["int8", half, mode]
            cells = [
                f"{s.hits_at[1]:.3f} | {s.hits_at[5]:.3f} | {s.hits_at[10]:.3f} | {s.mrr:.3f}"
                for s in (f, q)
            ]
            lines.append(
                f"| {half} ({f.questions}) | {mode} | {cells[0]} | {cells[1]} | "
                f"{q.hits_at[5] - f.hits_at[5]:+.3f} | {q.mrr - f.mrr:+.3f} |"
            )
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", dest="sets", action="append", choices=sorted(SETS))
    parser.add_argument("--scope", choices=("pages", "whole"), default="pages")
    parser.add_argument("--float", default="all-MiniLM-L6-v2", help="the float32 embedder")
    parser.add_argument("--int8", default=None, help="the int8 embedder (default: FLOAT-int8)")
    parser.add_argument("--threads", type=int, default=None, help="embedder threads")
    parser.add_argument("--keep", type=Path, default=None, help="keep the indexes here")
    args = parser.parse_args()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="localrag-int8-quality-"))
    lines = [
        f"int8 vs float32 retrieval quality ({describe_machine()})",
        f"# python bench/bench_int8_quality.py {' '.join(sys.argv[1:])}",
        "",
    ]
    try:
        for name in args.sets or ["postgresql"]:
            lines += run_set(name, args, work)
            print("\n".join(lines), flush=True)
    finally:
        if args.keep:
            shutil.move(str(work), str(args.keep))
        else:
            shutil.rmtree(work, ignore_errors=True)
    lines.append(f"total {time.perf_counter() - started:.0f} s")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "int8_quality.txt").write_text("\n".join(lines) + "\n")
    print(lines[-1])


if __name__ == "__main__":
    main()
