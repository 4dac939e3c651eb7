"""HF → GGUF conversion: llama.cpp must compute and tokenize exactly what transformers does."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from localrag.errors import ModelError
from localrag.models import gguf_convert
from localrag.models.gguf_convert import Family, convert, quantize
from tests.helpers.llm import (
    CHATML_TEMPLATE,
    USER_DEFINED,
    TinySpec,
    write_tiny_model,
)

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

REPO = Path(__file__).resolve().parent.parent

# Long enough (~40 tokens) that positions past the Llama test model's rope original context
# (32) are reached, where Llama 3 frequency scaling changes the result.
PROMPT = (
    "Where is the meeting on Tuesday? It's in room 12 at 10:30, isn't it? Water the tomatoes "
    "deeply twice a week, then simmer the lentils for thirty minutes."
)
SENTENCES = [
    "Hello world",
    "  leading spaces, and trailing ones  ",
    "Numbers 1234567 and 3.14159; the 42nd (or 7th) of 2024!",
    "Don't stop: it's the CAT'S toy, isn't it? We'LL see.",
    "Tabs\tand\nnew lines\n\n    indented\r\nwindows line",
    "Unicode: café, naïve, Zürich — 東京 😀 ünïcödé ½",
    "multiple    spaces   here\u00a0and a no-break space",
    "code: def f(x):\n    return x**2  # square\n",
    f"an added token {USER_DEFINED} inside text",
    "",
]

# Relative to the largest |logit|. With f32 weights and an f32 KV cache, llama.cpp's CPU kernels
# differ from torch only by summation order (observed ~1e-6); a missing Q/K permutation or
# missing rope factors gives errors of order 1.
LOGITS_RTOL = 1e-4

VARIANTS = {
    "qwen2-tied": TinySpec(),
    "llama-untied": TinySpec(family="llama"),
    "llama-tied-bf16-sharded": TinySpec(family="llama", tied=True, dtype="BF16", shards=3, seed=1),
    "qwen2-untied-bf16": TinySpec(tied=False, dtype="BF16", seed=2),
}


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """The HF folder of a named variant (or any TinySpec), written once per module."""
    root = tmp_path_factory.mktemp("hf")
    made: dict[str, Path] = {}

    def get(name: str, spec: TinySpec | None = None) -> Path:
        if name not in made:
            made[name] = write_tiny_model(root / name, spec or VARIANTS[name])
        return made[name]

    return get


@pytest.fixture(scope="module")
def f32_gguf(
    hf_folder: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    root = tmp_path_factory.mktemp("gguf")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = convert(hf_folder(name), root / f"{name}.gguf", outtype="f32")
        return made[name]

    return get


def hf_tokenize(folder: Path, text: str) -> list[int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return list(tok.encode(text, add_special_tokens=False).ids)


def load_llama(path: Path, **kwargs: Any) -> Any:
    return llama_cpp.Llama(model_path=str(path), verbose=False, n_threads=2, **kwargs)


def llama_cpp_logits(path: Path, ids: list[int]) -> np.ndarray:
    """Logits for every position, with an f32 KV cache so only arithmetic order differs."""
    llm = load_llama(
        path,
        n_ctx=128,
        n_batch=128,
        logits_all=True,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
    )
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)


_hf_cache: dict[tuple[Path, tuple[int, ...]], np.ndarray] = {}


def transformers_logits(folder: Path, ids: list[int]) -> np.ndarray:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    key = (folder, tuple(ids))
    if key not in _hf_cache:
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        with torch.no_grad():
            out = model(torch.tensor([ids])).logits[0]
        _hf_cache[key] = out.double().numpy()
    return _hf_cache[key]


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


# --------------------------------------------------------------------------- logits


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_llama_cpp_logits_match_transformers(
    variant: str, hf_folder: Callable[..., Path], f32_gguf: Callable[[str], Path]
) -> None:
    folder = hf_folder(variant)
    ids = hf_tokenize(folder, PROMPT)
    assert len(ids) > 32
    want = transformers_logits(folder, ids)
    got = llama_cpp_logits(f32_gguf(variant), ids)
    assert relative_error(got, want) < LOGITS_RTOL
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


def _convert_broken(
    monkeypatch: pytest.MonkeyPatch, folder: Path, out: Path, breakage: str
) -> Path:
    if breakage == "no-permutation":
        families = dict(gguf_convert.FAMILIES)
        families["LlamaForCausalLM"] = Family("llama", permute_qk=False)
        monkeypatch.setattr(gguf_convert, "FAMILIES", families)
    else:
        monkeypatch.setattr(
            gguf_convert, "llama3_rope_factors", lambda hp: np.ones(hp.head_dim // 2, np.float32)
        )
    return convert(folder, out, outtype="f32")


@pytest.mark.parametrize("breakage", ["no-permutation", "no-rope-factors"])
def test_logits_check_catches_a_broken_llama_conversion(
    breakage: str,
    hf_folder: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The comparison above is sensitive to the two Llama-specific steps."""
    folder = hf_folder("llama-untied")
    ids = hf_tokenize(folder, PROMPT)
    broken = _convert_broken(monkeypatch, folder, tmp_path / "broken.gguf", breakage)
    assert relative_error(llama_cpp_logits(broken, ids), transformers_logits(folder, ids)) > 0.05


# --------------------------------------------------------------------------- tokenizer


@pytest.mark.parametrize(
    ("variant", "spec", "pre"),
    [
        ("qwen2-tied", None, "qwen2"),
        ("llama-untied", None, "llama-bpe"),
        ("llama-gpt2", TinySpec(family="llama", layers=1, gpt2_pre=True), "gpt-2"),
    ],
)
def test_tokenization_matches_hugging_face(
    variant: str, spec: TinySpec | None, pre: str, hf_folder: Callable[..., Path], tmp_path: Path
) -> None:
    folder = hf_folder(variant, spec)
    path = convert(folder, tmp_path / "m.gguf", outtype="f16")
    assert read_metadata(path)["tokenizer.ggml.pre"] == pre
    llm = load_llama(path, vocab_only=True)
    for text in SENTENCES:
        expected = hf_tokenize(folder, text)
        got = llm.tokenize(text.encode(), add_bos=False, special=False)
        assert got == expected, text
        assert llm.detokenize(got).decode() == text


def test_special_tokens_split_only_when_asked(tiny_gguf: dict[str, Path]) -> None:
    llm = load_llama(tiny_gguf["f32"], vocab_only=True)
    as_text = llm.tokenize(b"<|im_start|>user", add_bos=False, special=False)
    as_special = llm.tokenize(b"<|im_start|>user", add_bos=False, special=True)
    assert len(as_special) == 2 and len(as_text) > 2


# --------------------------------------------------------------------------- metadata


def read_metadata(path: Path) -> dict[str, Any]:
    """GGUF key-value pairs as Python values."""
    reader = gguf.GGUFReader(str(path))
    values: dict[str, Any] = {}
    for key, f in reader.fields.items():
        values[key] = f.contents()
    return values


def test_chat_model_metadata(tiny_llm_dir: Path, tiny_gguf: dict[str, Path]) -> None:
    meta = read_metadata(tiny_gguf["f32"])
    hf_vocab = json.loads((tiny_llm_dir / "tokenizer.json").read_text())
    added = {t["content"]: t["id"] for t in hf_vocab["added_tokens"]}
    config = json.loads((tiny_llm_dir / "config.json").read_text())

    assert meta["general.architecture"] == "qwen2"
    assert meta["general.file_type"] == 0  # all f32
    assert meta["qwen2.embedding_length"] == 256
    assert meta["qwen2.feed_forward_length"] == 512
    assert meta["qwen2.block_count"] == 2
    assert meta["qwen2.attention.head_count"] == 4
    assert meta["qwen2.attention.head_count_kv"] == 2
    assert meta["qwen2.context_length"] == 4096
    assert meta["qwen2.rope.freq_base"] == pytest.approx(1e6)
    assert meta["qwen2.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.chat_template"] == CHATML_TEMPLATE
    assert meta["tokenizer.ggml.eos_token_id"] == added["<|im_end|>"]
    assert meta["tokenizer.ggml.bos_token_id"] == added["<|endoftext|>"]
    assert meta["tokenizer.ggml.padding_token_id"] == added["<|endoftext|>"]
    assert meta["tokenizer.ggml.add_bos_token"] is False

    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == config["vocab_size"] > len(hf_vocab["model"]["vocab"])
    assert types[added["<|im_end|>"]] == gguf.TokenType.CONTROL
    assert types[added[USER_DEFINED]] == gguf.TokenType.USER_DEFINED
    assert types[0] == gguf.TokenType.NORMAL
    assert tokens[-1].startswith("[PAD") and types[-1] == gguf.TokenType.UNUSED
    assert len(meta["tokenizer.ggml.merges"]) == len(hf_vocab["model"]["merges"])


def test_llama_metadata_and_tensors(f32_gguf: Callable[[str], Path]) -> None:
    path = f32_gguf("llama-untied")
    meta = read_metadata(path)
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.ggml.pre"] == "llama-bpe"
    assert meta["tokenizer.ggml.add_bos_token"] is True  # from the post-processor template
    names = {t.name for t in gguf.GGUFReader(str(path)).tensors}
    assert {"rope_freqs.weight", "output.weight", "blk.1.ffn_down.weight"} <= names
    assert not any(n.endswith(".bias") for n in names)


def test_tied_embeddings_write_no_output_tensor(tiny_gguf: dict[str, Path]) -> None:
    reader = gguf.GGUFReader(str(tiny_gguf["f32"]))
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names and "token_embd.weight" in names
    assert "blk.0.attn_q.bias" in names and "rope_freqs.weight" not in names


def test_chat_template_from_jinja_file(tiny_llm_dir: Path, tmp_path: Path) -> None:
    """transformers 5 saves the template as chat_template.jinja, not in tokenizer_config."""
    folder = _copy(tiny_llm_dir, tmp_path / "jinja")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "chat_template.jinja").write_text(config.pop("chat_template"))
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    meta = read_metadata(convert(folder, tmp_path / "m.gguf", "f16"))
    assert meta["tokenizer.chat_template"] == CHATML_TEMPLATE


def test_f16_and_q8_0_outtypes(tiny_llm_dir: Path, tmp_path: Path) -> None:
    for outtype, want in [
        ("f16", gguf.GGMLQuantizationType.F16),
        ("q8_0", gguf.GGMLQuantizationType.Q8_0),
    ]:
        reader = gguf.GGUFReader(str(convert(tiny_llm_dir, tmp_path / f"{outtype}.gguf", outtype)))
        types = {t.name: t.tensor_type for t in reader.tensors}
        assert types["blk.0.ffn_up.weight"] == want
        assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
        assert types["blk.0.attn_q.bias"] == gguf.GGMLQuantizationType.F32


# --------------------------------------------------------------------------- chat + generation


def test_chat_template_renders_with_llama_cpp_python(tiny_gguf: dict[str, Path]) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    meta = read_metadata(tiny_gguf["f32"])
    formatter = Jinja2ChatFormatter(
        template=str(meta["tokenizer.chat_template"]), eos_token="<|im_end|>", bos_token=""
    )
    messages: list[Any] = [
        {"role": "system", "content": "Answer from the notes."},
        {"role": "user", "content": "When do tomatoes need water?"},
    ]
    prompt = formatter(messages=messages).prompt
    assert prompt == (
        "<|im_start|>system\nAnswer from the notes.<|im_end|>\n"
        "<|im_start|>user\nWhen do tomatoes need water?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_f32_chat_completion_runs(tiny_gguf: dict[str, Path]) -> None:
    llm = load_llama(tiny_gguf["f32"], n_ctx=256)
    out = llm.create_chat_completion(
        messages=[{"role": "user", "content": "Hello"}], max_tokens=4, temperature=0.0
    )
    assert out["choices"][0]["finish_reason"] in ("stop", "length")
    assert llm.token_eos() == llm.tokenize(b"<|im_end|>", add_bos=False, special=True)[0]


GENERATE = textwrap.dedent(
    """
    import sys
    from localrag.llm import LLMSettings, LocalLLM

    llm = LocalLLM.load(sys.argv[1], LLMSettings(n_ctx=128, n_threads=2, repack=sys.argv[2]))
    tokens = llm.llama.tokenize(b"Water the tomatoes", add_bos=False)
    produced = []
    for token in llm.llama.generate(tokens, temp=0.0):
        produced.append(token)
        if len(produced) == 6:
            break
    print("generated", len(produced), "repack", llm.repack)
    """
)


def generate_in_child(path: Path, repack: str) -> subprocess.CompletedProcess[str]:
    """In a child process: a crash inside llama.cpp must fail a test, not end pytest."""
    return subprocess.run(
        [sys.executable, "-c", GENERATE, str(path), repack],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
@pytest.mark.parametrize("repack", ["off", "auto"])
def test_quantized_model_loads_and_generates(
    quant: str, repack: str, tiny_gguf: dict[str, Path]
) -> None:
    """Without repacking, and with what users get by default ("auto": off on AMX CPUs, where
    llama.cpp's repacked kernels crash, docs/ARCHITECTURE.md §12), quantized files generate on
    this CPU."""
    path = tiny_gguf[quant]
    reader = gguf.GGUFReader(str(path))
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.ffn_up.weight"] == {"q8_0": "Q8_0", "q4_k_m": "Q4_K"}[quant]
    done = generate_in_child(path, repack)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert "generated 6" in done.stdout


# --------------------------------------------------------------------------- errors


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def test_unknown_architecture_is_refused(tiny_llm_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_llm_dir, tmp_path / "neox")
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["GPTNeoXForCausalLM"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"GPTNeoXForCausalLM.*not supported"):
        convert(folder, tmp_path / "out.gguf")
    assert list(tmp_path.glob("*.gguf")) == [] and list(tmp_path.glob(".*partial")) == []


def test_missing_tokenizer_is_refused(tiny_llm_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_llm_dir, tmp_path / "notok")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"notok has no tokenizer\.json"):
        convert(folder, tmp_path / "out.gguf")


def test_unknown_pre_tokenizer_is_refused(tiny_llm_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_llm_dir, tmp_path / "otherpre")
    path = folder / "tokenizer.json"
    tokenizer = json.loads(path.read_text())
    split = tokenizer["pre_tokenizer"]["pretokenizers"][0]
    split["pattern"]["Regex"] = split["pattern"]["Regex"].replace(r"\p{N}|", r"\p{N}{1,2}|")
    path.write_text(json.dumps(tokenizer))
    with pytest.raises(ModelError, match="unknown pre-tokenizer"):
        convert(folder, tmp_path / "out.gguf")


def test_missing_weights_and_bad_shapes_are_refused(tiny_llm_dir: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_llm_dir, tmp_path / "bad")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"intermediate_size": 768}))
    with pytest.raises(ModelError, match=r"mlp\.gate_proj\.weight has shape \[512, 256\]"):
        convert(folder, tmp_path / "out.gguf")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"bad has no model\.safetensors"):
        convert(folder, tmp_path / "out.gguf")
    with pytest.raises(ModelError, match="is not a folder"):
        convert(tmp_path / "nowhere", tmp_path / "out.gguf")


def test_unknown_quant_type_is_refused(tiny_gguf: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown quantization type .Q3_X.*Q4_K_M"):
        quantize(tiny_gguf["f32"], tmp_path / "out.gguf", "Q3_X")


def test_quantizing_is_quiet_and_a_failure_says_why(
    tiny_gguf: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import llama_cpp._logger

    # As in a fresh `localrag finetune train`, before any model was loaded (which quiets it),
    # llama.cpp logs every tensor it quantizes.
    llama_cpp._logger.logger.setLevel(logging.NOTSET)
    try:
        quantize(tiny_gguf["f32"], tmp_path / "ok.gguf", "Q8_0")
        assert capsys.readouterr().err == ""
        with pytest.raises(ModelError, match="failed to quantize: requantizing from type q8_0"):
            quantize(tmp_path / "ok.gguf", tmp_path / "again.gguf", "Q4_K_M")
        assert not (tmp_path / "again.gguf").exists()
    finally:
        llama_cpp._logger.set_verbose(False)


# --------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "convert_gguf.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_converts_and_quantizes(tiny_llm_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "model-q4.gguf"
    done = run_cli(str(tiny_llm_dir), str(out), "--quantize", "Q4_K_M")
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout
    assert read_metadata(out)["general.file_type"] == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-q4.gguf"]


def test_cli_prints_a_clear_error(tmp_path: Path) -> None:
    done = run_cli(str(tmp_path / "missing"), str(tmp_path / "out.gguf"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "missing is not a folder" in done.stderr
    assert "Traceback" not in done.stderr
