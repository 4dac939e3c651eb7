"""LoRA training benchmark: `train_lora` against a bare torch + peft loop on the same batches.

    python bench/bench_finetune.py [--rounds 3] [--steps 30] [--threads 1] [--layers 4]
    python bench/bench_finetune.py --gemma [--rounds 2] [--steps 6] [--threads 2]
    python bench/bench_finetune.py --gemma --dataset DIR [--steps 4]  # a `finetune dataset` set
    python bench/bench_finetune.py ... [--batch 4] [--accum 2] [--max-seq-len 512]

The model is the test suite's tiny Llama-family chat model (random weights, its own tokenizer)
at hidden 256 / intermediate 512 unless told otherwise, or with --gemma the real Gemma 3 270M
(its Q4_K_M GGUF dequantized as `finetune train` does; 262k-token vocabulary); the data are
chats made of the tiny model's training text (short questions, answers of 1-4 sentences: about
half their tokens are labelled), or with --dataset a dataset folder (`finetune dataset` writes
RAFT examples: sources, question and a short answer, so few tokens are labelled). The chats
train at batch 4 x accumulation 2, 512 tokens; a dataset folder at `finetune train`'s own
defaults (batch 1 x accumulation 4, 2,048 tokens), unless --batch/--accum/--max-seq-len say
otherwise. Both sides
train on CPU in float32 with the same LoRA settings (all seven projections), the same seed
and the same micro-batches (localrag's tokenizer and schedule, so the tokens are identical;
the reference pads them, as a plain loop does, and localrag packs them), with a fixed number
of torch threads. The first step's loss (same weights, same batches) is compared too: the two
must agree.

  - localrag: `train_lora` as `localrag finetune train` runs it (token-weighted accumulation,
    gradient clipping, warmup/decay schedule, progress reports, training.json, the adapter;
    checkpoints every 50 steps, so none inside the timed steps);
  - reference: a plain loop: forward, loss / micro-batches, backward, AdamW step, zero_grad.

Each side runs in its own process, rounds interleaved. Throughput counts the tokens of the
steps after the first two (allocator and autograd warm-up) over their wall time, measured from
the end of step 2 to the end of the last step; the ratio localrag / reference is what to compare
across machines (target ≥ 0.9). Also reported: peak RSS of each process, and the whole
`train_lora` call (load, tokenize, train, save) against the reference's load + train.
Prints a table and writes it to bench/results/finetune.txt.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe as describe_machine  # noqa: E402

WARMUP_STEPS = 2  # untimed
CHATS = 48


# -- inputs, made once by the parent ------------------------------------------------------------


def write_inputs(
    work: Path, hidden: int, intermediate: int, layers: int, gemma: bool
) -> tuple[Path, Path]:
    """(model folder, dataset folder) for both sides."""
    from tests.helpers.llm import TRAINING_TEXT, TinySpec, write_tiny_model

    if gemma:
        from localrag.finetune.gguf_base import materialise
        from tests.helpers.gemma import join_gemma

        model = materialise(join_gemma(work / "gemma"), work / "gemma-run")
    else:
        spec = TinySpec("llama", hidden=hidden, intermediate=intermediate, layers=layers)
        model = write_tiny_model(work / "tiny-llama", spec)
    sentences = [s.strip() + "." for s in TRAINING_TEXT.replace("\n", " ").split(".") if s.strip()]
    rng = random.Random(0)
    lines = []
    for i in range(CHATS):  # answers of 1-4 sentences, so micro-batches carry some padding
        question = f"What do the notes say about item {i}? {rng.choice(sentences)}"
        answer = " ".join(rng.sample(sentences, rng.randint(1, 4)))
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"id": i, "messages": messages}))
    data = work / "dataset"
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return model, data


CHAT_SHAPE = (4, 2, 512)  # batch, accumulation, max tokens for the generated chats


def settings_for(args: argparse.Namespace) -> Any:
    from localrag.finetune.train import TrainSettings

    defaults = TrainSettings()
    shape = (
        (defaults.batch_size, defaults.grad_accum, defaults.max_seq_len)
        if args.dataset
        else CHAT_SHAPE
    )
    batch, accum, max_len = (
        chosen if chosen is not None else default
        for chosen, default in zip((args.batch, args.accum, args.max_seq_len), shape, strict=True)
    )
    return TrainSettings(
        lora_r=16,
        lora_alpha=32,
        learning_rate=2e-4,
        max_steps=args.steps,
        batch_size=batch,
        grad_accum=accum,
        warmup_steps=2,
        max_seq_len=max_len,
        threads=args.threads,
    )


# -- the two children ---------------------------------------------------------------------------


def step_tokens(model: Path, data: Path, settings: Any) -> tuple[list[list[Any]], list[int]]:
    """The micro-batches of every optimizer step, and each step's tokens, as train_lora makes
    them (its tokenizer, schedule and collation)."""
    import torch
    import transformers

    from localrag.finetune.sft_data import build_training_set, read_chat_examples
    from localrag.finetune.train import Schedule, _pad_id, collate, resolve_train_file

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model))
    examples = read_chat_examples(resolve_train_file(data))
    dataset, _stats = build_training_set(tokenizer, examples, settings.max_seq_len)
    schedule = Schedule.plan(len(dataset), settings)
    pad = _pad_id(tokenizer)
    steps = [
        [
            collate([dataset[i] for i in schedule.micro_batch(m)], pad, torch)
            for m in schedule.step_micro_batches(step)
        ]
        for step in range(schedule.total_steps)
    ]
    return steps, [sum(int(b["attention_mask"].sum()) for b in step) for step in steps]


def child_localrag(model: Path, data: Path, out: Path, settings: Any) -> dict[str, Any]:
    from localrag.finetune.train import TrainProgress, train_lora

    _steps, tokens = step_tokens(model, data, settings)
    ends: list[float] = []
    losses: list[float] = []

    def on_step(p: TrainProgress) -> None:
        ends.append(time.perf_counter())
        losses.append(p.loss)

    started = time.perf_counter()
    train_lora(model, data, out, settings, progress=on_step)
    total = time.perf_counter() - started
    return _result(ends, tokens, total) | {"first_loss": losses[0]}


def child_reference(model: Path, data: Path, settings: Any) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    from localrag.finetune.backends import LORA_CANDIDATES, quiet_transformers

    steps, tokens = step_tokens(model, data, settings)
    torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    with quiet_transformers():  # the same (silent) loading as train_lora's
        base = transformers.AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32)
    base.config.use_cache = False
    config = peft.LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(LORA_CANDIDATES),
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(settings.seed)
    with quiet_transformers():
        net = peft.get_peft_model(base, config)
    net.train()
    optimizer = torch.optim.AdamW(
        [p for p in net.parameters() if p.requires_grad], lr=settings.learning_rate
    )
    ends: list[float] = []
    first_loss = 0.0
    for number, micro_batches in enumerate(steps):
        labelled = [int((b["labels"][:, 1:] != -100).sum()) for b in micro_batches]
        for batch, count in zip(micro_batches, labelled, strict=True):
            loss = net(**batch).loss
            (loss / len(micro_batches)).backward()
            if number == 0:  # reported token-weighted, as train_lora reports its steps
                first_loss += float(loss.detach()) * count / sum(labelled)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ends.append(time.perf_counter())
    return _result(ends, tokens, time.perf_counter() - started) | {"first_loss": first_loss}


def _result(ends: list[float], tokens: list[int], total_s: float) -> dict[str, Any]:
    """Tokens/s over the steps after the warm-up ones, peak RSS, and the whole run's time."""
    timed = sum(tokens[WARMUP_STEPS:])
    seconds = ends[-1] - ends[WARMUP_STEPS - 1]
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "tokens_per_s": timed / seconds,
        "timed_tokens": timed,
        "timed_steps": len(ends) - WARMUP_STEPS,
        "peak_rss_mb": rss_kib / 1024,
        "total_s": total_s,
    }


def run_child(kind: str, args: argparse.Namespace, work: Path, round_no: int) -> dict[str, Any]:
    result = work / f"{kind}-{round_no}.json"
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--model",
        str(args.model),
        "--data",
        str(args.data),
        "--out",
        str(work / f"run-{kind}-{round_no}"),
        "--result",
        str(result),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
        *(["--gemma"] if args.gemma else []),
        *(["--dataset", str(args.dataset)] if args.dataset else []),
    ]
    for flag, value in (
        ("--batch", args.batch),
        ("--accum", args.accum),
        ("--max-seq-len", args.max_seq_len),
    ):
        if value is not None:
            command += [flag, str(value)]
    subprocess.run(command, check=True)
    return json.loads(result.read_text())


# -- the parent ---------------------------------------------------------------------------------


def bench(args: argparse.Namespace, work: Path) -> None:
    import torch

    args.model, args.data = write_inputs(
        work, args.hidden, args.intermediate, args.layers, args.gemma
    )
    if args.dataset:
        args.data = args.dataset.resolve()
    lines = [
        f"# {describe_machine()}, torch {torch.__version__}",
        f"# python bench/bench_finetune.py {' '.join(sys.argv[1:])}".rstrip(),
    ]
    for line in lines:
        print(line, flush=True)
    ours: list[dict[str, Any]] = []
    ref: list[dict[str, Any]] = []
    for i in range(args.rounds):
        order = ["reference", "localrag"] if i % 2 == 0 else ["localrag", "reference"]
        for kind in order:
            (ref if kind == "reference" else ours).append(run_child(kind, args, work, i))
        lines.append(
            f"round {i + 1}: localrag {ours[-1]['tokens_per_s']:.0f} tok/s, "
            f"reference {ref[-1]['tokens_per_s']:.0f} tok/s"
        )
        print(lines[-1], flush=True)

    def median(results: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in results)

    ours_tps, ref_tps = median(ours, "tokens_per_s"), median(ref, "tokens_per_s")
    rows = [
        ("reference training (torch + peft loop)", f"{ref_tps:.0f} tok/s"),
        ("localrag train_lora training", f"{ours_tps:.0f} tok/s"),
        ("ratio localrag / reference", f"{ours_tps / ref_tps:.2f}"),
        ("reference peak RSS", f"{median(ref, 'peak_rss_mb'):.0f} MB"),
        ("localrag peak RSS", f"{median(ours, 'peak_rss_mb'):.0f} MB"),
        ("reference load + train", f"{median(ref, 'total_s'):.1f} s"),
        ("first step's loss, reference", f"{ref[0]['first_loss']:.4f}"),
        ("first step's loss, localrag", f"{ours[0]['first_loss']:.4f}"),
        ("localrag train_lora call (all of it)", f"{median(ours, 'total_s'):.1f} s"),
    ]
    model = (
        "Gemma 3 270M (dequantized Q4_K_M)"
        if args.gemma
        else f"tiny Llama {args.hidden}/{args.intermediate} x{args.layers} layers"
    )
    shape = settings_for(args)
    lines.append(
        f"# medians of {args.rounds} interleaved rounds, one process each; {model}, "
        "float32, LoRA r16 on 7 projections, "
        f"batch {shape.batch_size} x accum {shape.grad_accum}, at most {shape.max_seq_len} "
        f"tokens, {ours[0]['timed_steps']} timed steps "
        f"({ours[0]['timed_tokens']} tokens) after {WARMUP_STEPS}, {args.threads} torch thread(s)"
    )
    lines += [f"{name:<40} {value:>12}" for name, value in rows]
    print("\n".join(lines[-len(rows) - 1 :]))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "finetune_gemma.txt" if args.gemma else "finetune.txt"
    if args.dataset:
        name = name.replace(".txt", "_dataset.txt")
    (out / name).write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (fixed)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--intermediate", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--gemma", action="store_true", help="the real Gemma 3 270M")
    parser.add_argument(
        "--dataset",
        type=Path,
        help="train on this dataset folder (its train.jsonl; for example what `localrag "
        "finetune dataset` wrote) instead of the generated short chats",
    )
    parser.add_argument("--batch", type=int, help="examples per micro-batch")
    parser.add_argument("--accum", type=int, help="micro-batches per optimizer step")
    parser.add_argument("--max-seq-len", type=int, help="tokens per example at most")
    parser.add_argument("--child", choices=["localrag", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps <= WARMUP_STEPS:
        parser.error(f"--steps must be more than the {WARMUP_STEPS} warm-up steps")
    if args.child:
        settings = settings_for(args)
        if args.child == "localrag":
            result = child_localrag(args.model, args.data, args.out, settings)
        else:
            result = child_reference(args.model, args.data, settings)
        args.result.write_text(json.dumps(result))
        return

    import shutil

    work = Path(tempfile.mkdtemp(prefix="localrag-bench-finetune-"))
    try:
        bench(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
