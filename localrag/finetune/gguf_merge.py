"""Merge a LoRA adapter straight into a GGUF file: the fine-tuned model is the base GGUF with a
few tensors changed, nothing else touched.

For each layer the adapter trained (q_proj, …, down_proj), the base tensor is dequantized,
`scale · B @ A` is added, and the sum is quantized back to the type the tensor had, with
llama.cpp's own quantizer (models/ggml_quant). Every other tensor is copied byte for byte, and
every metadata key (tokenizer, rope settings, quantization version) is kept exactly; only the
chat template may be set, so `ask` speaks the format the model was trained on. This works for
every architecture that llama.cpp runs and Python's `gguf` package names, not only those the
Hugging Face → GGUF converter knows.

Layouts: llama.cpp stores some tensors in another row order than Hugging Face (the Q/K rotary
permutation of the Llama family). Rather than trust a per-architecture table, each changed
tensor is compared with the Hugging Face weights the adapter was trained on (`reference`, the
folder that training loaded): the base tensor must equal the reference either as it is or
permuted, and the delta is laid out the same way; any other difference stops the merge.

Quantizing a dequantized tensor back to its own type is exact for Q4_0, Q5_0, Q8_0 and Q4_K
in practice (the values already lie on the quantization grid); bench/bench_finetune.py
--round-trip measures what it costs on a whole model.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from localrag.errors import ModelError
from localrag.models import ggml_quant
from localrag.models.gguf_convert import (
    StoredTensor,
    permute_rotary,
    read_safetensors,
    read_safetensors_file,
)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# peft names an adapter's tensors base_model.model.<module path>.lora_{A,B}.weight.
_PEFT_PREFIX = "base_model.model."
# Values are float32 in the reference and in the dequantized base (same arithmetic), so they
# match exactly; the tolerance only forgives a differently rounded dequantizer.
_LAYOUT_ATOL = 1e-5

KEEP = "KEEP"  # changed tensors keep the type they had in the base
DEFAULT_CHANGED_TYPE = "Q8_0"


def changed_tensor_type(name: str) -> gguf.GGMLQuantizationType | None:
    """The type fine-tuned tensors are stored as, from its name (None for KEEP).

    Q8_0 by default: a LoRA update is small next to the rounding step of 4- and 5-bit
    types, and quantizing the merged tensor back to them erases most of it (measured by
    bench/bench_gguf_merge.py), while Q8_0 keeps it at about 1.1 bytes per weight.
    """
    wanted = name.upper()
    if wanted == KEEP:
        return None
    kind = gguf.GGMLQuantizationType.__members__.get(wanted)
    if kind is None or wanted.startswith(("IQ", "TQ", "I8", "I16", "I32", "I64", "F64", "MXFP")):
        raise ModelError(
            f"{name!r} is not a type the fine-tuned tensors can be stored as: use Q8_0 "
            "(default), F16, F32, another ggml type such as Q6_K or Q5_0, or keep"
        )
    return kind


@dataclass(frozen=True)
class LoraLayer:
    """One adapted module: its Hugging Face weight name and the factors of its update."""

    hf_weight: str  # e.g. model.layers.0.self_attn.q_proj.weight
    a: StoredTensor  # r × in
    b: StoredTensor  # out × r

    def delta(self, scale: float) -> np.ndarray:
        """scale · B @ A, in float32, Hugging Face layout (out × in)."""
        return (np.float32(scale) * (self.b.load() @ self.a.load())).astype(np.float32)


@dataclass(frozen=True)
class Adapter:
    scale: float
    layers: list[LoraLayer]


def read_adapter(adapter_dir: Path) -> Adapter:
    """A peft LoRA adapter's scale and factors; ModelError for kinds that cannot be merged."""
    adapter_dir = Path(adapter_dir)
    try:
        config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{adapter_dir} is not a LoRA adapter (no {ADAPTER_CONFIG})") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {adapter_dir / ADAPTER_CONFIG}: {exc}") from exc
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise ModelError(f"{adapter_dir} is a {config.get('peft_type')} adapter, not LoRA")
    for flag, what in (("use_dora", "DoRA"), ("fan_in_fan_out", "fan-in-fan-out layers")):
        if config.get(flag):
            raise ModelError(f"{adapter_dir}: merging {what} into a GGUF is not supported")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ModelError(f"{adapter_dir}: per-layer ranks or alphas are not supported")
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / (r**0.5 if config.get("use_rslora") else r)

    tensors = read_safetensors_file(adapter_dir / ADAPTER_WEIGHTS)
    layers = []
    for name, a in sorted(tensors.items()):
        if not name.endswith(".lora_A.weight"):
            if not name.endswith(".lora_B.weight"):
                raise ModelError(f"{adapter_dir}: cannot merge tensor {name} into a GGUF")
            continue
        module = name.removesuffix(".lora_A.weight")
        b = tensors.get(f"{module}.lora_B.weight")
        if b is None:
            raise ModelError(f"{adapter_dir}: {name} has no lora_B partner")
        layers.append(LoraLayer(f"{module.removeprefix(_PEFT_PREFIX)}.weight", a, b))
    if not layers:
        raise ModelError(f"{adapter_dir}: the adapter holds no LoRA layers")
    return Adapter(scale, layers)


def _arch(reader: gguf.GGUFReader) -> str:
    field = reader.fields.get(gguf.Keys.General.ARCHITECTURE)
    if field is None:
        raise ModelError("the base GGUF names no architecture")
    return str(field.contents())


def _metadata_int(reader: gguf.GGUFReader, key: str) -> int | None:
    field = reader.fields.get(key)
    value = field.contents() if field is not None else None
    return value if isinstance(value, int) else None  # some architectures list one per layer


def gguf_names(reader: gguf.GGUFReader, layers: list[LoraLayer]) -> dict[str, LoraLayer]:
    """GGUF tensor name → the adapter layer that changes it."""
    arch_name = _arch(reader)
    arch = {name: value for value, name in gguf.MODEL_ARCH_NAMES.items()}.get(arch_name)
    blocks = _metadata_int(reader, f"{arch_name}.block_count")
    if arch is None or blocks is None:
        raise ModelError(f"architecture {arch_name!r} is unknown to the gguf package")
    name_map = gguf.get_tensor_name_map(arch, blocks)
    present = {t.name for t in reader.tensors}
    mapped: dict[str, LoraLayer] = {}
    for layer in layers:
        target = name_map.get_name(layer.hf_weight, try_suffixes=(".weight",))
        if target is None or target not in present:
            raise ModelError(
                f"the adapter changes {layer.hf_weight}, which has no tensor in this "
                f"{arch_name} GGUF"
            )
        mapped[target] = layer
    return mapped


def _as_is(matrix: np.ndarray) -> np.ndarray:
    return matrix


def _layout(
    name: str, base: np.ndarray, reference: np.ndarray, heads: tuple[int, ...]
) -> Callable[[np.ndarray], np.ndarray]:
    """How a Hugging Face-layout matrix becomes this GGUF tensor's layout (checked, not assumed)."""
    if base.shape != reference.shape:
        raise ModelError(f"{name}: shape {base.shape} in the GGUF, {reference.shape} in training")
    if np.allclose(base, reference, rtol=0, atol=_LAYOUT_ATOL):
        return _as_is
    for n_head in heads:
        fits = base.shape[0] % (2 * n_head) == 0
        if fits and np.allclose(base, permute_rotary(reference, n_head), atol=_LAYOUT_ATOL):
            return functools.partial(permute_rotary, n_head=n_head)
    raise ModelError(
        f"{name} in the GGUF does not hold the weights training used; the adapter was trained "
        "on another model, or this architecture's layout is not understood"
    )


def _copy_metadata(
    reader: gguf.GGUFReader, writer: gguf.GGUFWriter, chat_template: str | None
) -> None:
    skip = {gguf.Keys.General.ARCHITECTURE}
    if chat_template is not None:
        skip.add(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in skip:
            continue  # the header and the architecture: the writer writes those itself
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub_type)
    if chat_template is not None:
        writer.add_chat_template(chat_template)


def _np_shape(tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in reversed(tensor.shape))


def merge_into_gguf(
    base: Path,
    adapter_dir: Path,
    out: Path,
    *,
    reference: Path,
    chat_template: str | None = None,
    changed_type: gguf.GGMLQuantizationType | None = gguf.GGMLQuantizationType.Q8_0,
) -> Path:
    """Write `base` with the adapter merged in to `out`; returns `out`.

    `reference` is the Hugging Face folder the adapter was trained on (its layouts are
    checked against the GGUF's). `chat_template` replaces or adds the model's chat template.
    Changed tensors are stored as `changed_type` (None: the type each had in the base; see
    the module's note on why that loses most of a short fine-tune).
    The file appears under its final name only once complete.
    """
    base, out = Path(base), Path(out)
    adapter = read_adapter(Path(adapter_dir))
    try:
        reader = gguf.GGUFReader(str(base))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {base} as GGUF: {exc}") from exc
    changes = gguf_names(reader, adapter.layers)
    arch = _arch(reader)
    counts = (f"{arch}.attention.head_count", f"{arch}.attention.head_count_kv")
    heads = tuple(n for n in (_metadata_int(reader, key) for key in counts) if n)
    ref_tensors = read_safetensors(Path(reference))
    for layer in changes.values():
        if layer.hf_weight not in ref_tensors:
            raise ModelError(f"{reference} has no {layer.hf_weight}: not the training base")

    def merged(tensor: Any) -> np.ndarray:
        layer = changes[tensor.name]
        shape = _np_shape(tensor)
        weights = ggml_quant.dequantize(tensor.data, tensor.tensor_type, shape)
        to_gguf = _layout(tensor.name, weights, ref_tensors[layer.hf_weight].load(), heads)
        weights = weights + to_gguf(layer.delta(adapter.scale))
        if not np.isfinite(weights).all():
            raise ModelError(f"merging made {tensor.name} non-finite; the adapter is broken")
        # Not `changed_type or …`: F32 is type 0, which is falsy.
        kind = tensor.tensor_type if changed_type is None else changed_type
        return ggml_quant.quantize(weights, kind)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        writer.data_alignment = reader.alignment
        _copy_metadata(reader, writer, chat_template)
        for tensor in reader.tensors:
            kind, nbytes = tensor.tensor_type, int(tensor.n_bytes)
            if tensor.name in changes and changed_type is not None:
                kind = changed_type
                nbytes = ggml_quant.row_bytes(kind, int(tensor.shape[0])) * int(
                    np.prod(_np_shape(tensor)[:-1])
                )
            writer.add_tensor_info(
                tensor.name, _np_shape(tensor), np.dtype(np.float32), nbytes, raw_dtype=kind
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        # One tensor in memory at a time: a changed one is merged just before it is written.
        for tensor in reader.tensors:
            data = merged(tensor) if tensor.name in changes else tensor.data
            writer.write_tensor_data(np.asarray(data))
        writer.close()
        os.replace(tmp, out)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return out
