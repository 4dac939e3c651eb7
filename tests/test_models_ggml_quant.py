"""Single tensors quantized by llama.cpp's own ggml code, and read back."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize as gguf_py_quantize

from localrag.errors import ModelError
from localrag.models import ggml_quant


def _weights(rows: int = 8, cols: int = 512, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.05, (rows, cols)).astype(np.float32)


@pytest.mark.parametrize("qtype", [T.Q8_0, T.Q5_0, T.Q4_0, T.Q4_K])
def test_quantizing_dequantized_values_again_gives_the_same_bytes(qtype: T) -> None:
    """What merging relies on: a tensor the fine-tune did not move comes back unchanged."""
    first = ggml_quant.quantize(_weights(), qtype)
    values = ggml_quant.dequantize(first, qtype, (8, 512))
    assert values.dtype == np.float32 and values.shape == (8, 512)
    assert np.abs(values - _weights()).max() < 0.05  # it is a quantization of the input
    assert np.array_equal(ggml_quant.quantize(values, qtype), first)


def test_q6_k_round_trip_moves_values_by_a_hair() -> None:
    first = ggml_quant.quantize(_weights(), T.Q6_K)
    values = ggml_quant.dequantize(first, T.Q6_K, (8, 512))
    again = ggml_quant.dequantize(ggml_quant.quantize(values, T.Q6_K), T.Q6_K, (8, 512))
    assert np.abs(again - values).max() < 1e-3


def test_q8_0_bytes_equal_the_gguf_packages_reference_quantizer() -> None:
    weights = _weights(seed=3)
    assert np.array_equal(ggml_quant.quantize(weights, T.Q8_0), gguf_py_quantize(weights, T.Q8_0))


def test_row_bytes_and_float_types() -> None:
    assert ggml_quant.row_bytes(T.Q8_0, 64) == 68  # two blocks of 32 values, 34 bytes each
    assert ggml_quant.row_bytes(T.F16, 10) == 20
    halves = ggml_quant.quantize(_weights(2, 4), T.F16)
    assert halves.dtype == np.float16 and halves.shape == (2, 4)


def test_a_row_that_does_not_fill_whole_blocks_is_refused() -> None:
    with pytest.raises(ModelError, match="640 values cannot be stored as Q4_K"):
        ggml_quant.quantize(_weights(2, 640), T.Q4_K)


def test_types_that_need_an_importance_matrix_are_refused() -> None:
    with pytest.raises(ModelError, match="importance matrix"):
        ggml_quant.quantize(_weights(2, 256), T.IQ2_XXS)
