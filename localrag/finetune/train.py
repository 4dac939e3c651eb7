"""LoRA supervised fine-tuning of a Hugging Face base model on chat examples.

One plain torch loop serves both back ends (transformers + peft anywhere, unsloth on a GPU):
AdamW, gradient accumulation with token-weighted losses, linear warmup then linear decay,
gradient clipping. It is deterministic on CPU for a seed, checkpoints atomically every
`save_every` optimizer steps (adapter, optimizer, scheduler, RNG states, data position), and
resumes from the newest checkpoint to the same result as an uninterrupted run.

Outputs in OUT: adapter/ (a peft adapter, whichever back end trained it), training.json (what
was trained, on what, how, and the per-step losses), checkpoints/step-N/.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from localrag.errors import LocalragError
from localrag.finetune.backends import (
    BackendChoice,
    LoadedModel,
    choose_backend,
    import_unsloth,
    library_versions,
    load_peft,
    load_unsloth,
    quiet_transformers,
    require_stack,
    require_torch,
)
from localrag.finetune.settings import RESULT_SETTINGS, TrainSettings
from localrag.finetune.sft_data import (
    IGNORE,
    DataStats,
    Messages,
    TokenizedExample,
    build_training_set,
    read_chat_examples,
)
from localrag.hashing import sha256_file

TRAINING_JSON = "training.json"
ADAPTER_DIR = "adapter"
CHECKPOINTS_DIR = "checkpoints"
STATE_JSON = "state.json"
TRAINER_STATE = "trainer_state.pt"
FORMAT = 1


@dataclass(frozen=True)
class TrainProgress:
    """Reported after every optimizer step."""

    step: int
    total_steps: int
    loss: float
    learning_rate: float
    tokens_per_s: float
    eta_s: float
    epoch: float  # fractional epochs done


@dataclass
class TrainResult:
    """Where the adapter went and how the run went."""

    out_dir: Path
    adapter_dir: Path
    training_json: Path
    choice: BackendChoice
    steps: int
    losses: list[float]
    data: DataStats
    resumed_from: int | None = None
    duration_s: float = 0.0
    already_done: bool = False  # --resume found this run finished; nothing was trained


ProgressFn = Callable[[TrainProgress], None]


# --------------------------------------------------------------------------- hashing


def _sha256_files(paths: list[Path], root: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def model_files(base_dir: Path) -> list[Path]:
    """config.json and the weight files: what identifies a base model's numbers."""
    names = {"config.json", "model.safetensors.index.json", "pytorch_model.bin.index.json"}
    files = [
        p
        for p in base_dir.iterdir()
        if p.is_file() and (p.name in names or p.suffix in (".safetensors", ".bin"))
    ]
    return sorted(files, key=lambda p: p.name)


def hash_base_model(base_dir: Path) -> str:
    """sha256 over config.json and the weight files (names and contents)."""
    files = model_files(base_dir)
    if not any(p.name == "config.json" for p in files):
        raise LocalragError(f"{base_dir} is not a Hugging Face model folder (no config.json)")
    return _sha256_files(files, base_dir)


# --------------------------------------------------------------------------- data


def resolve_train_file(data: Path) -> Path:
    """A dataset folder means its train.jsonl; a file is used as given."""
    data = Path(data)
    return data / "train.jsonl" if data.is_dir() else data


def manifest_dataset_sha256(train_file: Path) -> str | None:
    """The dataset builder's hash, from the manifest.json beside train.jsonl, if there is one."""
    manifest = train_file.parent / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        value = json.loads(manifest.read_text(encoding="utf-8")).get("dataset_sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Schedule:
    """How many micro-batches and optimizer steps a run has, and which examples each holds."""

    n_examples: int
    batch_size: int
    grad_accum: int
    seed: int
    micro_per_epoch: int
    total_micro: int
    total_steps: int

    @classmethod
    def plan(cls, n_examples: int, settings: TrainSettings) -> Schedule:
        micro_per_epoch = math.ceil(n_examples / settings.batch_size)
        if settings.max_steps is not None:
            total_steps = settings.max_steps
            total_micro = total_steps * settings.grad_accum
        else:
            total_micro = micro_per_epoch * settings.epochs
            total_steps = math.ceil(total_micro / settings.grad_accum)
        return cls(
            n_examples,
            settings.batch_size,
            settings.grad_accum,
            settings.seed,
            micro_per_epoch,
            total_micro,
            total_steps,
        )

    def micro_batch(self, index: int) -> list[int]:
        """Example indices of micro-batch `index`: a fresh seeded shuffle every epoch."""
        epoch, within = divmod(index, self.micro_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n_examples)
        return [int(i) for i in order[within * self.batch_size : (within + 1) * self.batch_size]]

    def micro_done(self, steps: int) -> int:
        """Micro-batches consumed after `steps` optimizer steps: the data order position."""
        return min(steps * self.grad_accum, self.total_micro)

    def step_micro_batches(self, step: int) -> range:
        """The micro-batches optimizer step `step` (0-based) accumulates."""
        start = step * self.grad_accum
        return range(start, min(start + self.grad_accum, self.total_micro))


def collate(examples: list[TokenizedExample], pad_id: int, torch: Any) -> dict[str, Any]:
    """Right-padded tensors; padding is masked out of attention and loss."""
    width = max(len(e.input_ids) for e in examples)
    ids, mask, labels = [], [], []
    for e in examples:
        pad = width - len(e.input_ids)
        ids.append(e.input_ids + [pad_id] * pad)
        mask.append([1] * len(e.input_ids) + [0] * pad)
        labels.append(e.labels + [IGNORE] * pad)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


# A packed row holds several examples end to end (below); rows are at most this long, or the
# micro-batch's longest example if that is longer, so attention (quadratic in a row's length)
# never costs more than the padded batch's.
PACK_ROW_TOKENS = 512


def pack_rows(lengths: list[int], capacity: int) -> list[list[int]]:
    """Example indexes grouped into rows of at most `capacity` tokens: first fit, longest
    first (an example longer than `capacity` gets a row of its own)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, left in enumerate(room):
            if lengths[i] <= left:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def collate_packed(examples: list[TokenizedExample], pad_id: int, torch: Any) -> dict[str, Any]:
    """The micro-batch with (almost) no padding: examples end to end in rows, each restarting
    its position ids at 0, and no attention mask.

    transformers reads restarting positions as separate sequences (its "packed" format):
    each example attends only to itself and sees the positions it would alone, so the loss
    is the padded batch's (`packing_matches` checks that for the model in hand). The token
    before an example is another example's, so an example's first token is never a target
    (as position 0 of a padded row never is). A row shorter than the longest ends in pad
    tokens that form a sequence of their own, without labels.
    """
    capacity = max(PACK_ROW_TOKENS, *(len(e.input_ids) for e in examples))
    rows = pack_rows([len(e.input_ids) for e in examples], capacity)
    width = max(sum(len(examples[i].input_ids) for i in row) for row in rows)
    ids, positions, labels = [], [], []
    for row in rows:
        row_ids: list[int] = []
        row_positions: list[int] = []
        row_labels: list[int] = []
        for i in row:
            e = examples[i]
            row_ids += e.input_ids
            row_positions += range(len(e.input_ids))
            row_labels += [IGNORE, *e.labels[1:]]
        pad = width - len(row_ids)
        ids.append(row_ids + [pad_id] * pad)
        positions.append(row_positions + list(range(pad)))
        labels.append(row_labels + [IGNORE] * pad)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "position_ids": torch.tensor(positions, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


def packing_matches(model: Any, examples: list[TokenizedExample], pad_id: int, torch: Any) -> bool:
    """Does this model compute the same per-token loss for packed rows as for padded ones?

    Packing relies on the model building its attention masks from restarting position ids
    (transformers 5 does for its own architectures); a model that does not would let
    examples attend to each other. Checked on two short examples in eval mode (no dropout,
    no random numbers drawn), before training; without a match, batches stay padded.
    """
    if len(examples) < 2:
        return True  # one example: packed and padded are the same batch
    short = [TokenizedExample(e.input_ids[:48], list(e.input_ids[:48])) for e in examples[:2]]

    def token_losses(batch: dict[str, Any]) -> Any:
        labels = batch.pop("labels")
        logits = model(**batch, use_cache=False).logits.float()
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=IGNORE, reduction="none"
        )
        return losses[labels[:, 1:] != IGNORE]

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            padded = {k: v.to(device) for k, v in collate(short, pad_id, torch).items()}
            packed = {k: v.to(device) for k, v in collate_packed(short, pad_id, torch).items()}
            # The same targets, in another order where packing put the longer example first.
            a, b = token_losses(padded).sort().values, token_losses(packed).sort().values
            return bool(a.shape == b.shape and torch.allclose(a, b, rtol=1e-3, atol=1e-3))
    finally:
        model.train(was_training)


def answer_loss(model: Any, batch: dict[str, Any], torch: Any) -> Any:
    """The mean next-token loss over the labelled (answer) tokens, the same number as the
    model's own `labels=` loss, but with the output layer applied only where a label follows.

    The output layer multiplies every position by the whole vocabulary (262k rows for Gemma 3):
    with labels on the answer only, most of that work was thrown away. `logits_to_keep` with a
    boolean mask makes the model project just those positions, through its own head (logit
    soft-capping and all).
    """
    labels = batch["labels"]
    targets = labels[:, 1:] != IGNORE
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = targets  # the position before each labelled token predicts it
    inputs = {k: v for k, v in batch.items() if k != "labels"}  # padded, or packed: no mask
    # No cache: with one, transformers would not read packed rows' positions as sequences.
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
    logits = logits.reshape(-1, logits.shape[-1])
    return torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][targets])


def _counted_labels(batch: dict[str, Any]) -> int:
    """Tokens the model's shifted loss averages over: labels after the first position."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup over `warmup` steps (the first step already learns), then linear decay."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


# --------------------------------------------------------------------------- checkpoints


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Put a finished folder in place under its final name in one rename."""
    if final.exists():
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def checkpoint_steps(out_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in OUT/checkpoints, oldest first."""
    root = out_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    steps = []
    for p in root.iterdir():
        number = p.name.removeprefix("step-")
        if p.name.startswith("step-") and number.isdigit() and (p / STATE_JSON).is_file():
            steps.append(int(number))
    return sorted(steps)


def _rng_state(torch: Any) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(torch: Any, state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class _Run:
    """Everything the loop carries from step to step; what a checkpoint saves."""

    step: int = 0  # optimizer steps done
    losses: list[float] = field(default_factory=list)
    tokens: int = 0
    elapsed_s: float = 0.0  # summed over the sessions of a resumed run
    resumed_from: list[int] = field(default_factory=list)


def _save_checkpoint(
    out_dir: Path,
    run: _Run,
    fingerprint: dict[str, Any],
    model: Any,
    trainer_state: dict[str, Any],
    data_position: int,
    keep: int,
) -> Path:
    import torch

    root = out_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{run.step}"
    tmp = root / f".step-{run.step}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(str(tmp / ADAPTER_DIR))
    torch.save(trainer_state, tmp / TRAINER_STATE)
    state = {
        "format": FORMAT,
        "step": run.step,
        "data_position": data_position,  # micro-batches consumed
        "losses": run.losses,
        "tokens": run.tokens,
        "elapsed_s": run.elapsed_s,
        "resumed_from": run.resumed_from,
        "fingerprint": fingerprint,
    }
    (tmp / STATE_JSON).write_text(json.dumps(state, indent=1), encoding="utf-8")
    _replace_dir(tmp, final)
    for old in checkpoint_steps(out_dir)[:-keep]:
        shutil.rmtree(root / f"step-{old}", ignore_errors=True)
    return final


def _fingerprint_diff(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    diffs = [
        f"{name}: {saved['settings'].get(name)!r} → {current['settings'].get(name)!r}"
        for name in RESULT_SETTINGS
        if saved["settings"].get(name) != current["settings"].get(name)
    ]
    for key, what in (("base_sha256", "base model"), ("train_sha256", "training data")):
        if saved.get(key) != current.get(key):
            diffs.append(f"the {what} changed")
    return diffs


def _load_checkpoint(
    path: Path, fingerprint: dict[str, Any], model: Any, peft: Any, torch: Any
) -> tuple[_Run, dict[str, Any]]:
    state = json.loads((path / STATE_JSON).read_text(encoding="utf-8"))
    diffs = _fingerprint_diff(state["fingerprint"], fingerprint)
    if diffs:
        raise LocalragError(
            f"cannot resume from {path}: it was trained differently ({'; '.join(diffs)}). "
            "Train into a new folder, or use the same settings and data."
        )
    from safetensors.torch import load_file

    weights = load_file(str(path / ADAPTER_DIR / "adapter_model.safetensors"))
    peft.set_peft_model_state_dict(model, weights)
    trainer_state = torch.load(path / TRAINER_STATE, weights_only=True)
    run = _Run(
        step=int(state["step"]),
        losses=[float(x) for x in state["losses"]],
        tokens=int(state["tokens"]),
        elapsed_s=float(state["elapsed_s"]),
        resumed_from=[*state.get("resumed_from", []), int(state["step"])],
    )
    return run, trainer_state


# --------------------------------------------------------------------------- the loop


def _autocast(torch: Any, loaded: LoadedModel) -> contextlib.AbstractContextManager[Any]:
    if loaded.device == "cuda" and loaded.compute_dtype in (torch.bfloat16, torch.float16):
        return torch.autocast("cuda", dtype=loaded.compute_dtype)
    return contextlib.nullcontext()


def _accumulate(
    batches: list[dict[str, Any]],
    loaded: LoadedModel,
    scaler: Any,
    torch: Any,
    *,
    head_on_answers: bool,
) -> float:
    """Forward and backward one optimizer step's micro-batches; returns the step's loss.

    Token-weighted: each micro-batch's mean loss counts by its answer tokens, so the step's
    gradient and loss are the mean over all of them whatever the padding or batch split.
    """
    counts = [_counted_labels(b) for b in batches]
    window = max(1, sum(counts))
    step_loss = 0.0
    for batch, count in zip(batches, counts, strict=True):
        if count == 0:
            continue
        on_device = {k: v.to(loaded.device) for k, v in batch.items()}
        with _autocast(torch, loaded):
            if head_on_answers:
                loss = answer_loss(loaded.model, on_device, torch)
            else:  # unsloth computes its loss its own (chunked) way
                loss = loaded.model(**on_device).loss
        scaler.scale(loss * (count / window)).backward()
        step_loss += float(loss.detach()) * count / window
    return step_loss


def _load_tokenizer(base_dir: Path, transformers: Any) -> Any:
    with quiet_transformers():
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(base_dir))
    if not getattr(tokenizer, "chat_template", None):
        raise LocalragError(
            f"{base_dir} has no chat template; fine-tune a chat (instruct) model, whose template "
            "the training examples are rendered with"
        )
    return tokenizer


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _prepare_out_dir(out_dir: Path, resume: bool) -> None:
    if resume:
        return
    if checkpoint_steps(out_dir) or (out_dir / ADAPTER_DIR).exists():
        raise LocalragError(
            f"{out_dir} already holds a training run; resume it, or train into a new folder"
        )


def train_lora(
    base_dir: Path,
    data: Path,
    out_dir: Path,
    settings: TrainSettings | None = None,
    *,
    resume: bool = False,
    progress: ProgressFn | None = None,
    choice: BackendChoice | None = None,
    on_data: Callable[[DataStats], None] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `data` (train.jsonl or its folder) into OUT; returns the result.

    `choice` overrides choose_backend(settings). With `resume`, training continues from the
    newest checkpoint in OUT (or starts, if there is none). `on_data` hears what tokenizing
    did to the examples (used, truncated, skipped) before the model is loaded.
    """
    settings = settings or TrainSettings()
    settings.check()
    base_dir, out_dir = Path(base_dir).resolve(), Path(out_dir)
    train_file = resolve_train_file(Path(data))
    examples = read_chat_examples(train_file)
    base_sha = hash_base_model(base_dir)
    _prepare_out_dir(out_dir, resume)
    if resume:
        finished = finished_run(out_dir, base_sha, train_file, settings)
        if finished is not None:
            return finished
    choice = choice or choose_backend(settings)
    if choice.name == "unsloth":
        import_unsloth()  # before transformers and peft, which it patches when imported
    job = _Job(base_dir, base_sha, train_file, examples, out_dir, settings, choice, resume)
    with torch_threads(settings.threads) as threads:
        return _train(job, threads, progress, on_data)


def finished_run(
    out_dir: Path, base_sha: str, train_file: Path, settings: TrainSettings
) -> TrainResult | None:
    """The run OUT already finished with this base, data and settings, as its training.json
    tells; None when there is none or it differs. Resuming it again has nothing to train."""
    try:
        record = json.loads((out_dir / TRAINING_JSON).read_text(encoding="utf-8"))
        dataset = record["dataset"]
        ran = {
            "settings": record["settings"],
            "base_sha256": record["base_model"]["sha256"],
            "train_sha256": dataset["train_sha256"],
        }
        now = asdict(settings)
        if settings.target_modules is None:
            # Left to the default, they were resolved from this same base model when it ran.
            now["target_modules"] = record["settings"].get("target_modules")
        current = {
            "settings": now,
            "base_sha256": base_sha,
            "train_sha256": sha256_file(train_file),
        }
        if record["steps"] != record["total_steps"] or _fingerprint_diff(ran, current):
            return None
        if not (out_dir / ADAPTER_DIR / "adapter_model.safetensors").is_file():
            return None
        known = {f.name for f in fields(DataStats)}
        return TrainResult(
            out_dir=out_dir,
            adapter_dir=out_dir / ADAPTER_DIR,
            training_json=out_dir / TRAINING_JSON,
            choice=BackendChoice(**record["backend"]),
            steps=record["steps"],
            losses=list(record["losses"]),
            data=DataStats(**{k: v for k, v in dataset.items() if k in known}),
            resumed_from=(record.get("resumed_from") or [None])[-1],
            duration_s=float(record.get("duration_s") or 0.0),
            already_done=True,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no usable record: train (or resume from checkpoints) as usual


@dataclass(frozen=True)
class _Job:
    """What train_lora settled before loading anything heavy."""

    base_dir: Path
    base_sha: str
    train_file: Path
    examples: list[Messages]
    out_dir: Path
    settings: TrainSettings
    choice: BackendChoice
    resume: bool


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """torch's CPU threads set to `threads` (None: as they are) inside the block, and put back
    after it, so a library caller's process is left as it was. Yields the number in use."""
    torch = require_torch()
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _train(
    job: _Job,
    threads: int,
    progress: ProgressFn | None,
    on_data: Callable[[DataStats], None] | None,
) -> TrainResult:
    """Load, train (or resume) and save: train_lora's work once the inputs are checked."""
    base_dir, base_sha, train_file = job.base_dir, job.base_sha, job.train_file
    out_dir, settings, choice, resume = job.out_dir, job.settings, job.choice, job.resume
    torch, transformers, peft = require_stack()

    tokenizer = _load_tokenizer(base_dir, transformers)
    dataset, stats = build_training_set(tokenizer, job.examples, settings.max_seq_len)
    if on_data is not None:
        on_data(stats)  # before the model loads: skipped examples are worth knowing at once
    schedule = Schedule.plan(len(dataset), settings)

    torch.manual_seed(settings.seed)
    with quiet_transformers():
        if choice.name == "unsloth":
            loaded = load_unsloth(base_dir, settings)
        else:
            loaded = load_peft(base_dir, settings, choice.device)
    model = loaded.model
    model.train()
    settings = replace(settings, target_modules=loaded.target_modules)
    fingerprint = {
        "settings": asdict(settings),
        "base_sha256": base_sha,
        "train_sha256": sha256_file(train_file),
    }

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    total = schedule.total_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, settings.warmup_steps, total)
    )
    scaler = torch.amp.GradScaler(
        "cuda", enabled=loaded.device == "cuda" and loaded.compute_dtype == torch.float16
    )

    run = _Run()
    done = checkpoint_steps(out_dir) if resume else []
    if done:
        run, trainer_state = _load_checkpoint(
            out_dir / CHECKPOINTS_DIR / f"step-{done[-1]}", fingerprint, model, peft, torch
        )
        optimizer.load_state_dict(trainer_state["optimizer"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        scaler.load_state_dict(trainer_state["scaler"])
        _set_rng_state(torch, trainer_state["rng"])
    resumed_from = run.resumed_from[-1] if run.resumed_from else None

    pad_id = _pad_id(tokenizer)
    # Packed micro-batches skip the padding's work; only where the model was seen to give
    # the padded batch's losses, and not under unsloth, which computes its loss its own way.
    packed = (
        choice.name == "peft"
        and settings.batch_size > 1
        and packing_matches(model, dataset[:2], pad_id, torch)
    )
    make_batch = collate_packed if packed else collate
    session_start, session_tokens, session_steps = time.monotonic(), 0, 0
    with quiet_transformers():
        for step in range(run.step, total):
            groups = [
                [dataset[i] for i in schedule.micro_batch(m)]
                for m in schedule.step_micro_batches(step)
            ]
            batches = [make_batch(group, pad_id, torch) for group in groups]
            step_loss = _accumulate(
                batches, loaded, scaler, torch, head_on_answers=choice.name == "peft"
            )
            session_tokens += sum(len(e.input_ids) for group in groups for e in group)
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            lr = float(optimizer.param_groups[0]["lr"])
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()

            session_steps += 1
            run.step = step + 1
            run.losses.append(step_loss)
            elapsed = time.monotonic() - session_start
            if run.step % settings.save_every == 0 and run.step < total:
                trainer_state = {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": _rng_state(torch),
                }
                run_snapshot = replace(
                    run, elapsed_s=run.elapsed_s + elapsed, tokens=run.tokens + session_tokens
                )
                _save_checkpoint(
                    out_dir,
                    run_snapshot,
                    fingerprint,
                    model,
                    trainer_state,
                    schedule.micro_done(run.step),
                    settings.keep_checkpoints,
                )
            if progress is not None:
                progress(
                    TrainProgress(
                        step=run.step,
                        total_steps=total,
                        loss=step_loss,
                        learning_rate=lr,
                        tokens_per_s=session_tokens / elapsed if elapsed > 0 else 0.0,
                        eta_s=elapsed / session_steps * (total - run.step),
                        epoch=schedule.micro_done(run.step) / schedule.micro_per_epoch,
                    )
                )

    run.elapsed_s += time.monotonic() - session_start
    run.tokens += session_tokens
    adapter_dir = _save_adapter(model, out_dir)
    record = _training_record(
        base_dir, base_sha, train_file, fingerprint, settings, choice, stats, schedule, run
    )
    record["torch_threads"] = threads  # what settings.threads (None: torch's default) came to
    record["batches"] = "packed" if packed else "padded"
    training_json = out_dir / TRAINING_JSON
    _atomic_write_text(training_json, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return TrainResult(
        out_dir=out_dir,
        adapter_dir=adapter_dir,
        training_json=training_json,
        choice=choice,
        steps=run.step,
        losses=run.losses,
        data=stats,
        resumed_from=resumed_from,
        duration_s=run.elapsed_s,
    )


def _save_adapter(model: Any, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / ADAPTER_DIR
    tmp = out_dir / f".{ADAPTER_DIR}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    _replace_dir(tmp, final)
    return final


def _training_record(
    base_dir: Path,
    base_sha: str,
    train_file: Path,
    fingerprint: dict[str, Any],
    settings: TrainSettings,
    choice: BackendChoice,
    stats: DataStats,
    schedule: Schedule,
    run: _Run,
) -> dict[str, Any]:
    """training.json: enough to know what the adapter is and to reproduce it."""
    return {
        "format": FORMAT,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": {
            "path": str(base_dir),
            "sha256": base_sha,
            "files": [p.name for p in model_files(base_dir)],
        },
        "dataset": {
            "train_file": str(train_file.resolve()),
            "train_sha256": fingerprint["train_sha256"],
            "dataset_sha256": manifest_dataset_sha256(train_file),
            **{k: v for k, v in asdict(stats).items() if k != "notes"},
            "notes": stats.notes,
        },
        "backend": asdict(choice),
        "settings": asdict(settings),
        "steps": run.step,
        "total_steps": schedule.total_steps,
        "epochs_done": schedule.micro_done(run.step) / schedule.micro_per_epoch,
        "losses": run.losses,
        "tokens": run.tokens,
        "duration_s": round(run.elapsed_s, 3),
        "resumed_from": run.resumed_from,
        "versions": library_versions(choice.name),
        "adapter": ADAPTER_DIR,
    }
