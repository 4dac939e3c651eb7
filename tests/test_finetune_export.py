"""A merged model folder becomes an installed, quantized GGUF that remembers where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from localrag.errors import ModelError
from localrag.finetune.export import export_model
from localrag.llm import load_llm
from localrag.models.registry import ModelRegistry

LINEAGE = {
    "base_model": "/models/hf/tiny-base",
    "adapter": "/runs/1/adapter",
    "dataset_sha256": "ab" * 32,
    "settings": {"lora_r": 8, "learning_rate": 2e-4},
}


def test_export_converts_quantizes_and_registers_with_lineage(tiny_llm_dir: Path) -> None:
    registry = ModelRegistry()
    entry = export_model(tiny_llm_dir, "tiny-ft", lineage=LINEAGE)
    assert entry.quantization == "Q4_K_M"
    assert entry.source == "finetune"
    assert entry.base_model == "/models/hf/tiny-base" and entry.adapter == "/runs/1/adapter"
    assert entry.lineage == {**LINEAGE, "quantization": "Q4_K_M"}
    # The manifest on disk says the same, and nothing was left behind in the models folder.
    assert registry.get("tiny-ft").lineage == entry.lineage
    left = sorted(p.name for p in registry.dir.iterdir() if p.name != "models.json.lock")
    assert left == ["models.json", "tiny-ft.gguf"]
    # It is served like any other model: the only installed one is the default.
    llm = load_llm(None, n_ctx=256, max_tokens=4, temperature=0.0)
    assert llm is not None
    try:
        assert llm.info.path == registry.path_of(entry)
        tokens = llm.chat_prompt([{"role": "user", "content": "Hello"}]).tokens
        stats_text = llm.complete(tokens, max_tokens=4)
        assert isinstance(stats_text, str)
    finally:
        llm.close()


def test_export_refuses_unknown_quantization_and_taken_names(tiny_llm_dir: Path) -> None:
    with pytest.raises(ModelError, match="unknown quantization 'q9_z'"):
        export_model(tiny_llm_dir, "tiny-ft", lineage=LINEAGE, quantization="q9_z")
    export_model(tiny_llm_dir, "tiny-ft", lineage=LINEAGE, quantization="F16")
    with pytest.raises(ModelError, match="already installed"):
        export_model(tiny_llm_dir, "tiny-ft", lineage=LINEAGE)
    registry = ModelRegistry()
    assert [e.name for e in registry.entries()] == ["tiny-ft"]
    assert registry.get("tiny-ft").quantization in ("F16", "MOSTLY_F16")
    assert not [p for p in registry.dir.iterdir() if p.name.startswith(".export-")]
