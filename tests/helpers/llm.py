"""Tiny Hugging Face-format chat models with random weights, and their GGUF conversions.

The weights are random (seeded) but the folders are real: config.json, safetensors (optionally
bf16 or sharded), a byte-level BPE tokenizer trained here with the family's own split regex,
special tokens and a chat template, so converting one exercises everything a real checkpoint
would. Dimensions suit K-quants (rows of 256).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import normalizers as tk_normalizers

from localrag.llm import LocalLLM
from localrag.models.gguf_convert import LLAMA3_SPLIT, QWEN2_SPLIT, convert, quantize

TRAINING_TEXT = """\
Tomatoes need at least six hours of direct sun every day. Water them deeply twice a week
rather than a little every day, so the roots grow down instead of staying near the surface.
A compost heap needs a balance of green material, such as grass clippings and vegetable
scraps, and brown material, such as dry leaves and cardboard. Turn it every two weeks.
Rinse two cups of red lentils. Fry an onion, two carrots and a celery stalk in olive oil
until soft. Add the lentils, six cups of stock and a bay leaf, then simmer for thirty minutes.
The invoice exporter writes invoices as CSV files for the accounting department; it rounds
the total with VAT to 2 decimals (20% by default) and reports 404 when a file is missing.
Where is the meeting on Tuesday? It's in room 12 at 10:30, isn't it? We'll see, they'd say.
Questions and answers: what does the report say about the budget for 2024 and 2025?
The quick brown fox jumps over the lazy dog while the assistant answers the user's question.
"""

QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
USER_DEFINED = "<tool_call>"  # an added token that is not special, as Qwen2.5 has

CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """One tiny model: family, shape and how its checkpoint is stored."""

    family: str = "qwen2"  # "qwen2" (ChatML, q/k/v biases) or "llama" (Llama 3 style)
    hidden: int = 256
    intermediate: int = 512
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    max_positions: int = 4096
    tied: bool | None = None  # None: the family's usual (Qwen2 small models tie, Llama 3 8B not)
    dtype: str = "F32"  # or "BF16"
    shards: int = 1
    gpt2_pre: bool = False  # plain GPT-2 ByteLevel pre-tokenizer instead of the family's
    vocab_target: int = 600
    seed: int = 0

    @property
    def is_tied(self) -> bool:
        return self.family == "qwen2" if self.tied is None else self.tied


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer(spec: TinySpec) -> Tokenizer:
    """A byte-level BPE trained on TRAINING_TEXT, split like the real family's tokenizer."""
    tok = Tokenizer(models.BPE(ignore_merges=spec.family == "llama"))
    if spec.gpt2_pre:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        split = LLAMA3_SPLIT if spec.family == "llama" else QWEN2_SPLIT
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    if spec.family == "qwen2":
        tok.normalizer = tk_normalizers.NFC()  # as Qwen2's tokenizer.json has
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_target,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer)
    # Added after training so special ids sit at the end of the vocabulary, as in real models.
    if spec.family == "qwen2":
        tok.add_special_tokens(QWEN2_SPECIALS)
        tok.add_tokens([USER_DEFINED])
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        tok.add_special_tokens(LLAMA3_SPECIALS)
        bos = LLAMA3_SPECIALS[0]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, token_id(tok, bos))],
        )
    return tok


def _tokenizer_files(folder: Path, spec: TinySpec, tok: Tokenizer) -> dict[str, int]:
    """tokenizer.json, tokenizer_config.json; returns the ids config.json needs."""
    tok.save(str(folder / "tokenizer.json"))
    config: dict[str, object]
    if spec.family == "qwen2":
        config = {
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "chat_template": CHATML_TEMPLATE,
        }
        ids = {"bos": "<|endoftext|>", "eos": "<|im_end|>", "eos2": "<|endoftext|>"}
    else:
        config = {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "chat_template": LLAMA3_TEMPLATE,
        }
        ids = {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "eos2": "<|end_of_text|>"}
    config |= {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 4096}
    _write_json(folder / "tokenizer_config.json", config)
    return {k: token_id(tok, v) for k, v in ids.items()}


def token_id(tok: Tokenizer, text: str) -> int:
    found = tok.token_to_id(text)
    if found is None:
        raise KeyError(text)
    return found


# --------------------------------------------------------------------------- weights


def _weights(spec: TinySpec, vocab_size: int) -> dict[str, np.ndarray]:
    """Random weights scaled so attention is position-sensitive and logits spread out."""
    rng = np.random.default_rng(spec.seed)
    head_dim = spec.hidden // spec.heads
    q_rows, kv_rows = spec.heads * head_dim, spec.kv_heads * head_dim

    def mat(rows: int, cols: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(spec.hidden)).astype(np.float32)

    w = {"model.embed_tokens.weight": (0.25 * rng.standard_normal((vocab_size, spec.hidden)))}
    for i in range(spec.layers):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm()
        w[p + "self_attn.q_proj.weight"] = mat(q_rows, spec.hidden, 2.0)
        w[p + "self_attn.k_proj.weight"] = mat(kv_rows, spec.hidden, 2.0)
        w[p + "self_attn.v_proj.weight"] = mat(kv_rows, spec.hidden)
        if spec.family == "qwen2":
            w[p + "self_attn.q_proj.bias"] = 0.5 * rng.standard_normal(q_rows)
            w[p + "self_attn.k_proj.bias"] = 0.5 * rng.standard_normal(kv_rows)
            w[p + "self_attn.v_proj.bias"] = 0.1 * rng.standard_normal(kv_rows)
        w[p + "self_attn.o_proj.weight"] = mat(spec.hidden, q_rows)
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "mlp.gate_proj.weight"] = mat(spec.intermediate, spec.hidden)
        w[p + "mlp.up_proj.weight"] = mat(spec.intermediate, spec.hidden)
        w[p + "mlp.down_proj.weight"] = mat(spec.hidden, spec.intermediate)
    w["model.norm.weight"] = norm()
    if not spec.is_tied:
        w["lm_head.weight"] = mat(vocab_size, spec.hidden, 4.0)
    return {k: np.asarray(v, dtype=np.float32) for k, v in w.items()}


def _to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns, rounding to nearest even like torch does."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "F32") -> int:
    """A safetensors file written by hand (numpy has no bf16); returns the data size."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    blobs, offset = [], 0
    for name, array in tensors.items():
        data = (
            _to_bf16_bits(array).tobytes()
            if dtype == "BF16"
            else np.ascontiguousarray(array, dtype="<f4").tobytes()
        )
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for blob in blobs:
            f.write(blob)
    return offset


def _write_checkpoint(folder: Path, spec: TinySpec, tensors: dict[str, np.ndarray]) -> None:
    if spec.shards == 1:
        write_safetensors(folder / "model.safetensors", tensors, spec.dtype)
        return
    names = list(tensors)
    groups = [names[i :: spec.shards] for i in range(spec.shards)]
    weight_map: dict[str, str] = {}
    total = 0
    for n, group in enumerate(groups, 1):
        file = f"model-{n:05d}-of-{spec.shards:05d}.safetensors"
        total += write_safetensors(folder / file, {k: tensors[k] for k in group}, spec.dtype)
        weight_map |= dict.fromkeys(group, file)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    _write_json(folder / "model.safetensors.index.json", index)


# --------------------------------------------------------------------------- config


def _model_config(spec: TinySpec, vocab_size: int, ids: dict[str, int]) -> dict[str, object]:
    config: dict[str, object] = {
        "architectures": ["Qwen2ForCausalLM" if spec.family == "qwen2" else "LlamaForCausalLM"],
        "model_type": spec.family,
        "hidden_act": "silu",
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "max_position_embeddings": spec.max_positions,
        "rms_norm_eps": 1e-6,
        "vocab_size": vocab_size,
        "tie_word_embeddings": spec.is_tied,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eos"],
        "torch_dtype": "bfloat16" if spec.dtype == "BF16" else "float32",
    }
    if spec.family == "qwen2":
        # The pre-transformers-5 layout most hub checkpoints still have.
        config |= {"rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": None}
    else:
        # transformers 5's layout. Llama 3 rope scaling with a tiny original context, so the
        # rescaled frequencies matter within a short test prompt.
        config |= {
            "attention_bias": False,
            "mlp_bias": False,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 10000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        }
    return config


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tiny_model(folder: Path, spec: TinySpec | None = None) -> Path:
    """Write a complete Hugging Face model folder; returns it."""
    spec = spec or TinySpec()
    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(spec)
    ids = _tokenizer_files(folder, spec, tok)
    # Round the embedding up, as real models do; llama.cpp then needs filler token names.
    vocab_size = -(-tok.get_vocab_size() // 64) * 64
    _write_json(folder / "config.json", _model_config(spec, vocab_size, ids))
    _write_json(
        folder / "generation_config.json",
        {"bos_token_id": ids["bos"], "eos_token_id": [ids["eos"], ids["eos2"]]},
    )
    _write_checkpoint(folder, spec, _weights(spec, vocab_size))
    return folder


def build_tiny_ggufs(hf_dir: Path, out_dir: Path) -> dict[str, Path]:
    """F32 conversion plus Q8_0 and Q4_K_M quantizations by llama.cpp."""
    out_dir.mkdir(parents=True, exist_ok=True)
    f32 = convert(hf_dir, out_dir / f"{hf_dir.name}-f32.gguf", outtype="f32")
    return {
        "f32": f32,
        "q8_0": quantize(f32, out_dir / f"{hf_dir.name}-q8_0.gguf", "Q8_0"),
        "q4_k_m": quantize(f32, out_dir / f"{hf_dir.name}-q4_k_m.gguf", "Q4_K_M"),
    }


class ScriptedLLM:
    """A real LocalLLM whose answers are forced, one per call, by a grammar; records prompts."""

    def __init__(self, llm: LocalLLM, *answers: str) -> None:
        self._llm = llm
        self._answers = list(answers)
        self.prompts: list[list[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llm, name)

    def stream(self, prompt: Sequence[int], **kwargs: Any) -> Iterator[str]:
        self.prompts.append(list(prompt))
        if self._answers:
            kwargs["grammar"] = "root ::= " + json.dumps(self._answers.pop(0))
            kwargs["max_tokens"] = 400
        return self._llm.stream(prompt, **kwargs)

    def complete(self, prompt: Sequence[int], **kwargs: Any) -> str:
        return "".join(self.stream(prompt, **kwargs))

    def text(self, call: int) -> str:
        return self._llm.llama.detokenize(self.prompts[call], special=True).decode()
