"""A cross-encoder for tests: no real one can be had from the package registries.

A 2-layer BERT sequence classifier with random (seeded) weights and the real MiniLM tokenizer
runs through the same export, onnxruntime session and retrieval path as a real reranker; its
scores mean nothing, but they are the model's, so order and plumbing can be checked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def write_cross_encoder(folder: Path, models_root: Path) -> Path:
    """A Hugging Face cross-encoder folder (needs torch and transformers) in `folder`."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(models_root / "embedders" / "all-MiniLM-L6-v2" / name, folder / name)
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    transformers.BertForSequenceClassification(config).eval().save_pretrained(folder)
    return folder
