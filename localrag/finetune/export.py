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
