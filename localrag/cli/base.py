"""The `localrag` command group, the options its commands share, and the process set-up."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from localrag import config
from localrag.chunking import MIN_MAX_TOKENS
from localrag.errors import LocalragError

if TYPE_CHECKING:
    from localrag.answer import AnswerSettings
    from localrag.reranker import CrossEncoder

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


class _Group(click.Group):
    """Print LocalragError as one friendly line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LocalragError as exc:
            raise click.ClickException(str(exc)) from exc


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
reranker_option = click.option(
    "--reranker",
    "reranker_name",
    default=None,
    help="A cross-encoder under models/rerankers (`models import-reranker`) that reorders the "
    "best 30 passages: one model call per passage (default: config.toml [answer] reranker; "
    "`none` for none).",
)


def load_reranker_named(
    name: str | None, settings: AnswerSettings | None = None
) -> CrossEncoder | None:
    """The reranker `--reranker` names, else config.toml's; None for none."""
    from localrag.reranker import configured_reranker

    return configured_reranker(name, settings)


max_file_size_option = click.option(
    "--max-file-size", type=float, default=None, help="Skip files larger than this many MB."
)
chunk_tokens_option = click.option(
    "--chunk-tokens",
    type=click.IntRange(MIN_MAX_TOKENS),
    default=None,
    help="Passage size in embedder tokens (default: the most the embedder takes).",
)
# `localrag.retrieval.Mode`, spelled out so that a command's options do not import the
# retrieval stack (numpy, SQLite) before the command runs; a test keeps them equal.
SEARCH_MODES = ("hybrid", "vector", "keyword")

ignore_option = click.option(
    "--ignore", multiple=True, help="Extra gitignore-style pattern to skip (repeatable)."
)


@click.group(cls=_Group)
@click.version_option(package_name="localrag")
def cli() -> None:
    """Private, offline question answering over the documents on your machine."""
    private_process()


def private_process() -> None:
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


def db_path(db: Path | None) -> Path:
    return db if db is not None else config.default_db_path()


@contextmanager
def open_store(db: Path | None, *, read_only: bool) -> Iterator[Any]:
    """The index: created when absent unless `read_only` (which never writes a byte)."""
    from localrag.store import Store

    store = Store.open(db_path(db), read_only=read_only)
    try:
        yield store
    finally:
        store.close()


def recorded_model(db: Path | None) -> dict[str, Any] | None:
    """The embedding model an existing index records; None for a new or empty one."""
    path = db_path(db)
    if not path.exists():
        return None
    with open_store(path, read_only=True) as store:
        recorded: dict[str, Any] | None = store.model_identity()
        return recorded


# -- index ----------------------------------------------------------------------------------------
