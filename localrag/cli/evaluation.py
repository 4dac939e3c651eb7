"""`localrag eval retrieval` and `eval answers`: quality on the user's labelled questions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from localrag.cli.base import (
    SEARCH_MODES,
    cli,
    console,
    db_option,
    embedder_option,
    err_console,
    load_reranker_named,
    open_store,
    reranker_option,
)
from localrag.cli.views import (
    ablation_json,
    print_ablation,
    print_retrieval_scores,
    retrieval_scores_json,
)
from localrag.errors import LocalragError

if TYPE_CHECKING:
    from localrag.llm import LocalLLM
    from localrag.reranker import CrossEncoder
    from localrag.retrieval import Mode

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
    type=click.Choice(SEARCH_MODES),
    multiple=True,
    help="Retrieval method(s) to score (default: all three).",
)
@reranker_option
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
    reranker_name: str | None,
    modes: tuple[Mode, ...],
    misses: bool,
    ablate: bool,
    as_json: bool,
) -> None:
    """Score retrieval on a JSONL file of {"q", "file", "answer"}: hit@1/3/5/10 and MRR."""
    from localrag.embedder import embedder_for_index
    from localrag.evaluate import evaluate_retrieval, load_questions
    from localrag.retrieval import Retriever

    items = load_questions(questions)
    reranker = load_reranker_named(reranker_name)
    if ablate:
        _print_ablation(questions, items, db, embedder_name, reranker, as_json)
        return
    with open_store(db, read_only=True) as store:
        embedder = embedder_for_index(store.model_identity(), embedder_name)
        retriever = Retriever(store, embedder, reranker=reranker)
        scores = [
            evaluate_retrieval(retriever, items, mode=m)
            for m in (modes or ("hybrid", "vector", "keyword"))
        ]
    if as_json:
        click.echo(json.dumps(retrieval_scores_json(scores), indent=2))
    else:
        title = f"{len(items)} questions from {questions.name}"
        print_retrieval_scores(console, scores, title, show_misses=misses)


def _print_ablation(
    questions: Path,
    items: list[Any],
    db: Path | None,
    embedder_name: str | None,
    reranker: CrossEncoder | None,
    as_json: bool,
) -> None:
    from localrag.embedder import embedder_for_index
    from localrag.evaluate import ablate_retrieval

    with open_store(db, read_only=True) as store:
        embedder = embedder_for_index(store.model_identity(), embedder_name)
        rows = ablate_retrieval(store, embedder, items, reranker)
    if as_json:
        click.echo(json.dumps(ablation_json(rows), indent=2))
    else:
        title = f"What each stage buys: {len(items)} questions from {questions.name}"
        print_ablation(console, rows, title)


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
    from localrag.answer import AnswerSettings
    from localrag.answer_eval import (
        chart_svg,
        evaluate_model,
        judge_rows,
        load_held_out,
        scores_json,
    )
    from localrag.embedder import embedder_for_index
    from localrag.models.registry import resolve_model

    held_out = load_held_out(questions)[:limit]
    names = {"base": base_model, **({"fine-tuned": tuned_model} if tuned_model else {})}
    for name in [*names.values(), *([judge_model] if judge_model else [])]:
        resolve_model(name)  # an unknown name fails now, not after minutes of answering
    rows = []
    with open_store(db, read_only=True) as store:
        embedder = embedder_for_index(store.model_identity(), embedder_name)
        with err_console.status("Answering…") as status:

            def on_progress(mode: str, done: int, total: int) -> None:
                status.update(f"{mode}: question {done + 1} of {total}")

            answer_settings = AnswerSettings.from_config()
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
                        settings=answer_settings,
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
