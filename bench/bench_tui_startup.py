"""TUI start-up benchmark: how soon `localrag tui` shows a usable screen, against bare Textual.

    python bench/bench_tui_startup.py [--db INDEX.db] [--rounds 5]

Each measurement is a fresh interpreter (imports included, the OS file cache warm after one
untimed run of each), headless, 100×30. The child is given its launch time and reports, from
that moment:
  - first paint: the first frame is rendered (Textual's Ready event) with the question input
    focused, i.e. the user can type;
  - index open (localrag only): `app.index_status` is set, i.e. the database and the embedder
    are open in the background worker and the status bar shows the index.
The reference is a minimal Textual app (Input + Footer) started the same way; the ratio
localrag / reference is what to compare across machines. The app is built as `localrag tui`
builds it (localrag.cli imported, Assistant + LocalragApp), with no model and no watcher, so
this measures the screen, not model loading (which starts after the first paint anyway).

Without --db it indexes the test handbook (5 files) into a temp folder with the default
embedder (`localrag models import-embedder` installs one; LOCALRAG_MODELS_DIR points elsewhere).
Prints a table and writes it to bench/results/tui_startup.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe as describe_machine  # noqa: E402

LAUNCHED = "LOCALRAG_BENCH_LAUNCHED"  # the parent's time.time() just before starting the child
SIZE = (100, 30)


# -- the child: one app start, timed from its launch ----------------------------------------------


def _since_launch() -> float:
    return time.time() - float(os.environ[LAUNCHED])


def child_reference(result: Path) -> None:
    """A bare Textual app with an input and a footer: the floor for any Textual start-up."""
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Input

    class Reference(App[None]):
        def compose(self) -> ComposeResult:
            yield Input(placeholder="Ask about your documents…")
            yield Footer()

        def on_mount(self) -> None:
            self.query_one(Input).focus()

        def on_ready(self) -> None:
            paint = _since_launch()
            result.write_text(json.dumps({"paint": paint, "focused": _focused_input(self)}))
            self.exit()

    Reference().run(headless=True, size=SIZE)


def child_localrag(result: Path, db: Path) -> None:
    """LocalragApp as `localrag tui --db DB --no-model --no-watch` builds it."""
    import localrag.cli  # what `python tui.py` imports before the app: part of its start-up
    import localrag.tui.app
    from localrag.assistant import Assistant
    from localrag.tui.app import LocalragApp

    times: dict[str, float | bool] = {}

    class Timed(LocalragApp):
        # A relative CSS_PATH is read next to the subclass's file: point at the app's own.
        CSS_PATH = str(Path(localrag.tui.app.__file__).parent / str(LocalragApp.CSS_PATH))

        def on_ready(self) -> None:
            times["paint"] = _since_launch()
            times["focused"] = _focused_input(self)
            self.set_interval(0.005, self._check_index)

        def _check_index(self) -> None:
            if self.index_status is not None and "index_open" not in times:
                times["index_open"] = _since_launch()
                result.write_text(json.dumps(times))
                self.exit()

    assistant = Assistant(db, llm_overrides={})
    app = Timed(assistant, use_model=False, model_name=None, watch=False, polling=False)
    try:
        app.run(headless=True, size=SIZE)
    finally:
        assistant.close()


def _focused_input(app: object) -> bool:
    from textual.widgets import Input

    return isinstance(getattr(app, "focused", None), Input)


# -- the parent: rounds, medians, the table --------------------------------------------------------


def run_child(kind: str, db: Path, work: Path) -> dict[str, float]:
    import subprocess

    result = work / f"{kind}.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--child", kind, "--db", str(db), "--result", str(result)]
    env = dict(os.environ, **{LAUNCHED: repr(time.time())})
    subprocess.run(command, env=env, check=True, timeout=120, stdin=subprocess.DEVNULL)
    if not result.exists():  # Textual shows an error and exits 0
        raise SystemExit(f"{kind}: the app did not start (its error is above)")
    times = json.loads(result.read_text())
    if not times.pop("focused"):
        raise SystemExit(f"{kind}: the input was not focused at first paint")
    return {k: v * 1000 for k, v in times.items()}


def build_index(work: Path) -> Path:
    """The test handbook, indexed with the default embedder."""
    from localrag.embedder import load_embedder
    from localrag.indexer import Indexer
    from localrag.store import Store
    from tests.helpers.handbook import write_handbook

    folder = write_handbook(work / "handbook")
    db = work / "index.db"
    with Store.open(db) as store:
        Indexer(store, load_embedder(None)).index([folder])
    return db


def command_line() -> str:
    return " ".join(["python bench/bench_tui_startup.py", *sys.argv[1:]])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", type=Path, default=None, help="an existing index (default: build)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=["reference", "localrag"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "reference":
        child_reference(args.result)
        return
    if args.child == "localrag":
        child_localrag(args.result, args.db)
        return

    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="localrag-bench-tui-"))
    try:
        bench(args.db, args.rounds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench(given_db: Path | None, rounds: int, work: Path) -> None:
    import statistics

    db = given_db.expanduser().resolve() if given_db else build_index(work)
    if not db.exists():
        raise SystemExit(f"no such index: {db}")
    run_child("reference", db, work)  # untimed: fill the file cache
    run_child("localrag", db, work)
    lines = [f"# {describe_machine()}", f"# {command_line()}"]
    for line in lines:
        print(line, flush=True)
    ref: list[float] = []
    paint: list[float] = []
    index_open: list[float] = []
    for i in range(rounds):
        order = ["reference", "localrag"] if i % 2 == 0 else ["localrag", "reference"]
        for kind in order:
            times = run_child(kind, db, work)
            if kind == "reference":
                ref.append(times["paint"])
            else:
                paint.append(times["paint"])
                index_open.append(times["index_open"])
        lines.append(
            f"round {i + 1}: reference {ref[-1]:.0f} ms, localrag paint {paint[-1]:.0f} ms, "
            f"index open {index_open[-1]:.0f} ms"
        )
        print(lines[-1], flush=True)
    ref_ms, paint_ms = statistics.median(ref), statistics.median(paint)
    rows = [
        ("reference first paint (Input + Footer)", f"{ref_ms:.0f} ms"),
        ("localrag first paint", f"{paint_ms:.0f} ms"),
        ("ratio localrag / reference", f"{paint_ms / ref_ms:.2f}"),
        ("localrag index open (embedder + db)", f"{statistics.median(index_open):.0f} ms"),
    ]
    lines.append(
        f"# medians of {rounds} interleaved rounds, from process launch, headless "
        f"{SIZE[0]}x{SIZE[1]}, index: {'--db' if given_db else 'the handbook (5 files)'}"
    )
    lines += [f"{name:<40} {value:>8}" for name, value in rows]
    print("\n".join(lines[-len(rows) - 1 :]))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tui_startup.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
