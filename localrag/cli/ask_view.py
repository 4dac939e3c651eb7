"""How `localrag ask` shows an answer in a terminal: streamed text, then checkable sources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.text import Text

from localrag.answer import Answer


def print_answer(
    answer: Answer,
    console: Console,
    err: Console,
    display_path: Callable[[str], str],
    *,
    verbose: bool = False,
    show_hint: bool = True,
) -> None:
    """Stream the text as it comes, then list the sources with file and place."""
    out = console.file
    for piece in answer:
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    if answer.mode == "collection":
        return  # its text already lists the files and where they match
    if answer.sources:
        _print_sources(answer, console, display_path)
    if answer.invalid:
        numbers = ", ".join(f"[{n}]" for n in answer.invalid)
        err.print(
            f"[yellow]Removed citation{'s' if len(answer.invalid) > 1 else ''} {numbers}: "
            "the answer cited sources that were not given to it.[/]"
        )
    if answer.mode == "generated" and answer.sources and not answer.cited:
        err.print("[yellow]The answer cites none of the sources: check it against them.[/]")
    if answer.hint and show_hint:
        err.print(f"[dim]{answer.hint}[/]")
    if verbose and answer.reasoning:
        err.print(Text(f"Model's reasoning: {answer.reasoning}", style="dim"))
    if verbose and answer.stats is not None:
        s = answer.stats
        first = f"{s.first_token_s:.2f} s to first token, " if s.first_token_s else ""
        err.print(
            f"[dim]{s.prompt_tokens} prompt tokens, {s.generated_tokens} generated, "
            f"{first}{s.tokens_per_s:.1f} tokens/s[/]"
        )


def _print_sources(answer: Answer, console: Console, display_path: Callable[[str], str]) -> None:
    cited = {s.number for s in answer.cited}
    console.print()
    console.print(Text("Sources", style="bold"))
    for source in answer.sources:
        used = answer.mode != "generated" or source.number in cited
        line = Text()
        line.append(f"[{source.number}] ", style="bold" if used else "dim")
        line.append(display_path(source.path), style="cyan" if used else "dim")
        line.append(f"  {source.location}", style="green" if used else "dim")
        if not used:
            line.append("  (given, not cited)", style="dim")
        console.print(line)
        for other in source.result.also_in:
            console.print(Text(f"    also in {display_path(other)}", style="dim"))


def answer_json(answer: Answer) -> dict[str, Any]:
    """The whole answer as data (the stream is consumed)."""
    text = answer.read()
    cited = {s.number for s in answer.cited}
    payload: dict[str, Any] = {
        "question": answer.question,
        "mode": answer.mode,
        "search_query": answer.search_query,
        "answer": text,
        "reasoning": answer.reasoning or None,
        "sources": [
            {
                "number": s.number,
                "path": s.path,
                "location": s.location,
                "line_start": s.result.chunk.line_start,
                "line_end": s.result.chunk.line_end,
                "page_start": s.result.chunk.page_start,
                "page_end": s.result.chunk.page_end,
                "cited": s.number in cited,
                "text": s.passage.text,
                "also_in": s.result.also_in,
            }
            for s in answer.sources
        ],
        "invalid_citations": answer.invalid,
        "hint": answer.hint,
    }
    if answer.collection is not None:
        c = answer.collection
        payload["collection"] = {
            "kind": c.kind,
            "subject": c.query.subject,
            "count": c.count,
            "matched": c.matched,
            "candidates": c.candidates,
            "files": [
                {
                    "path": row.path,
                    "relation": row.relation,
                    "passages": row.passages,
                    "location": row.location,
                    "status": row.status,
                    "format": row.format,
                    "size": row.size,
                }
                for row in c.rows
            ],
        }
    if answer.stats is not None:
        s = answer.stats
        payload["stats"] = {
            "prompt_tokens": s.prompt_tokens,
            "generated_tokens": s.generated_tokens,
            "first_token_s": s.first_token_s,
            "tokens_per_s": s.tokens_per_s,
        }
    return payload
