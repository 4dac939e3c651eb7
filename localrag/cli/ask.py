"""`localrag search`, `ask` and `tui`: questions to the index, answered in the terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text

from localrag.cli.base import (
    SEARCH_MODES,
    cli,
    console,
    db_option,
    db_path,
    embedder_option,
    err_console,
    load_reranker_named,
    open_store,
    private_process,
    reranker_option,
)
from localrag.cli.views import print_search_results, search_results_json
from localrag.errors import LocalragError
from localrag.paths import from_here

if TYPE_CHECKING:
    from localrag.retrieval import Mode


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
    type=click.Choice(SEARCH_MODES),
    default="hybrid",
    show_default=True,
    help="Retrieval method.",
)
@reranker_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def search(
    query: str,
    db: Path | None,
    embedder_name: str | None,
    reranker_name: str | None,
    k: int,
    path_filter: str | None,
    mode: Mode,
    as_json: bool,
) -> None:
    """Search the index by meaning and by keyword."""
    from localrag.embedder import embedder_for_index
    from localrag.retrieval import NO_WORDS_MESSAGE, Retriever, has_words

    if not has_words(query):  # nothing could match: a usage error, as click's own
        raise click.UsageError(NO_WORDS_MESSAGE)
    with open_store(db, read_only=True) as store:
        retriever = Retriever(
            store,
            embedder_for_index(store.model_identity(), embedder_name),
            reranker=load_reranker_named(reranker_name),
        )
        results = retriever.search(query, k, path_filter=path_filter, mode=mode)
    if as_json:
        click.echo(json.dumps(search_results_json(results), ensure_ascii=False, indent=2))
    else:
        print_search_results(console, results, query)


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
@reranker_option
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
    reranker_name: str | None,
    chat: bool,
    as_json: bool,
    verbose: bool,
) -> None:
    """Answer QUESTION from your documents, citing the passages used.

    Without QUESTION (or with --chat) it keeps a conversation going: follow-up questions
    like "and the second one?" are understood in context. Ctrl-D or an empty line ends it.
    """
    from localrag.answer import Answerer, AnswerSettings, Conversation, NoModel
    from localrag.cli.ask_view import answer_json, print_answer
    from localrag.embedder import embedder_for_index
    from localrag.llm import LocalLLM, load_llm
    from localrag.models.registry import resolve_model
    from localrag.retrieval import has_words

    interactive = question is None or chat
    if question is None and not sys.stdin.isatty():
        question = sys.stdin.read().strip()
        interactive = chat
    if not interactive and not question:
        raise click.UsageError("give a question, or run without one in a terminal to chat")
    if not interactive and question and not has_words(question):
        raise click.UsageError("the question has no words to search for")
    settings = AnswerSettings.from_config()
    with open_store(db, read_only=True) as store:
        embedder = embedder_for_index(store.model_identity(), embedder_name)
        why = NoModel("not asked") if no_model else None
        failed_load_said = False

        def load_model() -> tuple[LocalLLM | None, NoModel | None]:
            """Called when the first answer needs the model (not for passages-only ones)."""
            nonlocal failed_load_said
            try:
                with err_console.status("Loading the language model…"):
                    loaded = load_llm(
                        model_name,
                        n_ctx=n_ctx,
                        max_tokens=max_tokens,
                        temperature=temperature,
                        n_threads=n_threads,
                        n_gpu_layers=n_gpu_layers,
                    )
            except LocalragError as exc:
                if model_name is not None:
                    raise  # the model the user named: stop, it is not there or broken
                # The default model, as the TUI does: answer with passages, say why once.
                failed = NoModel.failed(exc)
                err_console.print(Text(failed.hint, style="yellow"), soft_wrap=True)
                failed_load_said = True
                return None, failed
            return loaded, None

        if model_name is not None and not no_model:
            resolve_model(model_name)  # a model the user named that is not there: say so now
        answerer = Answerer(
            store,
            embedder,
            None,
            settings,
            no_model=why,
            load_model=None if no_model else load_model,
            reranker=load_reranker_named(reranker_name, settings),
        )
        conversation = Conversation()
        # Say how to add a model once, not after every answer (a failed load says so itself).
        hinted = False
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
                            show_hint=not (hinted or failed_load_said),
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
            if answerer.loaded_llm is not None:
                answerer.loaded_llm.close()


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
@reranker_option
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
    reranker_name: str | None,
) -> None:
    """The terminal app: ask questions, read the cited sources, keep FOLDERS indexed.

    FOLDERS are added to the knowledge base first (like `localrag index`); they and every
    folder already in it are watched while the app runs.
    """
    from localrag.answer import AnswerSettings
    from localrag.assistant import Assistant
    from localrag.tui.app import LocalragApp

    private_process()  # `python tui.py` runs this command without the group
    for folder in folders:
        if not folder.is_dir():
            problem = "not a folder" if folder.exists() else "does not exist"
            raise click.BadParameter(f"{problem}: {folder}", param_hint="FOLDERS")
    assistant = Assistant(
        db_path(db),
        embedder_name=embedder_name,
        llm_overrides={"n_ctx": n_ctx, "n_threads": n_threads, "n_gpu_layers": n_gpu_layers},
        settings=AnswerSettings.from_config(reranker=reranker_name),
    )
    if folders:
        from localrag.store import Store

        try:  # also run as `python tui.py`, outside the group that turns these into messages
            with Store.open(db_path(db)) as store:
                for folder in folders:
                    store.add_root(str(folder.expanduser().resolve()))
        except LocalragError as exc:
            raise click.ClickException(str(exc)) from exc
    from textual.app import InvalidThemeError

    try:
        app = LocalragApp(
            assistant,
            use_model=not no_model,
            model_name=model_name,
            watch=not no_watch,
            polling=polling,
            theme=theme,
        )
    except InvalidThemeError as exc:
        assistant.close()
        from textual.theme import BUILTIN_THEMES

        known = ", ".join(sorted(BUILTIN_THEMES))
        raise click.BadParameter(
            f"no theme {theme!r}; known: {known}", param_hint="--theme"
        ) from exc
    try:
        app.run()
    finally:
        assistant.close()
    if app.return_code:  # it stopped on an error: one line here, the details in a private file
        from localrag.tui.app import crash_log_path

        error = app._exception
        what = f"{type(error).__name__}: {error}" if error else "an unexpected error"
        raise click.ClickException(
            f"the terminal app stopped on {what} (details: {from_here(str(crash_log_path()))})"
        )


# -- finetune -------------------------------------------------------------------------------------
