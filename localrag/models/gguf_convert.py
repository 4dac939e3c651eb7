"""Hugging Face checkpoint folder → GGUF file that llama.cpp loads, and llama.cpp quantization.

Supported: Llama (incl. Llama 3.x "llama3" rope scaling) and Qwen2 decoder-only models stored
as safetensors (single file or sharded), with a byte-level BPE tokenizer.json. Tensors are read
lazily one at a time, so converting a multi-gigabyte model needs about one tensor of memory.
No torch: safetensors are parsed directly, which also covers bf16 (numpy has no bf16 type).
"""

from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from localrag.errors import ModelError
from localrag.llm import import_llama_cpp, llama_cpp_messages

OUTTYPES = ("f32", "f16", "q8_0")

# llama.cpp's token types (gguf.TokenType); kept here so reading a tokenizer needs no gguf.
TOKEN_NORMAL = 1
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4
TOKEN_UNUSED = 5

# The split regexes of the pre-tokenizers llama.cpp implements, as they appear in tokenizer.json.
# llama.cpp cannot run an arbitrary regex: it needs the name of one it knows, and a wrong name
# tokenizes differently from the model's training without any error.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
KNOWN_SPLITS = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}
# ByteLevel(use_regex=True) alone is GPT-2's own split; llama.cpp calls it "gpt-2".
GPT2_PRE = "gpt-2"


@dataclass(frozen=True)
class Family:
    """How one Hugging Face architecture maps onto a llama.cpp architecture."""

    arch: str
    permute_qk: (
        bool  # Llama checkpoints store rotary halves split; llama.cpp wants them interleaved
    )


FAMILIES = {
    "LlamaForCausalLM": Family("llama", permute_qk=True),
    "Qwen2ForCausalLM": Family("qwen2", permute_qk=False),
}


# --------------------------------------------------------------------------- reading files


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path.name} is missing from {path.parent}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data


def _read_optional_json(path: Path) -> dict[str, Any]:
    return _read_json(path) if path.is_file() else {}


# --------------------------------------------------------------------------- hyperparameters


@dataclass(frozen=True)
class HParams:
    """The model shape as llama.cpp needs it, read from config.json."""

    family: Family
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ctx: int
    rope_theta: float
    rms_eps: float
    vocab_size: int
    tied: bool
    rope_scaling: dict[str, Any] | None


def _rope_settings(config: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """rope theta and scaling; transformers 5 moved both into `rope_parameters`."""
    params = config.get("rope_parameters") or {}
    theta = config.get("rope_theta", params.get("rope_theta", 10000.0))
    scaling = config.get("rope_scaling") or params
    rope_type = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
    return float(theta), (None if rope_type == "default" else {**scaling, "rope_type": rope_type})


def read_hparams(config: dict[str, Any], source: Path) -> HParams:
    archs = config.get("architectures") or []
    family = next((FAMILIES[a] for a in archs if a in FAMILIES), None)
    if family is None:
        supported = ", ".join(FAMILIES)
        raise ModelError(
            f"{source}: architecture {', '.join(archs) or '(none given)'} is not supported "
            f"(supported: {supported})"
        )
    try:
        n_embd = int(config["hidden_size"])
        n_head = int(config["num_attention_heads"])
        theta, scaling = _rope_settings(config)
        hp = HParams(
            family=family,
            n_layer=int(config["num_hidden_layers"]),
            n_embd=n_embd,
            n_ff=int(config["intermediate_size"]),
            n_head=n_head,
            n_head_kv=int(config.get("num_key_value_heads") or n_head),
            head_dim=int(config.get("head_dim") or n_embd // n_head),
            n_ctx=int(config.get("max_position_embeddings", 4096)),
            rope_theta=theta,
            rms_eps=float(config.get("rms_norm_eps", 1e-6)),
            vocab_size=int(config["vocab_size"]),
            tied=bool(config.get("tie_word_embeddings", False)),
            rope_scaling=scaling,
        )
    except KeyError as exc:
        raise ModelError(f"{source}: config.json has no {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source}: config.json has a malformed value: {exc}") from exc
    if scaling is not None and scaling["rope_type"] != "llama3":
        raise ModelError(f"{source}: rope scaling {scaling['rope_type']!r} is not supported")
    if config.get("hidden_act", "silu") != "silu":
        raise ModelError(f"{source}: activation {config['hidden_act']!r} is not supported")
    return hp


# --------------------------------------------------------------------------- safetensors


_ST_DTYPES: dict[str, np.dtype[Any]] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
}


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor lies in a safetensors file; read on demand."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file

    def load(self) -> np.ndarray:
        """The tensor as float32 (bf16 widened: its bits are the top half of an f32)."""
        raw = np.fromfile(
            self.file,
            dtype=_ST_DTYPES[self.dtype],
            count=math.prod(self.shape),
            offset=self.start,
        ).reshape(self.shape)
        if self.dtype == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32, copy=False)


def read_safetensors_file(path: Path) -> dict[str, StoredTensor]:
    """Where each tensor of one safetensors file lies (read on demand)."""
    try:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except FileNotFoundError:
        raise ModelError(f"{path.name} is missing from {path.parent}") from None
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not a readable safetensors file: {exc}") from exc
    base = 8 + size
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _ST_DTYPES:
            raise ModelError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        if end - begin != math.prod(shape) * _ST_DTYPES[info["dtype"]].itemsize:
            raise ModelError(f"{path}: tensor {name} has inconsistent size")
        tensors[name] = StoredTensor(path, info["dtype"], shape, base + int(begin))
    return tensors


def read_safetensors(hf_dir: Path) -> dict[str, StoredTensor]:
    """All tensors of a checkpoint, single file or sharded by model.safetensors.index.json."""
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ModelError(f"{index} has no weight_map")
        files = sorted(set(weight_map.values()))
    elif (hf_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ModelError(
            f"{hf_dir} has no model.safetensors (nor model.safetensors.index.json); "
            "save the model with safe_serialization"
        )
    tensors: dict[str, StoredTensor] = {}
    for name in files:
        tensors.update(read_safetensors_file(hf_dir / name))
    return tensors


# --------------------------------------------------------------------------- tensor mapping

_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
# Buffers some checkpoints carry that llama.cpp recomputes.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def gguf_tensor_name(hf_name: str) -> str | None:
    """llama.cpp's name for a checkpoint tensor; None for buffers llama.cpp does not need."""
    if hf_name.endswith(_IGNORED_SUFFIXES):
        return None
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    parts = hf_name.split(".", 3)
    if len(parts) == 4 and parts[:2] == ["model", "layers"] and parts[2].isdigit():
        mapped = _LAYER_NAMES.get(parts[3])
        if mapped is not None:
            return f"blk.{int(parts[2])}.{mapped}"
    raise ModelError(f"tensor {hf_name} has no llama.cpp counterpart (unsupported model variant)")


def permute_rotary(w: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder each head's rows from HF's two rotary halves to llama.cpp's interleaved pairs."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _expected_shapes(hp: HParams) -> dict[str, tuple[int, ...]]:
    """Checkpoint (row-major) shapes llama.cpp will insist on, by GGUF name."""
    q, kv = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (hp.vocab_size, hp.n_embd),
        "output_norm.weight": (hp.n_embd,),
        "output.weight": (hp.vocab_size, hp.n_embd),
    }
    for i in range(hp.n_layer):
        layer = {
            "attn_norm.weight": (hp.n_embd,),
            "attn_q.weight": (q, hp.n_embd),
            "attn_q.bias": (q,),
            "attn_k.weight": (kv, hp.n_embd),
            "attn_k.bias": (kv,),
            "attn_v.weight": (kv, hp.n_embd),
            "attn_v.bias": (kv,),
            "attn_output.weight": (hp.n_embd, q),
            "ffn_norm.weight": (hp.n_embd,),
            "ffn_gate.weight": (hp.n_ff, hp.n_embd),
            "ffn_up.weight": (hp.n_ff, hp.n_embd),
            "ffn_down.weight": (hp.n_embd, hp.n_ff),
        }
        shapes.update({f"blk.{i}.{k}": v for k, v in layer.items()})
    return shapes


@dataclass(frozen=True)
class PlannedTensor:
    gguf_name: str
    source: StoredTensor

    @property
    def shape(self) -> tuple[int, ...]:
        return self.source.shape


def plan_tensors(
    tensors: dict[str, StoredTensor], hp: HParams, source: Path
) -> list[PlannedTensor]:
    """Map, check and order the checkpoint's tensors; fails before anything is written."""
    expected = _expected_shapes(hp)
    planned = []
    for hf_name, stored in tensors.items():
        name = gguf_tensor_name(hf_name)
        if name is None:
            continue
        if hp.tied and name == "output.weight":
            continue  # a tied checkpoint may still store a copy; llama.cpp reuses token_embd
        if name.startswith("blk.") and int(name.split(".")[1]) >= hp.n_layer:
            raise ModelError(f"{source}: tensor {hf_name} is beyond num_hidden_layers")
        if stored.shape != expected[name]:
            raise ModelError(
                f"{source}: tensor {hf_name} has shape {list(stored.shape)}, "
                f"config.json implies {list(expected[name])}"
            )
        planned.append(PlannedTensor(name, stored))
    required = {"token_embd.weight", "output_norm.weight"}
    for i in range(hp.n_layer):
        required |= {f"blk.{i}.{n}" for n in _LAYER_NAMES.values() if not n.endswith(".bias")}
    if not hp.tied:
        required.add("output.weight")
    missing = required - {p.gguf_name for p in planned}
    if missing:
        raise ModelError(f"{source}: checkpoint lacks {', '.join(sorted(missing)[:5])}")
    return sorted(planned, key=lambda p: _tensor_order(p.gguf_name))


def _tensor_order(name: str) -> tuple[int, str]:
    if name == "token_embd.weight":
        return (-1, name)
    if name.startswith("blk."):
        return (int(name.split(".")[1]), name)
    return (1 << 30, name)


def load_tensor(planned: PlannedTensor, hp: HParams) -> np.ndarray:
    """The tensor's float32 data, in llama.cpp's layout."""
    data = planned.source.load()
    if hp.family.permute_qk:
        if ".attn_q." in planned.gguf_name:
            data = permute_rotary(data, hp.n_head)
        elif ".attn_k." in planned.gguf_name:
            data = permute_rotary(data, hp.n_head_kv)
    return np.ascontiguousarray(data, dtype=np.float32)


def llama3_rope_factors(hp: HParams) -> np.ndarray:
    """Per-frequency divisors llama.cpp applies for Llama 3.x rope scaling (`rope_freqs`)."""
    scaling = hp.rope_scaling or {}
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    inv_freq = 1.0 / hp.rope_theta ** (np.arange(0, hp.head_dim, 2, dtype=np.float64) / hp.head_dim)
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_ctx / wavelen - low) / (high - low)
    mid = 1.0 / ((1 - smooth) / factor + smooth)
    factors = np.where(
        wavelen < old_ctx / high, 1.0, np.where(wavelen > old_ctx / low, factor, mid)
    )
    return factors.astype(np.float32)


# --------------------------------------------------------------------------- tokenizer


@dataclass
class Vocab:
    """Everything llama.cpp needs to tokenize like the Hugging Face tokenizer."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special_ids: dict[str, int] = field(default_factory=dict)  # bos / eos / pad / unk
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None


def _pre_tokenizer_steps(node: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [s for child in node.get("pretokenizers", []) for s in _pre_tokenizer_steps(child)]
    return [node]


def detect_pre_tokenizer(tokenizer: dict[str, Any], source: Path) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer, recognised by its split regex."""
    normalizer = tokenizer.get("normalizer")
    # Qwen2 ships an NFC normalizer that llama.cpp skips; only already-composed text is affected.
    if normalizer and normalizer.get("type") != "NFC":
        raise ModelError(f"{source}: normalizer {normalizer.get('type')!r} is not supported")
    steps = _pre_tokenizer_steps(tokenizer.get("pre_tokenizer"))
    byte_level = [s for s in steps if s.get("type") == "ByteLevel"]
    splits = [s for s in steps if s.get("type") == "Split"]
    others = [s.get("type") for s in steps if s.get("type") not in ("ByteLevel", "Split")]
    name: str | None = None
    if len(byte_level) == 1 and not others and not byte_level[0].get("add_prefix_space"):
        use_regex = byte_level[0].get("use_regex", True)
        if not splits and use_regex:
            name = GPT2_PRE
        elif len(splits) == 1 and not use_regex and _is_isolating(splits[0]):
            name = KNOWN_SPLITS.get(splits[0]["pattern"].get("Regex", ""))
    if name is None:
        described = json.dumps(tokenizer.get("pre_tokenizer"))[:300]
        raise ModelError(
            f"{source}: unknown pre-tokenizer, llama.cpp would split text differently: {described}"
        )
    return name


def _is_isolating(split: dict[str, Any]) -> bool:
    return split.get("behavior") == "Isolated" and not split.get("invert") and "pattern" in split


def _token_table(
    model: dict[str, Any], added: list[dict[str, Any]], vocab_size: int, source: Path
) -> tuple[list[str], list[int]]:
    """Tokens by id with their types, padded to the embedding's row count."""
    by_id: dict[int, tuple[str, int]] = {i: (t, TOKEN_NORMAL) for t, i in model["vocab"].items()}
    for token in added:
        kind = TOKEN_CONTROL if token.get("special") else TOKEN_USER_DEFINED
        by_id[int(token["id"])] = (token["content"], kind)
    if by_id and max(by_id) >= vocab_size:
        raise ModelError(
            f"{source}: tokenizer has token id {max(by_id)} but config.json vocab_size is "
            f"{vocab_size}"
        )
    # Ids the tokenizer never uses still have embedding rows; llama.cpp needs a unique name each.
    filler = [(f"[PAD{i}]", TOKEN_UNUSED) for i in range(vocab_size)]
    table = [by_id.get(i, filler[i]) for i in range(vocab_size)]
    return [t for t, _ in table], [k for _, k in table]


def _merge_strings(merges: list[Any]) -> list[str]:
    # tokenizers >= 0.20 writes merges as pairs; older files as "a b" strings.
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def _token_content(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _first_id(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _special_ids(
    hf_dir: Path, tok_config: dict[str, Any], token_ids: dict[str, int], config: dict[str, Any]
) -> dict[str, int]:
    """bos/eos/pad/unk ids: tokenizer_config.json wins, then generation_config, then config."""
    gen = _read_optional_json(hf_dir / "generation_config.json")
    ids = {}
    for kind in ("bos", "eos", "pad", "unk"):
        content = _token_content(tok_config.get(f"{kind}_token"))
        token_id = token_ids.get(content) if content is not None else None
        if token_id is None:
            token_id = _first_id(gen.get(f"{kind}_token_id"))
        if token_id is None:
            token_id = _first_id(config.get(f"{kind}_token_id"))
        if token_id is not None:
            ids[kind] = token_id
    return ids


def _template_adds(tokenizer: dict[str, Any], position: int, content: str | None) -> bool:
    """Whether the post-processor puts `content` at `position` (0 first, -1 last) of one text."""
    if content is None:
        return False
    processors = [tokenizer.get("post_processor") or {}]
    if processors[0].get("type") == "Sequence":
        processors = processors[0].get("processors", [])
    for proc in processors:
        single = proc.get("single") if proc.get("type") == "TemplateProcessing" else None
        if single:
            piece = single[position]
            if piece.get("SpecialToken", {}).get("id") == content:
                return True
    return False


def _chat_template(hf_dir: Path, tok_config: dict[str, Any]) -> str | None:
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one is for chatting
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if isinstance(template, str):
        return template
    jinja = hf_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    from_json = _read_optional_json(hf_dir / "chat_template.json").get("chat_template")
    return from_json if isinstance(from_json, str) else None


def read_vocab(hf_dir: Path, config: dict[str, Any], vocab_size: int) -> Vocab:
    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelError(
            f"{hf_dir} has no tokenizer.json; only byte-level BPE tokenizers (Llama 3, Qwen2) "
            "are supported"
        )
    tokenizer = _read_json(path)
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ModelError(
            f"{path}: {model.get('type')} tokenizer is not byte-level BPE "
            "(SentencePiece-style tokenizers are not supported)"
        )
    pre = detect_pre_tokenizer(tokenizer, path)
    added = tokenizer.get("added_tokens") or []
    tokens, types = _token_table(model, added, vocab_size, path)
    tok_config = _read_optional_json(hf_dir / "tokenizer_config.json")
    token_ids = {t: i for i, t in enumerate(tokens)}
    special = _special_ids(hf_dir, tok_config, token_ids, config)
    bos_text = tokens[special["bos"]] if "bos" in special else None
    eos_text = tokens[special["eos"]] if "eos" in special else None
    add_bos = tok_config.get("add_bos_token")
    add_eos = tok_config.get("add_eos_token")
    vocab = Vocab(
        tokens=tokens,
        types=types,
        merges=_merge_strings(model.get("merges") or []),
        pre=pre,
        special_ids=special,
        add_bos=add_bos if isinstance(add_bos, bool) else _template_adds(tokenizer, 0, bos_text),
        add_eos=add_eos if isinstance(add_eos, bool) else _template_adds(tokenizer, -1, eos_text),
        chat_template=_chat_template(hf_dir, tok_config),
    )
    if vocab.add_bos and "bos" not in special:
        raise ModelError(f"{hf_dir}: the tokenizer adds a BOS token but none is named")
    return vocab


# --------------------------------------------------------------------------- writing


def _output_type(name: str, shape: tuple[int, ...], outtype: str) -> str:
    """Per-tensor storage: norms, biases and rope factors stay f32 as llama.cpp expects."""
    if len(shape) < 2 or outtype == "f32":
        return "f32"
    if outtype == "q8_0" and shape[-1] % 32 != 0:
        return "f16"  # Q8_0 blocks are 32 values along a row
    return outtype


def _encode(data: np.ndarray, kind: str) -> np.ndarray:
    if kind == "f32":
        return data
    if kind == "f16":
        return data.astype(np.float16)
    return gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)


_QTYPES = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}
_FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0"}


def _write_metadata(writer: Any, hp: HParams, vocab: Vocab, name: str, outtype: str) -> None:
    writer.add_name(name)
    writer.add_context_length(hp.n_ctx)
    writer.add_embedding_length(hp.n_embd)
    writer.add_feed_forward_length(hp.n_ff)
    writer.add_block_count(hp.n_layer)
    writer.add_head_count(hp.n_head)
    writer.add_head_count_kv(hp.n_head_kv)
    writer.add_rope_dimension_count(hp.head_dim)
    if hp.head_dim != hp.n_embd // hp.n_head:
        writer.add_key_length(hp.head_dim)
        writer.add_value_length(hp.head_dim)
    writer.add_rope_freq_base(hp.rope_theta)
    writer.add_layer_norm_rms_eps(hp.rms_eps)
    writer.add_vocab_size(hp.vocab_size)
    writer.add_file_type(getattr(gguf.LlamaFileType, _FILE_TYPES[outtype]))
    if outtype == "q8_0":
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "pad": writer.add_pad_token_id,
        "unk": writer.add_unk_token_id,
    }
    for kind, token_id in vocab.special_ids.items():
        adders[kind](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    if vocab.chat_template:
        writer.add_chat_template(vocab.chat_template)


@dataclass(frozen=True)
class _Output:
    """One tensor to write: a name, its storage kind and a way to produce its data."""

    name: str
    shape: tuple[int, ...]
    kind: str
    produce: Callable[[], np.ndarray]


def _outputs(planned: list[PlannedTensor], hp: HParams, outtype: str) -> Iterator[_Output]:
    if hp.rope_scaling:  # only "llama3" gets this far
        factors = llama3_rope_factors(hp)
        yield _Output("rope_freqs.weight", factors.shape, "f32", lambda: factors)
    for p in planned:
        yield _Output(
            p.gguf_name,
            p.shape,
            _output_type(p.gguf_name, p.shape, outtype),
            functools.partial(load_tensor, p, hp),
        )


def _byte_size(shape: tuple[int, ...], kind: str) -> int:
    qtype = getattr(gguf.GGMLQuantizationType, _QTYPES[kind])
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return math.prod(shape) // block * type_size


def _write_gguf(
    path: Path, hp: HParams, vocab: Vocab, outputs: list[_Output], name: str, outtype: str
) -> None:
    writer = gguf.GGUFWriter(str(path), hp.family.arch)
    try:
        _write_metadata(writer, hp, vocab, name, outtype)
        for out in outputs:
            # Header first: every tensor's name, shape and type, before any data is read.
            writer.add_tensor_info(
                out.name,
                out.shape,
                np.dtype(np.float16 if out.kind == "f16" else np.float32),
                _byte_size(out.shape, out.kind),
                raw_dtype=getattr(gguf.GGMLQuantizationType, _QTYPES[out.kind]),
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for out in outputs:
            writer.write_tensor_data(_encode(out.produce(), out.kind))
    finally:
        writer.close()


def _temp_path(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.partial")


def convert(hf_dir: Path, out: Path, outtype: str = "f16") -> Path:
    """Write the Hugging Face model in `hf_dir` as one GGUF file at `out`; returns `out`.

    The file appears under its final name only once complete.
    """
    hf_dir, out = Path(hf_dir), Path(out)
    if outtype not in OUTTYPES:
        raise ModelError(f"output type {outtype!r} is not one of {', '.join(OUTTYPES)}")
    if not hf_dir.is_dir():
        raise ModelError(f"{hf_dir} is not a folder")
    config = _read_json(hf_dir / "config.json")
    hp = read_hparams(config, hf_dir)
    vocab = read_vocab(hf_dir, config, hp.vocab_size)
    planned = plan_tensors(read_safetensors(hf_dir), hp, hf_dir)
    outputs = list(_outputs(planned, hp, outtype))
    # Not config's _name_or_path: after fine-tuning that still names the base model.
    name = hf_dir.resolve().name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(out)
    try:
        _write_gguf(tmp, hp, vocab, outputs, name, outtype)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- quantization


def quant_types() -> list[str]:
    """Names accepted by quantize(), e.g. Q4_K_M, as llama.cpp defines them."""
    llama_cpp = import_llama_cpp("quantizing")
    names = [
        n.removeprefix("LLAMA_FTYPE_MOSTLY_")
        for n in dir(llama_cpp)
        if n.startswith("LLAMA_FTYPE_MOSTLY_")
    ]
    return sorted(names)


def quant_ftype(qtype: str) -> int:
    """llama.cpp's LLAMA_FTYPE_MOSTLY_* value for a name like "Q4_K_M"; ModelError if unknown."""
    ftype = getattr(import_llama_cpp("quantizing"), f"LLAMA_FTYPE_MOSTLY_{qtype.upper()}", None)
    if not isinstance(ftype, int):
        raise ModelError(
            f"unknown quantization type {qtype!r}; choose one of {', '.join(quant_types())}"
        )
    return ftype


def _quantize_failure(log: str) -> str:
    """The line of llama.cpp's quantize log that says why it failed (else its last line)."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        # Progress lines have no newline, so the reason may follow a tensor's line.
        found = re.search(r"(\w+: )?\b(failed|error)\b.*", line, re.IGNORECASE)
        if found:
            return found.group(0)
    return lines[-1] if lines else "no reason given"


def quantize(src: Path, dest: Path, qtype: str) -> Path:
    """Quantize a GGUF file with llama.cpp's own quantizer (e.g. qtype "Q4_K_M"); returns dest."""
    src, dest = Path(src), Path(dest)
    llama_cpp = import_llama_cpp("quantizing")
    ftype = quant_ftype(qtype)
    if not src.is_file():
        raise ModelError(f"{src} does not exist")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(dest)
    try:
        # llama.cpp logs every tensor (to localrag's llama.cpp logger, never the terminal):
        # kept here, and read only when quantizing fails.
        with llama_cpp_messages() as log:
            failed = llama_cpp.llama_model_quantize(
                str(src).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        if failed or not tmp.is_file():
            reason = _quantize_failure("\n".join(log))
            raise ModelError(
                f"llama.cpp could not quantize {src} to {qtype.upper()}: {reason} (the source "
                "must be f32, f16 or bf16, and IQ types need an importance matrix)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
