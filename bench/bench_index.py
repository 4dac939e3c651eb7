"""Indexing and query benchmarks, each figure against a reference measured in the same run.

    python bench/bench_index.py [--corpus bench/corpora/postgresql-15] [--quick]
        [--int8 [NAME]] [--only-int8] [--threads N] [--rounds R]

Prints (and writes to bench/results/index.json; --only-int8 to index_int8.json):
  1. end-to-end indexing chunks/s vs the embedder's raw chunks/s on the same chunks (target ≥ 0.9;
     interleaved rounds, the order swapped each round, median of the per-round ratios)
  2. unchanged re-run over ≥ 5k files (target < 2 s), as a ratio of a bare os.walk+stat of
     the same tree
  3. hybrid query latency p50/p95 on the real index, and at 100k chunks with synthetic vectors
     (target p50 < 50 ms including the query embedding), vs the query embedding alone
  4. peak RSS
  5. with --int8: the int8 embedder (`localrag models quantize-embedder`) against the float32
     one it was made from: raw embedder throughput on the same passages and threads
     (interleaved rounds, the order swapped each round, median of the per-round ratios), and
     end-to-end indexing of the same files with each (each run a fresh process, so each has
     its own peak RSS; interleaved, medians). --only-int8 skips 1-4.

--quick: 40 corpus files, 500 files for the re-run, 10k synthetic chunks: sections 1-4 took
70 s on the 2-core box, and section 5 about 2 minutes a round.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe as describe_machine  # noqa: E402
from localrag.config import IndexSettings  # noqa: E402
from localrag.embedder import load_embedder  # noqa: E402
from localrag.indexer import Indexer, text_hash  # noqa: E402
from localrag.retrieval import Retriever  # noqa: E402
from localrag.store import Store  # noqa: E402

QUERIES = [
    "how do I create an index concurrently without locking the table",
    "what does VACUUM FULL do",
    "configure streaming replication between two servers",
    "pg_stat_statements track utility commands",
    "difference between jsonb and json",
    "how to restore a dump made with pg_dump custom format",
    "row level security policies",
    "what is the default value of work_mem",
    "window functions rank over partition",
    "logical decoding output plugin",
]


class SyntheticVectors:
    """The real tokenizer and chunking, but random unit vectors: for large setup only."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.identity = real.identity
        self.max_tokens = real.max_tokens
        self.rng = np.random.default_rng(0)

    def count(self, text: str) -> int:
        return int(self.real.count(text))

    def count_tokens(self, text: str) -> int:
        return int(self.real.count_tokens(text))

    def embed_passages(self, texts):  # type: ignore[no-untyped-def]
        v = self.rng.standard_normal((len(texts), self.identity.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def embed_query(self, text: str) -> np.ndarray:
        return self.real.embed_query(text)  # type: ignore[no-any-return]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def bench_indexing(corpus: Path, work: Path, embedder, rounds: int) -> dict:  # type: ignore[no-untyped-def]
    """End to end (a fresh index each round) against the same passages straight through the
    embedder, interleaved: the order swaps every round, the ratio is the median of the rounds'.
    The first round's index (corpus.db) serves the query benchmarks."""
    texts: list[str] = []
    e2e_rates: list[float] = []
    raw_rates: list[float] = []
    report = None

    def end_to_end(r: int) -> None:
        nonlocal report, texts
        with Store.open(work / ("corpus.db" if r == 0 else f"corpus-{r}.db")) as store:
            started = time.perf_counter()
            report = Indexer(store, embedder).index([corpus])
            e2e_rates.append(report.chunks_embedded / (time.perf_counter() - started))
            if not texts:
                texts = [
                    f"{h}\n\n{t}" if h else t
                    for h, t in store.db.execute(
                        "SELECT c.heading, c.text FROM chunks c GROUP BY c.embedding_id"
                    )
                ]

    def raw(_r: int) -> None:
        # The reference: the same passages straight through the embedder, nothing else.
        started = time.perf_counter()
        for start in range(0, len(texts), 256):
            embedder.embed_passages(texts[start : start + 256])
        raw_rates.append(len(texts) / (time.perf_counter() - started))

    for r in range(rounds):
        for step in (end_to_end, raw) if r % 2 == 0 else (raw, end_to_end):
            step(r)
    assert report is not None
    ratios = [e / w for e, w in zip(e2e_rates, raw_rates, strict=True)]
    return {
        "files": report.files_seen,
        "chunks_embedded": report.chunks_embedded,
        "rounds": rounds,
        "end_to_end_chunks_per_s": round(statistics.median(e2e_rates), 2),
        "raw_embedder_chunks_per_s": round(statistics.median(raw_rates), 2),
        "ratio_median_of_rounds": round(statistics.median(ratios), 3),
        "ratios": [round(x, 3) for x in ratios],
        "target_ratio": 0.9,
        "db": str(work / "corpus.db"),
    }


def bench_unchanged_rerun(work: Path, embedder, files: int) -> dict:  # type: ignore[no-untyped-def]
    tree = work / "many"
    for i in range(files):
        folder = tree / f"d{i % 50:02}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note-{i:05}.md").write_text(
            f"# Note {i}\n\nMeeting {i} decided to move item {i % 97} to the next sprint.\n"
        )
    fake = SyntheticVectors(embedder)
    with Store.open(work / "many.db") as store:
        Indexer(store, fake).index([tree])
        # Reference: the least any re-run must do, walking and stat-ing every file.
        started = time.perf_counter()
        for folder, _dirs, names in os.walk(tree):
            for name in names:
                os.stat(os.path.join(folder, name))
        walk_seconds = time.perf_counter() - started
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            report = Indexer(store, fake).index([tree])
            timings.append(time.perf_counter() - started)
            assert report.unchanged == files and report.chunks_embedded == 0
    best = min(timings)
    return {
        "files": files,
        "rerun_seconds": round(best, 3),
        "walk_stat_seconds": round(walk_seconds, 3),
        "ratio_to_walk": round(best / walk_seconds, 2),
        "target_seconds": 2.0,
    }


def bench_queries(store: Store, embedder, label: str) -> dict:  # type: ignore[no-untyped-def]
    retriever = Retriever(store, embedder)
    for q in QUERIES[:3]:
        retriever.search(q, 10)  # warm caches
    latencies, embed_only = [], []
    for _ in range(5):
        for q in QUERIES:
            started = time.perf_counter()
            embedder.embed_query(q)
            embed_only.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            retriever.search(q, 10)
            latencies.append((time.perf_counter() - started) * 1000)
    chunks = store.stats().chunks
    return {
        "label": label,
        "chunks": chunks,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "query_embedding_p50_ms": round(percentile(embed_only, 50), 2),
        "target_p50_ms": 50,
    }


def build_synthetic_index(db: Path, embedder, source_db: Path, size: int) -> None:  # type: ignore[no-untyped-def]
    """`size` chunks: real passage texts (recycled) with random vectors, via the store API."""
    from localrag.documents import Chunk
    from localrag.store import PendingDocument

    with Store.open(source_db, create=False) as src:
        texts = [r[0] for r in src.db.execute("SELECT text FROM chunks LIMIT 20000")]
    rng = np.random.default_rng(1)
    with Store.open(db) as store:
        store.bind_embedder(
            embedder.identity.name, embedder.identity.dim, embedder.identity.fingerprint
        )
        root = store.add_root("/synthetic")
        per_doc = 50
        for d in range(size // per_doc):
            chunks, hashes, vectors = [], [], {}
            for i in range(per_doc):
                n = d * per_doc + i
                text = f"{texts[n % len(texts)]} [{n}]"
                chunks.append(Chunk(i, text, (), 0, len(text), 100))
                h = text_hash(text)
                hashes.append(h)
                v = rng.standard_normal(embedder.identity.dim).astype(np.float32)
                vectors[h] = v / np.linalg.norm(v)
            store.replace_document(
                PendingDocument(
                    f"/synthetic/doc{d}.txt", root.id, 1, 1, f"h{d}", "text", None, chunks, hashes
                ),
                vectors,
            )


# -- 5. float32 against int8 ----------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child_index(model: str, corpus: Path, db: Path, threads: int | None) -> None:
    """One end-to-end indexing run in this fresh process; prints its figures as JSON."""
    embedder = load_embedder(model, threads=threads)
    with Store.open(db) as store:
        started = time.perf_counter()
        report = Indexer(store, embedder).index([corpus])
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "chunks_embedded": report.chunks_embedded,
                "seconds": round(seconds, 2),
                "chunks_per_s": round(report.chunks_embedded / seconds, 2),
                "peak_rss_mb": _peak_rss_mb(),
            }
        )
    )


def _index_in_child(model: str, corpus: Path, db: Path, threads: int | None) -> dict:
    command = [sys.executable, __file__, "--child-index", model, "--corpus", str(corpus)]
    command += ["--child-db", str(db)]
    if threads:
        command += ["--threads", str(threads)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _raw_seconds(embedder, texts: list[str]) -> float:  # type: ignore[no-untyped-def]
    """The passages through the embedder alone, in the indexer's 256-passage calls."""
    started = time.perf_counter()
    for start in range(0, len(texts), 256):
        embedder.embed_passages(texts[start : start + 256])
    return time.perf_counter() - started


def bench_int8(
    corpus: Path, work: Path, float_name: str, int8_name: str, threads: int | None, rounds: int
) -> dict:
    """float32 vs int8: raw throughput on the same passages and threads, end-to-end indexing
    of the same files with each (fresh process per run: its own peak RSS)."""
    names = {"float32": float_name, "int8": int8_name}
    e2e: dict[str, list[dict]] = {"float32": [], "int8": []}
    for r in range(rounds):
        order = ["float32", "int8"] if r % 2 == 0 else ["int8", "float32"]
        for kind in order:
            db = work / f"int8-bench-{kind}-{r}.db"
            e2e[kind].append(_index_in_child(names[kind], corpus, db, threads))
            print(f"  e2e round {r + 1} {kind}: {e2e[kind][-1]}", flush=True)
    with Store.open(work / "int8-bench-float32-0.db", create=False) as store:
        texts = [
            f"{h}\n\n{t}" if h else t
            for h, t in store.db.execute(
                "SELECT c.heading, c.text FROM chunks c GROUP BY c.embedding_id"
            )
        ]
    embedders = {kind: load_embedder(name, threads=threads) for kind, name in names.items()}
    for embedder in embedders.values():  # warm: first calls allocate
        embedder.embed_passages(texts[:32])
    raw: dict[str, list[float]] = {"float32": [], "int8": []}
    for r in range(rounds):
        order = ["float32", "int8"] if r % 2 == 0 else ["int8", "float32"]
        for kind in order:
            raw[kind].append(_raw_seconds(embedders[kind], texts))
        print(
            f"  raw round {r + 1}: float32 {raw['float32'][-1]:.1f} s, "
            f"int8 {raw['int8'][-1]:.1f} s",
            flush=True,
        )

    def per_s(seconds: list[float]) -> float:
        return round(len(texts) / statistics.median(seconds), 2)

    raw_ratios = [f / q for f, q in zip(raw["float32"], raw["int8"], strict=True)]
    e2e_ratios = [
        q["chunks_per_s"] / f["chunks_per_s"]
        for f, q in zip(e2e["float32"], e2e["int8"], strict=True)
    ]
    return {
        "corpus": str(corpus),
        "models": names,
        "threads": embedders["float32"].threads,
        "rounds": rounds,
        "passages": len(texts),
        "raw_chunks_per_s": {"float32": per_s(raw["float32"]), "int8": per_s(raw["int8"])},
        "raw_speedup_median_of_rounds": round(statistics.median(raw_ratios), 3),
        "raw_speedups": [round(x, 3) for x in raw_ratios],
        "end_to_end_chunks_per_s": {
            kind: round(statistics.median(r["chunks_per_s"] for r in runs), 2)
            for kind, runs in e2e.items()
        },
        "end_to_end_speedup_median_of_rounds": round(statistics.median(e2e_ratios), 3),
        "end_to_end_speedups": [round(x, 3) for x in e2e_ratios],
        "end_to_end_peak_rss_mb": {
            kind: statistics.median(r["peak_rss_mb"] for r in runs) for kind, runs in e2e.items()
        },
        "chunks_embedded": {kind: runs[0]["chunks_embedded"] for kind, runs in e2e.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=ROOT / "bench" / "corpora" / "postgresql-15")
    parser.add_argument("--files", type=int, default=5000, help="files for the unchanged re-run")
    parser.add_argument(
        "--synthetic", type=int, default=100_000, help="chunks for the large-index query test"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    parser.add_argument(
        "--limit-files", type=int, default=None, help="index only the first N corpus files"
    )
    parser.add_argument(
        "--real-db", type=Path, default=None, help="measure queries on this existing index"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (see above)")
    parser.add_argument(
        "--embedder", default=None, help="the (float32) embedder (default: the default one)"
    )
    parser.add_argument(
        "--int8",
        nargs="?",
        const="",
        default=None,
        help="also compare with this int8 embedder (default: the float32 one's name + -int8)",
    )
    parser.add_argument("--only-int8", action="store_true", help="run section 5 only")
    parser.add_argument("--threads", type=int, default=None, help="embedder threads")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, sections 1, 5")
    parser.add_argument("--child-index", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-db", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_index:
        child_index(args.child_index, args.corpus, args.child_db, args.threads)
        return
    if not args.corpus.is_dir():
        sys.exit(f"no corpus at {args.corpus}: run bench/fetch_corpus.sh first")
    if args.quick:
        args.limit_files = args.limit_files or 40
        args.files = min(args.files, 500)
        args.synthetic = min(args.synthetic, 10_000)
    if args.only_int8 and args.int8 is None:
        args.int8 = ""

    embedder = load_embedder(args.embedder, threads=args.threads)
    work = Path(tempfile.mkdtemp(prefix="localrag-bench-"))
    results: dict = {
        "machine": describe_machine(),
        "settings": {"chunk_tokens": IndexSettings().chunk_tokens or embedder.max_tokens},
    }
    try:
        corpus = args.corpus
        if args.limit_files:
            corpus = work / "corpus-subset"
            corpus.mkdir()
            for path in sorted(args.corpus.iterdir())[: args.limit_files]:
                shutil.copy(path, corpus / path.name)
        if args.int8 is not None:
            float_name = args.embedder or embedder.model_dir.name
            int8_name = args.int8 or f"{float_name}-int8"
            print(f"float32 {float_name} vs int8 {int8_name} on {corpus} …", flush=True)
            results["int8"] = bench_int8(
                corpus, work, float_name, int8_name, args.threads, args.rounds
            )
            print(json.dumps(results["int8"], indent=2), flush=True)
        if args.only_int8:
            _write_results(results, "index_int8.json")
            return
        print(f"indexing {corpus} …", flush=True)
        results["indexing"] = bench_indexing(corpus, work, embedder, args.rounds)
        print(json.dumps(results["indexing"], indent=2), flush=True)
        with Store.open(args.real_db or work / "corpus.db", create=False) as store:
            results["query_real"] = bench_queries(store, embedder, "real corpus")
        print(json.dumps(results["query_real"], indent=2), flush=True)
        source = args.real_db or work / "corpus.db"
        build_synthetic_index(work / "synthetic.db", embedder, source, args.synthetic)
        with Store.open(work / "synthetic.db", create=False) as store:
            results["query_synthetic"] = bench_queries(
                store, embedder, f"{args.synthetic} synthetic"
            )
        print(json.dumps(results["query_synthetic"], indent=2), flush=True)
        results["unchanged_rerun"] = bench_unchanged_rerun(work, embedder, args.files)
        print(json.dumps(results["unchanged_rerun"], indent=2), flush=True)
        results["peak_rss_mb"] = _peak_rss_mb()
        print(f"peak RSS: {results['peak_rss_mb']} MB")
        _write_results(results)
    finally:
        if args.keep:
            shutil.move(str(work), str(args.keep))
        else:
            shutil.rmtree(work, ignore_errors=True)


def _write_results(results: dict, name: str = "index.json") -> None:
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / name).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
