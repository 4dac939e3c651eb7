"""A merged fine-tuned model becomes an installed GGUF: convert, quantize, register its lineage.

The last leg of `localrag finetune`: the merged Hugging Face folder goes through the same
converter as `scripts/convert_gguf.py`, is quantized by llama.cpp (Q4_K_M unless asked
otherwise) and registered in the models manifest with where it came from, so `localrag models
default NAME` selects it like any other model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from localrag.errors import ModelError
from localrag.finetune.gguf_merge import changed_tensor_type, merge_into_gguf
from localrag.models.gguf_convert import convert, quant_types, quantize
from localrag.models.registry import ModelEntry, ModelRegistry

DEFAULT_QUANTIZATION = "Q4_K_M"
UNQUANTIZED = ("F16", "F32")


def check_quantization(quantization: str) -> str:
    """The GGUF type name in capitals; checked before training, not after it."""
    wanted = quantization.upper()
    if wanted not in UNQUANTIZED and wanted not in quant_types():
        known = ", ".join(quant_types())
        raise ModelError(f"unknown quantization {quantization!r}: use F16, F32 or one of {known}")
    return wanted


def export_model(
    merged_dir: Path,
    name: str,
    *,
    lineage: dict[str, Any],
    quantization: str = DEFAULT_QUANTIZATION,
    registry: ModelRegistry | None = None,
) -> ModelEntry:
    """Convert, quantize and install `merged_dir` as model `name`; returns its manifest entry.

    `lineage` should say at least "base_model" and "adapter" (folders), and carries whatever
    else identifies the run (dataset hash, training settings).
    """
    registry = registry or ModelRegistry()
    wanted = check_quantization(quantization)
    registry.dir.mkdir(parents=True, exist_ok=True)
    # Work beside the models folder: the GGUF is moved into it, not copied across disks.
    with tempfile.TemporaryDirectory(dir=registry.dir, prefix=".export-") as work:
        outtype = "f32" if wanted == "F32" else "f16"
        converted = convert(Path(merged_dir), Path(work) / f"{name}-{outtype}.gguf", outtype)
        final = converted
        if wanted not in UNQUANTIZED:
            final = quantize(converted, Path(work) / f"{name}-{wanted.lower()}.gguf", wanted)
        return registry.import_file(
            final,
            name=name,
            mode="move",
            source="finetune",
            base_model=str(lineage.get("base_model")) if lineage.get("base_model") else None,
            adapter=str(lineage.get("adapter")) if lineage.get("adapter") else None,
            lineage={**lineage, "quantization": wanted},
        )


def export_gguf_merge(
    base_gguf: Path,
    adapter_dir: Path,
    name: str,
    *,
    reference: Path,
    lineage: dict[str, Any],
    tensor_type: str,
    chat_template: str | None,
    registry: ModelRegistry | None = None,
) -> ModelEntry:
    """Merge the adapter into the base GGUF itself and install the result as `name`.

    No conversion: the base's tensors and metadata are kept, the fine-tuned ones are stored
    as `tensor_type` (see gguf_merge.changed_tensor_type), and `chat_template` is written.
    """
    registry = registry or ModelRegistry()
    kind = changed_tensor_type(tensor_type)
    registry.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=registry.dir, prefix=".export-") as work:
        merged = merge_into_gguf(
            Path(base_gguf),
            Path(adapter_dir),
            Path(work) / f"{name}.gguf",
            reference=Path(reference),
            chat_template=chat_template,
            changed_type=kind,
        )
        return registry.import_file(
            merged,
            name=name,
            mode="move",
            source="finetune",
            base_model=str(base_gguf),
            adapter=str(adapter_dir),
            lineage={**lineage, "changed_tensors": tensor_type.upper()},
        )
