"""Merge a LoRA adapter into its base model: one plain Hugging Face folder that
scripts/convert_gguf.py turns into a GGUF.

One path for both back ends: unsloth saves a normal peft adapter too. An adapter trained on a
4-bit base (QLoRA) is merged into the 16-bit base here, the usual QLoRA practice, and what
unsloth's own save_pretrained_merged(save_method="merged_16bit") does for a 16-bit folder loaded
with load_in_4bit: W16 + scale * B @ A, not the dequantized 4-bit weights (unslothai/unsloth#1089,
unslothai/unsloth-zoo#810, which makes Falcon-H1 alone the exception).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from localrag.errors import LocalragError
from localrag.finetune.backends import quiet_transformers, require_stack

DTYPES = ("float16", "bfloat16", "float32")
MERGE_JSON = "merge.json"

# Copied verbatim from the base: the converter reads the tokenizer, its special tokens and the
# chat template from these, and saving them through transformers may rewrite their layout.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


def _check_inputs(base_dir: Path, adapter_dir: Path, out_dir: Path, dtype: str) -> None:
    if dtype not in DTYPES:
        raise LocalragError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if not (base_dir / "config.json").is_file():
        raise LocalragError(f"{base_dir} is not a Hugging Face model folder (no config.json)")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise LocalragError(f"{adapter_dir} is not a LoRA adapter (no adapter_config.json)")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise LocalragError(f"{out_dir} already exists; merge into a new folder")


def lineage(base_dir: Path, adapter_dir: Path, dtype: str) -> dict[str, Any]:
    """merge.json: what was merged, and from training.json beside the adapter (when it is
    there) what identifies the run; the lineage a registered model carries."""
    record: dict[str, Any] = {
        "base_model": str(base_dir),
        "adapter": str(adapter_dir),
        "dtype": dtype,
        "merged_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    training: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):  # lineage is a courtesy, not a need
        training = json.loads((adapter_dir.parent / "training.json").read_text(encoding="utf-8"))
    if isinstance(training, dict) and training:
        dataset = training.get("dataset") or {}
        losses = training.get("losses") or []
        record |= {
            "base_sha256": (training.get("base_model") or {}).get("sha256"),
            "dataset_sha256": dataset.get("dataset_sha256"),
            "train_sha256": dataset.get("train_sha256"),
            "backend": training.get("backend"),
            "settings": training.get("settings"),
            "steps": training.get("steps"),
            "final_loss": losses[-1] if losses else None,
        }
    return record


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path, dtype: str = "float16") -> Path:
    """Write base + adapter as one model in `dtype` (safetensors) with the base's tokenizer.

    The folder appears under its final name only once complete; returns it.
    """
    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    _check_inputs(base_dir, adapter_dir, out_dir, dtype)
    torch, transformers, peft = require_stack()
    torch_dtype = getattr(torch, dtype)
    with quiet_transformers():
        # Loaded in the output dtype: a bf16 base merged into bf16 is rounded once, as in
        # float32, at half the memory. peft computes the LoRA product itself in float32.
        model = transformers.AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch_dtype)
        model = peft.PeftModel.from_pretrained(model, str(adapter_dir))
        merged = model.merge_and_unload(safe_merge=True)  # safe_merge: refuses NaN weights
        merged = merged.to(torch_dtype)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        merged.save_pretrained(str(tmp), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (base_dir / name).is_file():
            shutil.copy2(base_dir / name, tmp / name)
    record = lineage(base_dir.resolve(), adapter_dir.resolve(), dtype)
    (tmp / MERGE_JSON).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if out_dir.exists():
        out_dir.rmdir()  # checked empty above
    os.replace(tmp, out_dir)
    return out_dir
