"""The whole fine-tune, as `localrag finetune train` runs it: train a LoRA adapter, merge it
into the base, convert and quantize to GGUF, and install it under a name with its lineage.

A GGUF base takes a shorter road after training: its weights are dequantized into a Hugging
Face folder for training (gguf_base), and the adapter is merged into the GGUF file itself
(gguf_merge), so there is nothing to convert.

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
from localrag.finetune.export import (
    DEFAULT_QUANTIZATION,
    check_quantization,
    export_gguf_merge,
    export_model,
)
from localrag.finetune.gguf_base import chat_template_for, is_gguf, materialise, source_record
from localrag.finetune.gguf_merge import DEFAULT_CHANGED_TYPE, changed_tensor_type
from localrag.finetune.merge import lineage, merge_adapter
from localrag.finetune.settings import TrainSettings
from localrag.finetune.sft_data import DataStats
from localrag.finetune.train import ProgressFn, TrainResult, train_lora
from localrag.models.registry import ModelEntry, ModelRegistry, validate_name

MERGED_DIR = "merged"


@dataclass(frozen=True)
class FinetuneResult:
    training: TrainResult
    model: ModelEntry  # the installed GGUF


def check_new_model(name: str, quantization: str | None, *, gguf_base: bool = False) -> str:
    """Refuse a taken name or an unknown quantization before hours of training, not after;
    returns the quantization as llama.cpp spells it.

    For a Hugging Face base it is the whole file's type (default Q4_K_M); for a GGUF base,
    the type of the tensors fine-tuning changes (default Q8_0, or KEEP)."""
    validate_name(name)
    if ModelRegistry().find(name) is not None:
        raise ModelError(f"a model named {name!r} is already installed; pick another --name")
    if gguf_base:
        wanted = (quantization or DEFAULT_CHANGED_TYPE).upper()
        changed_tensor_type(wanted)
        return wanted
    return check_quantization(quantization or DEFAULT_QUANTIZATION)


def finetune_model(
    base: Path,
    dataset: Path,
    name: str,
    run_dir: Path,
    settings: TrainSettings,
    *,
    quantization: str | None = None,
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
    gguf_base = is_gguf(base)
    quantization = check_new_model(name, quantization, gguf_base=gguf_base)
    settings.check()
    train_base = materialise(base, run_dir) if gguf_base else base
    training = train_lora(
        train_base,
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
    if gguf_base:
        model = _merge_into_gguf(base, train_base, training, name, quantization, on_export)
        return FinetuneResult(training, model)
    if resume:
        shutil.rmtree(run_dir / MERGED_DIR, ignore_errors=True)
    merged = merge_adapter(base, training.adapter_dir, run_dir / MERGED_DIR)
    lineage = json.loads((merged / "merge.json").read_text(encoding="utf-8"))
    if on_export:
        on_export(quantization)
    model = export_model(merged, name, lineage=lineage, quantization=quantization)
    return FinetuneResult(training, model)


def _merge_into_gguf(
    base: Path,
    train_base: Path,
    training: TrainResult,
    name: str,
    tensor_type: str,
    on_export: Callable[[str], None] | None,
) -> ModelEntry:
    """Merge into the base GGUF, install, and drop the dequantized training copy (it is
    about four bytes per weight, and made again in a minute if ever needed)."""
    record = lineage(base.resolve(), training.adapter_dir.resolve(), tensor_type)
    record["base_sha256"] = source_record(train_base).get("sha256")
    if on_export:
        on_export(tensor_type)
    model = export_gguf_merge(
        base,
        training.adapter_dir,
        name,
        reference=train_base,
        lineage=record,
        tensor_type=tensor_type,
        chat_template=chat_template_for(base),
    )
    shutil.rmtree(train_base, ignore_errors=True)
    return model
