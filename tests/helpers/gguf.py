"""Tiny but valid GGUF files written with the `gguf` package, for header and registry tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gguf
import numpy as np

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"


def write_gguf(
    path: Path,
    *,
    arch: str = "llama",
    name: str | None = "tiny-test",
    context_length: int | None = 2048,
    file_type: int | None = gguf.LlamaFileType.MOSTLY_Q4_K_M,
    chat_template: str | None = TEMPLATE,
    vocab: Sequence[str] = ("<s>", "</s>", "a", "b"),
    q8_rows: int = 0,
    f32_shape: tuple[int, ...] = (8, 32),
    alignment: int | None = None,
    endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE,
    with_arch: bool = True,
    with_tensors: bool = True,
    seed: int = 0,
) -> Path:
    """A GGUF with a little metadata, a vocabulary array and a couple of small tensors.

    `q8_rows` adds a Q8_0 tensor of that many 256-wide rows (a quantized type, so files can be
    made whose dominant tensor type is not F32); `seed` varies the weights (and so the hash).
    """
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, arch, endianess=endianess)
    if name is not None:
        w.add_name(name)
    if context_length is not None:
        w.add_context_length(context_length)
    if file_type is not None:
        w.add_file_type(int(file_type))
    if chat_template is not None:
        w.add_chat_template(chat_template)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_token_list(list(vocab))
    if not with_arch:
        w.kv_data[0].pop(gguf.Keys.General.ARCHITECTURE)
    if with_tensors:
        w.add_tensor("token_embd.weight", rng.standard_normal(f32_shape, dtype=np.float32))
        w.add_tensor("output_norm.weight", np.ones(f32_shape[-1], dtype=np.float32))
        if q8_rows:
            rows = rng.standard_normal((q8_rows, 256), dtype=np.float32)
            q8 = gguf.quants.quantize(rows, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor("blk.0.ffn_up.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
