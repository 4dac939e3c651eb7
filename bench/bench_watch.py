"""Watcher benchmarks, each against a reference measured in the same run.

    python bench/bench_watch.py [--files 5000] [--edits 20] [--burst 1000] [--rounds 2]

Prints (and writes to bench/results/watch.json):
  1. save → searchable latency for a small edit in a watched folder of ≥ 5k files
     (target: under 1 s plus that file's own embedding time, measured alone in the same run)
  2. throughput of a burst of files dropped into a watched folder, as a ratio of
     `localrag index` (the Indexer) on the same files into a fresh index (target ≥ 0.9);
     the two are interleaved and medians taken, because run-to-run noise here is ±15 %
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_index import SyntheticVectors, percentile  # noqa: E402

from localrag.chunking import chunk_document  # noqa: E402
from localrag.embedder import load_embedder  # noqa: E402
from localrag.indexer import Indexer  # noqa: E402
from localrag.parsers import parse_file  # noqa: E402
from localrag.store import Store  # noqa: E402
from localrag.watcher import Watcher  # noqa: E402

TOPICS = "budget hiring audit roadmap incident vendor training privacy travel facilities".split()


def write_notes(folder: Path, count: int, paragraphs: int) -> list[Path]:
    """Meeting notes in 50 sub-folders, each a few paragraphs of varied text."""
    paths = []
    for i in range(count):
        path = folder / f"team-{i % 50:02}" / f"note-{i:05}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join(
            f"The {TOPICS[(i + p) % 10]} review of week {i % 52} found {p + i % 7} open items; "
            f"owner {i % 13} will report on item {i * 3 + p} and the {TOPICS[p % 10]} plan "
            f"before the next meeting, with a summary for department {i % 17}."
            for p in range(paragraphs)
        )
        path.write_text(f"# Note {i}\n\n{body}\n")
        paths.append(path)
    return paths


def bench_latency(work: Path, embedder, files: int, edits: int) -> dict:  # type: ignore[no-untyped-def]
    folder = work / "watched"
    paths = write_notes(folder, files, 3)
    db = work / "latency.db"
    with Store.open(db) as store:  # the big folder's vectors don't matter here: synthetic
        Indexer(store, SyntheticVectors(embedder)).index([folder])
    watcher = Watcher(db, [folder], embedder)
    watcher.start()
    latencies, own_embed = [], []
    try:
        with Store.open(db, create=False) as reader:
            for k in range(edits):
                path = paths[(k * 7919) % len(paths)]
                word = f"zqmarker{k}x"
                text = path.read_text() + f"\nAddendum: the {word} decision was confirmed.\n"
                # Reference: this file's own parse + chunk + embed, alone.
                started = time.perf_counter()
                parsed = parse_file(path, text.encode())
                chunks = chunk_document(parsed, embedder, embedder.max_tokens, 24)
                embedder.embed_passages([c.embed_text for c in chunks])
                own_embed.append(time.perf_counter() - started)
                saved = time.perf_counter()
                path.write_text(text)
                while not reader.fts_search(f'"{word}"', 1):
                    time.sleep(0.005)
                latencies.append(time.perf_counter() - saved)
                watcher.wait_idle(60)
    finally:
        watcher.stop()
    overhead = [lat - own for lat, own in zip(latencies, own_embed, strict=True)]
    return {
        "files_watched": files,
        "edits": edits,
        "debounce_s": watcher.queue.debounce,
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "own_embedding_p50_s": round(percentile(own_embed, 50), 3),
        "latency_minus_own_embedding_p50_s": round(percentile(overhead, 50), 3),
        "latency_minus_own_embedding_max_s": round(max(overhead), 3),
        "target_s": 1.0,
    }


def time_index(source: Path, work: Path, embedder, run: int) -> float:  # type: ignore[no-untyped-def]
    folder = work / f"index-{run}"
    shutil.copytree(source, folder)
    with Store.open(work / f"index-{run}.db") as store:
        started = time.perf_counter()
        report = Indexer(store, embedder).index([folder])
        seconds = time.perf_counter() - started
    assert report.failed == 0
    return seconds


def time_watch(source: Path, work: Path, embedder, run: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    folder = work / f"watch-{run}"
    folder.mkdir()
    db = work / f"watch-{run}.db"
    depth = 0

    def on_event(event) -> None:  # type: ignore[no-untyped-def]
        nonlocal depth
        depth = max(depth, event.queue_depth)

    watcher = Watcher(db, [folder], embedder, on_event=on_event)
    watcher.start()
    try:
        started = time.perf_counter()
        shutil.copytree(source, folder / "burst")  # the burst: like an unzip or git checkout
        expected = sum(1 for p in source.rglob("*") if p.is_file())
        with Store.open(db, create=False) as reader:
            while reader.stats().indexed < expected or not watcher.wait_idle(0.05):
                time.sleep(0.02)
        seconds = time.perf_counter() - started
    finally:
        watcher.stop()
    return seconds, depth


def bench_burst(work: Path, embedder, files: int, rounds: int) -> dict:  # type: ignore[no-untyped-def]
    source = work / "burst-source"
    write_notes(source, files, 6)
    index_runs, watch_runs, depths = [], [], []
    for run in range(rounds):  # interleaved, so drift in machine speed hits both alike
        index_runs.append(time_index(source, work, embedder, run))
        seconds, depth = time_watch(source, work, embedder, run)
        watch_runs.append(seconds)
        depths.append(depth)
        print(f"  round {run}: index {index_runs[-1]:.1f}s, watch {seconds:.1f}s", flush=True)
    with Store.open(work / "index-0.db", create=False) as store:
        chunks = store.stats().chunks
    index_s, watch_s = statistics.median(index_runs), statistics.median(watch_runs)
    return {
        "files": files,
        "chunks": chunks,
        "index_seconds": [round(s, 1) for s in index_runs],
        "watch_seconds": [round(s, 1) for s in watch_runs],
        "max_queue_depth_seen": max(depths),
        "throughput_ratio_watch_vs_index": round(index_s / watch_s, 3),
        "target_ratio": 0.9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=5000, help="files in the watched folder")
    parser.add_argument("--edits", type=int, default=20, help="edits timed for latency")
    parser.add_argument("--burst", type=int, default=1000, help="files in the burst")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved index/watch rounds")
    args = parser.parse_args()

    embedder = load_embedder()
    embedder.embed_passages(["warm up the runtime"] * 8)
    work = Path(tempfile.mkdtemp(prefix="localrag-bench-watch-"))
    results: dict = {}
    try:
        print(f"latency: {args.edits} edits in a watched folder of {args.files} files …")
        results["latency"] = bench_latency(work, embedder, args.files, args.edits)
        print(json.dumps(results["latency"], indent=2), flush=True)
        print(f"burst: {args.burst} files, watch vs index, {args.rounds} rounds …")
        results["burst"] = bench_burst(work, embedder, args.burst, args.rounds)
        print(json.dumps(results["burst"], indent=2), flush=True)
        out = ROOT / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / "watch.json").write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
