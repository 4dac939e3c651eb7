"""The whole fine-tune, as `localrag finetune train` runs it: train a LoRA adapter, merge it
into the base, convert and quantize to GGUF, and install it under a name with its lineage.

Each step is its own module (train, merge, export); this one only runs them in order and
says where it is, so the command line and any other front end run the same pipeline.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localrag.errors import ModelError
from localrag.finetune.backends import BackendChoice
from localrag.finetune.export import check_quantization, export_model
from localrag.finetune.merge import merge_adapter
from localrag.finetune.settings import TrainSettings
from localrag.finetune.sft_data import DataStats
from localrag.finetune.train import ProgressFn, TrainResult, train_lora
from localrag.models.registry import ModelEntry, ModelRegistry, validate_name

MERGED_DIR = "merged"


@dataclass(frozen=True)
class FinetuneResult:
    training: TrainResult
    model: ModelEntry  # the installed GGUF


def check_new_model(name: str, quantization: str) -> str:
    """Refuse a taken name or an unknown quantization before hours of training, not after;
    returns the quantization as llama.cpp spells it."""
    validate_name(name)
    if ModelRegistry().find(name) is not None:
        raise ModelError(f"a model named {name!r} is already installed; pick another --name")
    return check_quantization(quantization)


def finetune_model(
    base: Path,
    dataset: Path,
    name: str,
    run_dir: Path,
    settings: TrainSettings,
    *,
    quantization: str,
    resume: bool = False,
    choice: BackendChoice | None = None,
    progress: ProgressFn | None = None,
    on_data: Callable[[DataStats], None] | None = None,
    on_trained: Callable[[TrainResult], None] | None = None,
    on_export: Callable[[str], None] | None = None,
) -> FinetuneResult:
    """Train on `dataset` in `run_dir`, then merge, convert, quantize and install as `name`.

    With `resume`, training continues from the newest checkpoint in `run_dir`, and a merged
    folder left by a run whose export failed is rebuilt from the adapter. `on_trained` hears
    the training result before merging starts; `on_export` the quantization before the
    (minutes-long) conversion.
    """
    quantization = check_new_model(name, quantization)
    settings.check()
    training = train_lora(
        base,
        dataset,
        run_dir,
        settings,
        resume=resume,
        progress=progress,
        choice=choice,
        on_data=on_data,
    )
    if on_trained:
        on_trained(training)
    if resume:
        shutil.rmtree(run_dir / MERGED_DIR, ignore_errors=True)
    merged = merge_adapter(base, training.adapter_dir, run_dir / MERGED_DIR)
    lineage = json.loads((merged / "merge.json").read_text(encoding="utf-8"))
    if on_export:
        on_export(quantization)
    model = export_model(merged, name, lineage=lineage, quantization=quantization)
    return FinetuneResult(training, model)
