"""`localrag mcp`: serve the index to local agents and editor assistants over MCP (stdio)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from localrag.cli.base import (
    cli,
    db_option,
    db_path,
    embedder_option,
    err_console,
    recorded_model,
    reranker_option,
)

INSTALL_HINT = "`localrag mcp` needs the MCP SDK, an optional extra: pip install 'localrag[mcp]'"


@cli.command("mcp")
@db_option
@embedder_option
@click.option(
    "--index",
    "index_first",
    is_flag=True,
    help="Bring the index's folders up to date once, in the background while serving "
    "(`status` shows its progress; else nothing is written).",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    help="Model name or .gguf path for `ask` (default: the default model).",
)
@click.option(
    "--no-model", is_flag=True, help="`ask` answers with the best passages; no model is loaded."
)
@reranker_option
def mcp_command(
    db: Path | None,
    embedder_name: str | None,
    index_first: bool,
    model_name: str | None,
    no_model: bool,
    reranker_name: str | None,
) -> None:
    """Serve the index over MCP on stdin/stdout: search, ask, status, passage.

    For local agents and editor assistants: register `localrag mcp --db INDEX` as a stdio
    server in the client. Read-only unless --index; nothing leaves the machine.
    """
    try:
        import mcp  # noqa: F401 (is the optional extra installed?)
    except ImportError as exc:
        raise click.ClickException(INSTALL_HINT) from exc
    from localrag.answer import AnswerSettings
    from localrag.embedder import embedder_for_index
    from localrag.mcp_server import BackgroundIndex, IndexTools, build_server

    path = db_path(db)
    with _stdout_to_stderr():
        if model_name is not None and not no_model:
            from localrag.models.registry import resolve_model

            resolve_model(model_name)  # a misspelt --model fails here, not at the first ask
        # Loaded once: each query then costs milliseconds.
        embedder = embedder_for_index(recorded_model(db), embedder_name)
    # Not before serving: a long first pass would outlast the client's wait for `initialize`.
    indexing = BackgroundIndex(path, embedder, on_finish=_say) if index_first else None
    tools = IndexTools(
        path,
        embedder,
        model_name=model_name,
        use_model=not no_model,
        settings=AnswerSettings.from_config(reranker=reranker_name),
        indexing=indexing,
    )
    try:
        build_server(tools).run("stdio")  # starts `indexing` once serving
    except KeyboardInterrupt:
        pass  # ctrl+c where someone tried it in a terminal: no traceback
    finally:
        tools.close()
    if indexing is not None and indexing.running():
        _exit_now()


def _exit_now() -> None:
    """End the process without Python's shutdown: a pass still inside the embedding model
    would have onnxruntime torn down under it (C++ terminate, an abort). Every file the pass
    committed is kept; the one it was on is rolled back by SQLite and done by the next pass."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _say(line: str) -> None:
    """The pass's outcome, on stderr (the client's server log), from the pass's thread."""
    err_console.print(line, markup=False, soft_wrap=True)  # one line per message in a log


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Before serving, stdout is the protocol's to be: anything a library writes to it while
    loading (from Python or C) goes to stderr instead. (The SDK does the same while serving.)"""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
