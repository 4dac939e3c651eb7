"""How the commands show what the library returns: search results, the index status, the
installed models, and retrieval scores, as rich text for people or JSON for programs.

Commands call the library and hand its results here; nothing here opens a store or a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.table import Table
from rich.text import Text

from localrag.paths import from_here
from localrag.sizes import format_bytes

if TYPE_CHECKING:
    from localrag.evaluate import Ablation, RetrievalScores
    from localrag.models.registry import ModelEntry, ModelRegistry
    from localrag.retrieval import SearchResult
    from localrag.store import Stats

BASE_MODEL_NOTE = (
    "{name} is a pre-trained base model (its file has no chat template): it continues text "
    "rather than answering questions, so `ask` shows passages with it. Use it as the base of "
    "`localrag finetune train`; for answers, install an instruct model."
)
# `localrag status` lists this many failed files; --errors lists all.
STATUS_ERRORS_SHOWN = 10


# -- search ---------------------------------------------------------------------------------------


def search_results_json(results: Sequence[SearchResult]) -> list[dict[str, Any]]:
    return [
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


def print_search_results(console: Console, results: Sequence[SearchResult], query: str) -> None:
    """Each passage with its file, location and score, the query's words highlighted."""
    from localrag.retrieval import snippet

    if not results:  # a query with no words never gets here: `search` refuses it first
        console.print("No matching passages.")
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


# -- status ---------------------------------------------------------------------------------------

Problem = tuple[str, str, str]  # path, status ("skipped" | "error"), reason
NO_PROBLEMS = "No files were skipped or failed."
NO_LANGUAGE_MODEL = "none: answers are extractive"


@dataclass(frozen=True)
class LanguageModelStatus:
    """The language model `ask` would load, as `status` shows it."""

    name: str | None  # None when the models folder cannot say (see `problem`)
    kind: Literal["chat", "base"] | None  # None: recorded before localrag looked
    path: str | None
    problem: str | None  # why `ask` could not load it: answers would be extractive


def status_json(
    stats: Stats,
    problems: Sequence[Problem],
    db: Path,
    model: LanguageModelStatus | None,
) -> dict[str, Any]:
    from dataclasses import asdict

    payload = asdict(stats)
    payload["db"] = str(db)
    payload["problems"] = [{"path": p, "status": s, "reason": r} for p, s, r in problems]
    payload["language_model"] = None if model is None else asdict(model)
    return payload


def language_model_line(model: LanguageModelStatus | None) -> str:
    if model is None:
        return NO_LANGUAGE_MODEL
    if model.name is None:
        return f"unavailable, so answers are extractive: {model.problem}"
    kind = {"chat": "chat", "base": "base: answers are extractive", None: "kind not recorded"}
    line = f"{model.name} ({kind[model.kind]})"
    return (
        f"{line}; cannot be used, so answers are extractive: {model.problem}"
        if model.problem
        else line
    )


def print_status(
    console: Console,
    stats: Stats,
    problems: Sequence[Problem],
    db: Path,
    show_all: bool,
    language_model: LanguageModelStatus | None,
) -> None:
    """The index in a few lines, then the failed files (or, with `show_all`, every file
    that was not indexed, skipped ones included)."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("Database", f"{from_here(str(db))} ({format_bytes(stats.db_bytes)})")
    table.add_row("Folders", "\n".join(from_here(r) for r in stats.roots) or "none")
    model = stats.model
    table.add_row(
        "Embedder",
        f"{model['name']} ({model['dim']} dims, {model['fingerprint'][:12]})"
        if model
        else "none yet",
    )
    if stats.reembed:
        move = stats.reembed
        short = str(move["to"]).rsplit("/", 1)[-1]
        table.add_row(
            "Moving to",
            f"{move['to']}: {move['done']} of {move['total']} passages re-embedded; "
            f"`localrag index --reembed --embedder {short}` finishes it",
        )
    table.add_row(
        "Documents", f"{stats.indexed} indexed, {stats.skipped} skipped, {stats.errors} failed"
    )
    table.add_row("Chunks", f"{stats.chunks} ({stats.embeddings} distinct vectors)")
    table.add_row("Language model", Text(language_model_line(language_model)))
    console.print(table)
    errors = [(p, s, r) for p, s, r in problems if s == "error"]
    shown = list(problems) if show_all else errors[:STATUS_ERRORS_SHOWN]
    if not shown:
        if show_all:  # asked for the list: an empty one must say so, not print nothing
            console.print()
            console.print(NO_PROBLEMS)
        return
    console.print()
    console.print("[bold]Files not indexed:[/]" if show_all else "[bold yellow]Failed files:[/]")
    for path, state, reason in shown:
        colour = "yellow" if state == "error" else "dim"
        console.print(f"  [{colour}]{state}[/] {from_here(path)}: {reason}")
    if not show_all and len(errors) > len(shown):
        console.print(f"  … and {len(errors) - len(shown)} more: `localrag status --errors`")


# -- eval retrieval -------------------------------------------------------------------------------


def retrieval_scores_json(scores: Sequence[RetrievalScores]) -> list[dict[str, Any]]:
    return [
        {
            "mode": s.mode,
            "questions": s.questions,
            "mrr": s.mrr,
            **{f"hit@{k}": v for k, v in s.hits_at.items()},
        }
        for s in scores
    ]


def print_retrieval_scores(
    console: Console, scores: Sequence[RetrievalScores], title: str, show_misses: bool
) -> None:
    from localrag.evaluate import DEFAULT_KS

    table = Table(title=title)
    table.add_column("mode")
    for k in DEFAULT_KS:
        table.add_column(f"hit@{k}", justify="right")
    table.add_column("MRR", justify="right")
    for s in scores:
        table.add_row(s.mode, *(f"{s.hits_at[k]:.3f}" for k in DEFAULT_KS), f"{s.mrr:.3f}")
    console.print(table)
    if not show_misses:
        return
    for s in scores:
        console.print(f"[bold]{s.mode}[/]: {len(s.misses)} not found in the top {max(DEFAULT_KS)}")
        for q in s.misses:
            console.print(f"  {q.q}  [dim]({q.file})[/]")


def ablation_json(rows: Sequence[Ablation]) -> list[dict[str, Any]]:
    full = rows[0].scores.mrr
    return [
        {
            "stages": row.label,
            "mrr": row.scores.mrr,
            "mrr_change": row.scores.mrr - full,
            **{f"hit@{k}": v for k, v in row.scores.hits_at.items()},
        }
        for row in rows
    ]


def print_ablation(console: Console, rows: Sequence[Ablation], title: str) -> None:
    """One row per stage taken away, with what MRR loses (the first row keeps them all)."""
    from localrag.evaluate import DEFAULT_KS

    full = rows[0].scores.mrr
    table = Table(title=title)
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


# -- models ---------------------------------------------------------------------------------------


def models_json(
    registry: ModelRegistry, entries: Sequence[ModelEntry], embedders: list[dict[str, Any]]
) -> dict[str, Any]:
    default = registry.default_name()
    listed = [
        {
            **e.to_json(),
            "path": str(registry.path_of(e)),
            "present": registry.path_of(e).is_file(),
            "default": e.name == default,
        }
        for e in entries
    ]
    return {
        "models_dir": str(registry.dir),
        "default": default,
        "models": listed,
        "embedders": embedders,
    }


def print_language_models(
    console: Console, registry: ModelRegistry, entries: Sequence[ModelEntry]
) -> None:
    if not entries:
        console.print(
            f"No language models in {from_here(str(registry.dir))}: run "
            "`localrag models pull` (online) or `localrag models import FILE.gguf`."
        )
        return
    default = registry.default_name()
    table = Table(title="Language models")
    for column in ("", "name", "kind", "quant", "size", "context", "source"):
        table.add_column(column, justify="right" if column in ("size", "context") else "left")
    for e in entries:
        present = registry.path_of(e).is_file()
        table.add_row(
            "*" if e.name == default else "",
            e.name if present else f"{e.name} [red](file missing)[/]",
            model_kind(e),
            e.quantization,
            format_bytes(e.size_bytes),
            str(e.context_length or "?"),
            display_source(e.source),
        )
    console.print(table)


def print_embedders(console: Console, embedders: list[dict[str, Any]], folder: Path) -> None:
    if not embedders:
        console.print(
            f"No embedders in {from_here(str(folder))}: run `localrag models import-embedder`."
        )
        return
    table = Table(title="Embedders")
    for column in ("name", "model", "dims", "source"):
        table.add_column(column)
    for info in embedders:
        name = info["name"]
        if info.get("problem"):
            name = f"{name} [red](unusable)[/]"
        table.add_row(name, info["model"], str(info["dim"] or "?"), str(info["source"]))
    console.print(table)
    for info in embedders:
        if info.get("problem"):
            console.print(f"[red]{info['name']}[/]: {info['problem']}")


def model_kind(entry: ModelEntry) -> str:
    """'chat', 'base' (no chat template: for fine-tuning) or '?' (recorded before we looked)."""
    if entry.chat is None:
        return "?"
    return "chat" if entry.chat else "base"


def display_source(source: str) -> str:
    kind, _, rest = source.partition(":")
    return f"import:{from_here(rest)}" if kind == "import" and rest else source
