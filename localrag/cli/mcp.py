"""`localrag mcp`: serve the index to local agents and editor assistants over MCP (stdio)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from localrag.cli.base import cli, db_option, db_path, embedder_option, err_console

INSTALL_HINT = "`localrag mcp` needs the MCP SDK, an optional extra: pip install 'localrag[mcp]'"


@cli.command("mcp")
@db_option
@embedder_option
@click.option(
    "--index",
    "index_first",
    is_flag=True,
    help="Bring the index's folders up to date once before serving (else nothing is written).",
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
def mcp_command(
    db: Path | None,
    embedder_name: str | None,
    index_first: bool,
    model_name: str | None,
    no_model: bool,
) -> None:
    """Serve the index over MCP on stdin/stdout: search, ask, status, passage.

    For local agents and editor assistants: register `localrag mcp --db INDEX` as a stdio
    server in the client. Read-only unless --index; nothing leaves the machine.
    """
    try:
        import mcp  # noqa: F401 (is the optional extra installed?)
    except ImportError as exc:
        raise click.ClickException(INSTALL_HINT) from exc
    from localrag.embedder import load_embedder
    from localrag.mcp_server import IndexTools, build_server, index_once

    path = db_path(db)
    with _stdout_to_stderr():
        if model_name is not None and not no_model:
            from localrag.models.registry import resolve_model

            resolve_model(model_name)  # a misspelt --model fails here, not at the first ask
        embedder = load_embedder(embedder_name)  # loaded once: each query costs milliseconds
        if index_first:
            report = index_once(path, embedder)
            err_console.print(
                f"Indexed: {report.added} added, {report.updated} updated, {report.moved} moved, "
                f"{report.deleted} deleted, {report.unchanged} unchanged, {report.failed} failed "
                f"in {report.seconds:.1f}s."
            )
        tools = IndexTools(path, embedder, model_name=model_name, use_model=not no_model)
    try:
        build_server(tools).run("stdio")
    except KeyboardInterrupt:
        pass  # ctrl+c where someone tried it in a terminal: no traceback
    finally:
        tools.close()


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
