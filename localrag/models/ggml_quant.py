"""Quantize and dequantize single tensors with llama.cpp's own code (ggml), not a re-implementation.

Merging an adapter into a quantized GGUF changes a few tensors; each is quantized back to the
type it had, row for row as llama.cpp's quantizer would, and every other tensor is copied
byte for byte. Python's `gguf` package can dequantize every type but quantize only a few, so
quantizing goes through `ggml_quantize_chunk` in the ggml library that llama-cpp-python ships.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize as _gguf_dequantize

from localrag.errors import ModelError
from localrag.llm import import_llama_cpp

FLOAT_TYPES = {
    GGMLQuantizationType.F32: np.float32,
    GGMLQuantizationType.F16: np.float16,
}


@functools.cache
def _ggml() -> Any:
    """The ggml base library next to llama-cpp-python's libllama (.so, .dylib or .dll)."""
    llama_cpp = import_llama_cpp("quantizing")
    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    candidates = sorted(lib_dir.glob("libggml-base.*")) + sorted(lib_dir.glob("ggml-base.*"))
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(str(candidate))
        except OSError:
            continue
        lib.ggml_quantize_chunk.argtypes = [
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.POINTER(ctypes.c_float),
        ]
        lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        lib.ggml_quantize_init.argtypes = [ctypes.c_int]
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        return lib
    raise ModelError(
        f"llama-cpp-python's ggml library is not in {lib_dir}; reinstall llama-cpp-python"
    )


def row_bytes(qtype: GGMLQuantizationType, n_per_row: int) -> int:
    """Bytes one row of `n_per_row` values takes in `qtype`."""
    block, size = GGML_QUANT_SIZES[qtype]
    if n_per_row % block:
        raise ModelError(f"a row of {n_per_row} values cannot be stored as {qtype.name}")
    return n_per_row // block * size


def dequantize(data: np.ndarray, qtype: GGMLQuantizationType, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values of a tensor stored as `qtype`; `shape` is numpy order (rows last-but-one)."""
    values = _gguf_dequantize(np.asarray(data), qtype)
    return np.ascontiguousarray(values, dtype=np.float32).reshape(shape)


def quantize(values: np.ndarray, qtype: GGMLQuantizationType) -> np.ndarray:
    """`values` (float32, rows × n_per_row) stored as `qtype`: bytes as llama.cpp writes them."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim == 1:
        values = values.reshape(1, -1)
    if qtype in FLOAT_TYPES:
        return values.astype(FLOAT_TYPES[qtype])
    rows, n_per_row = values.shape[0], int(np.prod(values.shape[1:]))
    lib = _ggml()
    if lib.ggml_quantize_requires_imatrix(int(qtype)):
        raise ModelError(f"{qtype.name} needs an importance matrix; localrag cannot write it")
    lib.ggml_quantize_init(int(qtype))
    out = np.empty((rows, row_bytes(qtype, n_per_row)), dtype=np.uint8)
    written = lib.ggml_quantize_chunk(
        int(qtype),
        values.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        out.ctypes.data_as(ctypes.c_void_p),
        0,
        rows,
        n_per_row,
        None,
    )
    if written != out.nbytes:
        raise ModelError(f"ggml wrote {written} bytes for {qtype.name}, expected {out.nbytes}")
    return out
