"""`localrag index`, `watch` and `status`: keeping the index and showing what it holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from localrag import config
from localrag.cli.base import (
    chunk_tokens_option,
    cli,
    console,
    db_option,
    db_path,
    embedder_option,
    err_console,
    ignore_option,
    max_file_size_option,
    open_store,
    recorded_model,
)
from localrag.cli.views import LanguageModelStatus, print_status, status_json
from localrag.errors import DiskFullError, LocalragError
from localrag.paths import from_here

if TYPE_CHECKING:
    from localrag.embedder import Embedder
    from localrag.store import Store


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
    help="New chunks embedded together (default 256); smaller commits files sooner. "
    "With --reembed: passages re-embedded per commit.",
)
@ignore_option
@click.option(
    "--reembed",
    is_flag=True,
    help="Move the index to the --embedder model: embed every stored passage again "
    "(resumable; until it is done the index answers with its old model).",
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
    """Index folders or single files (with no PATHS, refresh everything already indexed).

    A file given on its own is kept on its own: refreshing later looks at that file, not at
    the folder around it.
    """
    from localrag.embedder import embedder_for_index, load_embedder
    from localrag.indexer import Indexer, IndexEvent

    settings = _index_settings(max_file_size, chunk_tokens, embed_batch, ignore)
    with open_store(db, read_only=False) as store:
        roots = list(paths) or [Path(r.path) for r in store.roots()]
        if not roots:
            raise LocalragError(
                "nothing to index: give a folder, e.g. `localrag index ~/Documents`"
            )
        if not paths:  # a refresh: a folder that is gone (unmounted?) keeps its passages
            for gone in [r for r in roots if not r.exists()]:
                err_console.print(
                    f"[yellow]{from_here(str(gone))} is missing; its passages are kept[/] "
                    f"(`localrag forget {from_here(str(gone))}` removes them).",
                    soft_wrap=True,
                )
                roots.remove(gone)
            if not roots:
                raise LocalragError("every folder in the index is missing: nothing to refresh")
        # Lazy: on an unchanged folder nothing is embedded, so the model never starts.
        embedder = (
            load_embedder(embedder_name, lazy=True)  # the model to move to (or the default)
            if reembed
            else embedder_for_index(store.model_identity(), embedder_name, lazy=True)
        )
        if reembed or _reembed_under_way(store, embedder):
            _reembed(store, embedder, quiet, settings.embed_batch)
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


def _reembed_under_way(store: Store, embedder: Embedder) -> bool:
    """An earlier `--reembed` to this very model was interrupted: a plain run finishes it."""
    from localrag.store import identity_record

    identity = embedder.identity
    wanted = identity_record(identity.name, identity.dim, identity.fingerprint)
    return store.reembed_target() == wanted


def _reembed(store: Store, embedder: Embedder, quiet: bool, batch: int) -> None:
    """Move the index to `embedder` (localrag.reembed), with a progress bar; then the normal
    pass runs, which re-cuts the files the new model reads less of."""
    from localrag.reembed import reembed

    name = embedder.identity.name
    progress = Progress(
        TextColumn("[bold]Re-embedding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("passages"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=quiet,
    )
    task = progress.add_task("reembed", total=None)

    def on_progress(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    try:
        with progress:
            report = reembed(store, embedder, batch=batch, on_progress=on_progress)
    except KeyboardInterrupt:
        err_console.print(
            "[yellow]Interrupted.[/] The passages re-embedded so far are saved and the index "
            "still answers with its old model; run the same command again to continue."
        )
        sys.exit(130)
    except DiskFullError as exc:
        raise click.ClickException(
            f"{exc} Free some space and run the same command again to continue."
        ) from exc
    if not report.switched:
        if report.previous is not None:
            console.print(f"The index already uses {name}: nothing to re-embed.")
        return
    earlier = f" ({report.already_done} by an earlier run)" if report.already_done else ""
    console.print(
        f"Re-embedded {report.embedded} passages in {report.seconds:.1f}s{earlier}: "
        f"the index now uses {name} instead of {report.previous}."
    )
    if report.recut_documents:
        console.print(
            f"{report.recut_documents} files have passages longer than {name} reads: "
            "they are cut into passages again now."
        )


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
    """Keep folders (or single files) indexed as they change (no PATHS: all in the index).

    Catches up with whatever changed since the last run first, then indexes each change a
    moment after it is saved. Stop with Ctrl-C; nothing is lost if it is killed.
    """
    import signal

    from localrag.cli.watch_view import WatchView
    from localrag.embedder import embedder_for_index
    from localrag.watcher import Watcher

    settings = _index_settings(max_file_size, chunk_tokens, None, ignore)
    embedder = embedder_for_index(recorded_model(db), embedder_name)
    view = WatchView(console, err_console, from_here, quiet=quiet, as_json=as_json)
    watcher = Watcher(
        db_path(db),
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
@db_option
@click.option(
    "--errors", "show_errors", is_flag=True, help="List every file that was skipped or failed."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(db: Path | None, show_errors: bool, as_json: bool) -> None:
    """Show what the index holds: folders, files, chunks, errors, model, size."""
    with open_store(db, read_only=True) as store:
        stats = store.stats()
        problems = store.problems()
    model = _language_model()
    if as_json:
        click.echo(json.dumps(status_json(stats, problems, db_path(db), model), indent=2))
    else:
        print_status(console, stats, problems, db_path(db), show_errors, model)


def _language_model() -> LanguageModelStatus | None:
    """The model `ask` would load without --model; None when none is installed."""
    from localrag.models.registry import ModelRegistry

    registry = ModelRegistry()
    try:
        entry = registry.entry_for_ask()
    except LocalragError as exc:  # a corrupt models.json, or several and no default
        return LanguageModelStatus(None, None, None, str(exc))
    if entry is None:
        return None
    path = registry.path_of(entry)
    kind: Literal["chat", "base"] | None = None  # None: recorded before localrag looked
    if entry.chat is not None:
        kind = "chat" if entry.chat else "base"
    problem = None if path.is_file() else f"its file is missing: {path}"
    return LanguageModelStatus(entry.name, kind, str(path), problem)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
def forget(paths: tuple[Path, ...], db: Path | None) -> None:
    """Remove folders (or files indexed on their own) from the index.

    Their passages and vectors are deleted from the database (securely: the text does not
    stay in free pages or the WAL); the files themselves are not touched.
    """
    with open_store(db, read_only=False) as store:
        known = {r.path for r in store.roots()}
        for path in paths:
            root = str(path.expanduser().resolve())  # resolved as `index` recorded it
            if root not in known:
                listed = ", ".join(from_here(k) for k in sorted(known)) or "none"
                raise LocalragError(f"{from_here(root)} is not in the index (it holds: {listed})")
            store.forget_root(root)
            console.print(f"Forgot {from_here(root)}; its files were not touched.")
