"""Peak memory of indexing one pathological file, each file in a fresh process.

    python bench/bench_memory.py [--size-mb 48] [--only NAME ...] [--full NAME ...]
                                 [--before OLD_CHECKOUT] [--cap-gb 6]

Builds the files (tests/helpers/bombs.py) in a temp folder, then for each one starts a child
interpreter that imports localrag, loads the embedder (the installed default, or the test
export made on the fly), takes its resident memory as the baseline and runs what
`Indexer._prepare` runs for a file: read the bytes, parse_file, chunk_document, hash the
chunks ("prepare"). The embedder is not run there: 48 MB of text is ~130k chunks, over an
hour at ~25 chunks/s on 2 cores. Files named with --full are also indexed end to end
(Indexer.index of a folder holding just that file, fresh store, real embedder: "full").

Reported per file: peak RSS above the baseline (Linux VmHWM reset after the baseline, see
tests/helpers/memory.PeakMeter), seconds, and what became of the file. --before runs the same
children against another checkout (a `git worktree` of the commit before the memory fixes),
so both columns come from one machine and one run. A child whose RSS passes --cap-gb is
stopped (the box is shared) and reported as "> cap".
Writes bench/results/memory.txt (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe as describe_machine  # noqa: E402
from tests.helpers import bombs  # noqa: E402
from tests.helpers.memory import PeakMeter  # noqa: E402

MB = 1024 * 1024
Builder = Callable[[Path, int], Path]  # (path, --size-mb in bytes) -> the file


def _fixed(build: Callable[[Path], Path]) -> Builder:
    return lambda path, _size: build(path)


# name -> (file name, builder). The last four sit just under a limit: they must be indexed.
FILES: dict[str, tuple[str, Builder]] = {
    "one-line text": ("one-line.txt", bombs.one_line_text),
    "many-line text": ("many-lines.txt", bombs.many_line_text),
    "no-whitespace text": ("no-space.txt", bombs.no_space_text),
    "markdown": ("manual.md", bombs.markdown_text),
    "python code": ("module.py", bombs.code_text),
    "minified js": ("bundle.min.js", bombs.minified_js),
    "html": ("page.html", bombs.html_text),
    "cp1252 text, 22% quotes": ("quotes.txt", bombs.legacy_text),
    "docx bomb, 200 MB xml": ("bomb.docx", _fixed(lambda p: bombs.docx_bomb(p, 200 * MB))),
    "pdf bomb, 70 MB stream": ("bomb.pdf", _fixed(lambda p: bombs.pdf_bomb(p, 70 * MB))),
    "pdf bomb, 60 MB of text": (
        "strings.pdf",
        _fixed(lambda p: bombs.pdf_pages(p, [bombs.long_strings(60 * MB)])),
    ),
    "docx, 60 MB xml (ok)": ("big.docx", _fixed(lambda p: bombs.docx_bomb(p, 60 * MB))),
    "docx, 1.9M tags (ok)": (
        "dense.docx",
        _fixed(lambda p: bombs.docx_bomb(p, 12 * MB, paragraph_chars=4)),
    ),
    "pdf, 4 x 15 MB pages (ok)": (
        "pages.pdf",
        _fixed(lambda p: bombs.pdf_pages(p, [bombs.long_strings(15 * MB)], [0, 0, 0, 0])),
    ),
    "md, 490k blocks (ok)": ("blocks.md", _fixed(lambda p: bombs.many_headings(p, 490_000))),
    "one-line text, 1 MB": ("small.txt", _fixed(lambda p: bombs.one_line_text(p, MB))),
}
DEFAULT_FULL = ["docx bomb, 200 MB xml", "pdf bomb, 60 MB of text", "one-line text, 1 MB"]


# -- the child: one file, one fresh interpreter --------------------------------------------------


def child_prepare(path: Path, models: Path) -> dict[str, Any]:
    """Read, parse, chunk and hash one file, as Indexer._prepare does."""
    import gc

    from localrag.chunking import chunk_document
    from localrag.embedder import load_embedder
    from localrag.errors import ParseError
    from localrag.indexer import text_hash
    from localrag.parsers import parse_file

    embedder = load_embedder(models, verify=False)
    gc.collect()
    meter = PeakMeter()
    started = time.perf_counter()
    data = path.read_bytes()
    try:
        parsed = parse_file(path, data)
        chunks = chunk_document(parsed, embedder, embedder.max_tokens, 24)
        hashes = [text_hash(c.embed_text) for c in chunks]
        outcome = f"{len(hashes)} chunks"
    except ParseError as exc:
        outcome = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    return {"peak_mb": round(meter.peak_mb()), "seconds": round(seconds, 1), "outcome": outcome}


def child_full(path: Path, models: Path) -> dict[str, Any]:
    """Index a folder holding just this file, embedder and store included."""
    import gc
    import shutil

    from localrag.embedder import load_embedder
    from localrag.indexer import Indexer
    from localrag.store import Store

    embedder = load_embedder(models, verify=False)
    work = Path(tempfile.mkdtemp(prefix="localrag-bench-mem-"))
    try:
        folder = work / "docs"
        folder.mkdir()
        os.link(path, folder / path.name)
        with Store.open(work / "index.db") as store:
            indexer = Indexer(store, embedder)
            gc.collect()
            meter = PeakMeter()
            started = time.perf_counter()
            report = indexer.index([folder])
            seconds = time.perf_counter() - started
            problems = "; ".join(reason for _, _, reason in store.problems())
        outcome = f"{report.chunks_embedded} chunks embedded" + (
            f" ({problems})" if problems else ""
        )
        return {"peak_mb": round(meter.peak_mb()), "seconds": round(seconds, 1), "outcome": outcome}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def child_main(code: Path, mode: str, path: Path, models: Path) -> None:
    # localrag from the checkout being measured: nothing has imported it yet.
    sys.path.insert(0, str(code))
    run = child_prepare if mode == "prepare" else child_full
    print(json.dumps(run(path, models)), flush=True)


# -- the parent: build files, run children, tabulate ---------------------------------------------


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_child(code: Path, mode: str, path: Path, models: Path, cap_gb: float) -> dict[str, Any]:
    """One measurement in a fresh interpreter importing localrag from `code`; stopped at the cap."""
    script = str(Path(__file__).resolve())
    args = [sys.executable, script, "--child", str(code), mode, str(path), str(models)]
    started = time.perf_counter()
    proc = subprocess.Popen(args, cwd=code, stdout=subprocess.PIPE, text=True)
    stopped = False
    while proc.poll() is None:
        if _rss_kb(proc.pid) > cap_gb * 1024 * 1024:
            proc.kill()  # Only this child: the box is shared.
            stopped = True
        time.sleep(0.1)
    out = proc.stdout.read() if proc.stdout else ""
    seconds = round(time.perf_counter() - started, 1)
    if stopped:
        return {"peak_mb": None, "seconds": seconds, "outcome": f"stopped past {cap_gb:g} GB RSS"}
    if proc.returncode != 0 or not out.strip():
        return {"peak_mb": None, "seconds": seconds, "outcome": f"crashed (exit {proc.returncode})"}
    return dict(json.loads(out.strip().splitlines()[-1]))


def build_files(folder: Path, names: list[str], size: int) -> dict[str, Path]:
    built: dict[str, Path] = {}
    for name in names:
        filename, builder = FILES[name]
        built[name] = builder(folder / filename, size)
        print(f"built {name}: {built[name].stat().st_size / MB:.2f} MB on disk", flush=True)
    return built


def models_folder(work: Path) -> Path:
    """The installed default embedder, or the test export (the genuine MiniLM, ~10 s)."""
    from localrag.embedder import resolve_embedder_dir
    from localrag.errors import EmbedderError

    try:
        return resolve_embedder_dir()
    except EmbedderError:
        from tests.helpers.embedder import build_test_embedder

        return build_test_embedder(work / "models")


Row = tuple[str, str, dict[str, Any], dict[str, Any] | None]


def measure(files: dict[str, Path], args: argparse.Namespace, models: Path) -> list[Row]:
    """(file, phase, after, before) for every file and phase asked for."""
    rows: list[Row] = []
    for name, path in files.items():
        for mode in ["prepare", "full"] if name in args.full else ["prepare"]:
            after = run_child(ROOT, mode, path, models, args.cap_gb)
            before = None
            if args.before:
                before = run_child(args.before, mode, path, models, args.cap_gb)
            rows.append((name, mode, after, before))
            print(f"{name} [{mode}]: after {after}, before {before}", flush=True)
    return rows


def _cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    return f"{result['peak_mb']} MB" if result["peak_mb"] is not None else "> cap"


def table(rows: list[Row], args: argparse.Namespace) -> list[str]:
    lines = [
        f"# {describe_machine()}",
        "# python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    ]
    lines.append(
        "# peak RSS above the child's baseline (imports + embedder loaded); prepare = read + "
        "parse + chunk + hash, no embedding; full = Indexer.index, embedding included"
    )
    lines.append(f"# text files {args.size_mb:g} MiB; before = {args.before or '-'}")
    lines.append(f"{'file':<26} {'phase':<8} {'before':>9} {'after':>9} {'s':>6}  outcome")
    for name, mode, after, before in rows:
        lines.append(
            f"{name:<26} {mode:<8} {_cell(before):>9} {_cell(after):>9} "
            f"{after['seconds']:>6}  {after['outcome']}"
        )
        if before is not None:
            blank = ""
            lines.append(
                f"{blank:<26} {blank:<8} {blank:>9} {blank:>9} {before['seconds']:>6}  "
                f"before: {before['outcome']}"
            )
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=float, default=48, help="size of the text files (MiB)")
    parser.add_argument("--only", nargs="*", choices=list(FILES), default=list(FILES))
    parser.add_argument("--full", nargs="*", choices=list(FILES), default=DEFAULT_FULL)
    parser.add_argument("--before", type=Path, help="an older checkout to measure as well")
    parser.add_argument("--cap-gb", type=float, default=6.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="localrag-bench-mem-") as tmp:
        work = Path(tmp)
        models = models_folder(work)
        files = build_files(work, args.only, int(args.size_mb * MB))
        lines = table(measure(files, args, models), args)
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
