"""What a fine-tuning run is asked to do: LoRA and optimisation hyperparameters, and where
it runs. Its own module so that choosing a back end (backends.py) and training (train.py)
both read it without importing each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from localrag.errors import LocalragError

Backend = Literal["auto", "unsloth", "peft"]
Device = Literal["auto", "cpu", "mps", "cuda"]
BACKENDS: tuple[Backend, ...] = ("auto", "unsloth", "peft")
DEVICES: tuple[Device, ...] = ("auto", "cpu", "mps", "cuda")

# Settings that change the result: a resumed run must have the same ones as the checkpoint.
RESULT_SETTINGS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "learning_rate",
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "warmup_steps",
    "max_seq_len",
    "seed",
    "weight_decay",
    "max_grad_norm",
    "load_in_4bit",
)


@dataclass
class TrainSettings:
    """LoRA and optimisation hyperparameters; every one is recorded in training.json."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    target_modules: list[str] | None = None  # None: q/k/v/o and gate/up/down projections
    learning_rate: float = 2e-4
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 1
    grad_accum: int = 4
    warmup_steps: int = 5
    # A RAFT example (system prompt, four ~250-token passages, question, quoted answer) is
    # about 1,500 tokens; at 1,024 most would be skipped.
    max_seq_len: int = 2048
    seed: int = 0
    backend: Backend = "auto"
    device: Device = "auto"
    load_in_4bit: bool = True  # unsloth only: QLoRA on a 4-bit base; False is 16-bit LoRA
    save_every: int = 50  # optimizer steps between checkpoints
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    keep_checkpoints: int = 2  # newest ones kept; older ones are removed
    threads: int | None = None  # torch CPU threads during the run; None: torch's default

    def check(self) -> None:
        """Reject settings that cannot train, before any model is loaded."""
        positive = ("lora_r", "epochs", "batch_size", "grad_accum", "max_seq_len", "save_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise LocalragError(f"{name} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise LocalragError("max_steps must be at least 1")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.keep_checkpoints < 1:
            raise LocalragError("learning_rate must be > 0, warmup_steps ≥ 0, keep_checkpoints ≥ 1")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise LocalragError("lora_dropout must be in [0, 1)")
        if self.threads is not None and self.threads < 1:
            raise LocalragError("threads must be at least 1")
