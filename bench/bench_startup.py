"""Command start-up benchmark: wall time of `localrag search` and of `localrag index` on an
unchanged folder, against a bare `python -c pass`, interleaved, medians.

    python bench/bench_startup.py [--folder DOCS | --files 5000] [--rounds 7] [--embedder NAME]

Each measurement is a fresh process as a user starts it (`python -m localrag …`), the OS
file cache warm after one untimed run of each. The folder (default: this repository's
`docs/`) is indexed once into a temporary database first; `index` then finds it unchanged, and
`search` asks one question of it. `--files N` writes N small notes (fifty distinct texts, so
the first index embeds only fifty passages) into a temporary folder and uses that instead. The
targets (issue 17) are 0.5 s wall for each, interpreter
start included, on 2 cores. Needs an imported embedder (`localrag models import-embedder`;
LOCALRAG_MODELS_DIR points elsewhere). Prints a table and writes bench/results/startup.txt.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe as describe_machine  # noqa: E402

QUESTION = "how does vector search find its candidates?"


def _wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _write_notes(folder: Path, count: int) -> Path:
    """`count` short Markdown notes in folders of 100, cycling through fifty texts."""
    topics = ["invoice", "holiday", "printer", "backup", "contract"]
    for n in range(count):
        topic = topics[n % len(topics)]
        path = folder / f"d{n // 100:03d}" / f"note-{n:05d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"# About the {topic} ({n % 50})\n\nWhat was agreed about the {topic}: who is "
            f"responsible, when it is due, where the papers are kept. Ref {n % 50}.\n",
            encoding="utf-8",
        )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=ROOT / "docs")
    parser.add_argument("--files", type=int, default=0, help="use N generated notes instead")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--embedder", default=None)
    args = parser.parse_args()
    embedder = ["--embedder", args.embedder] if args.embedder else []
    with tempfile.TemporaryDirectory() as work:
        db = str(Path(work) / "index.db")
        if args.files:
            args.folder = _write_notes(Path(work) / "notes", args.files)
        localrag = [sys.executable, "-m", "localrag"]
        commands = {
            "python -c pass (reference)": [sys.executable, "-c", "pass"],
            "localrag search": [*localrag, "search", QUESTION, "--db", db, "-k", "3", *embedder],
            "localrag index (unchanged)": [
                *localrag,
                "index",
                str(args.folder),
                "--db",
                db,
                "-q",
                *embedder,
            ],
        }
        subprocess.run(commands["localrag index (unchanged)"], check=True)  # the first index
        for command in commands.values():  # warm the file cache, untimed
            _wall(command)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):  # interleaved: a slow moment hits every command alike
            for name, command in commands.items():
                times[name].append(_wall(command))
    reference = statistics.median(times["python -c pass (reference)"])
    lines = [
        f"Command start-up, {args.rounds} interleaved rounds, median wall seconds "
        f"({describe_machine()}); folder "
        + (f"of {args.files} generated notes" if args.files else str(args.folder)),
        "",
        "| command | median s | min s | minus python start, s | target |",
        "|---|---|---|---|---|",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        target = "" if "reference" in name else ("met" if median <= 0.5 else "over 0.5 s")
        lines.append(
            f"| {name} | {median:.3f} | {min(values):.3f} | {median - reference:.3f} | {target} |"
        )
    report = "\n".join(lines)
    print(report)
    name = f"startup_{args.files}_files.txt" if args.files else "startup.txt"
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
