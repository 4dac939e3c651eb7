"""`localrag finetune dataset` and `train`: training data and a fine-tuned model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from localrag import config
from localrag.cli.base import (
    cli,
    console,
    db_option,
    embedder_option,
    err_console,
    open_store,
)
from localrag.errors import LocalragError
from localrag.finetune.settings import BACKENDS
from localrag.paths import from_here
from localrag.sizes import format_bytes

if TYPE_CHECKING:
    pass


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
    from localrag.embedder import embedder_for_index
    from localrag.llm import load_llm

    with open_store(db, read_only=True) as store:
        embedder = embedder_for_index(store.model_identity(), embedder_name)
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
@click.argument("base")
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
    type=click.Choice(BACKENDS),
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
@click.option(
    "--quantize",
    "quantization",
    default=None,
    help="GGUF type [default: Q4_K_M; for a GGUF base, the fine-tuned tensors' type: Q8_0].",
)
def finetune_train(
    base: str,
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
    quantization: str | None,
) -> None:
    """Fine-tune BASE on DATASET, then install it as NAME.

    BASE is an installed model's name, a .gguf file or a Hugging Face model folder. LoRA
    training (unsloth on a supported GPU, transformers + peft otherwise), then the adapter is
    merged and the model registered with its lineage; `localrag models default NAME` makes
    `ask` and the TUI use it. A GGUF base is dequantized for training (about a minute for
    270M weights) and the adapter merged into the GGUF itself: untouched tensors keep their
    bytes, fine-tuned ones are stored as Q8_0. A folder is converted and quantized to Q4_K_M.
    """
    from localrag.finetune.backends import choose_backend
    from localrag.finetune.gguf_base import is_gguf, resolve_base
    from localrag.finetune.pipeline import check_new_model, finetune_model
    from localrag.finetune.settings import TrainSettings
    from localrag.finetune.sft_data import DataStats
    from localrag.finetune.train import TrainProgress, TrainResult

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
    base_path = resolve_base(base)
    gguf_base = is_gguf(base_path)
    check_new_model(name, quantization, gguf_base=gguf_base)
    settings.check()
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

    def on_trained(result: TrainResult) -> None:
        progress.stop()
        final = result.losses[-1] if result.losses else float("nan")
        done = "Already trained" if result.already_done else "Trained"
        err_console.print(f"{done} {result.steps} steps (last loss {final:.3f}); merging…")

    def on_export(quantization: str) -> None:
        if gguf_base:
            err_console.print(
                f"Merging into {base_path.name} (fine-tuned tensors as {quantization})…"
            )
        else:
            err_console.print(f"Converting and quantizing to {quantization}…")

    if gguf_base:
        err_console.print(f"Dequantizing {base_path.name} for training (once per run)…")

    try:
        with progress:
            result = finetune_model(
                base_path,
                dataset,
                name,
                run_dir,
                settings,
                quantization=quantization,
                resume=resume,
                choice=choice,
                progress=on_step,
                on_data=on_data,
                on_trained=on_trained,
                on_export=on_export,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]Interrupted.[/] Continue with the same command and --resume --out {run_dir}"
        )
        sys.exit(130)
    entry = result.model
    console.print(
        f"Installed {entry.name} ({entry.quantization}, {format_bytes(entry.size_bytes)}). Use "
        f"it with `localrag models default {entry.name}` or `localrag ask --model {entry.name}`."
    )
