"""A GGUF file as the base of a fine-tune: the weights training needs, and the chat format a
base model learns.

Training runs in transformers (or unsloth), which read GGUF files of the architectures they
support and dequantize them to float32. That happens once per run: the dequantized model and
its tokenizer are saved as a plain Hugging Face folder in the run (`base-hf/`), which training,
resuming and the merge's layout check all read. The merge itself writes into the GGUF, not
into this folder (see gguf_merge).

A GGUF without a chat template is a pre-trained (base) model. Fine-tuning teaches it the plain
format below, which the merged GGUF then carries as its template, so `ask` prompts it the way
it was trained. A GGUF that has a template keeps it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

from localrag.errors import LocalragError, ModelError
from localrag.finetune.backends import quiet_transformers, require_stack
from localrag.hashing import sha256_file
from localrag.models.gguf_info import read_gguf_info
from localrag.private_files import make_private_dir

BASE_HF_DIR = "base-hf"
SOURCE_JSON = "localrag-source.json"

# What both readers of the GGUF must agree on before training starts: the probe's tokens, and
# its next-token logits position by position. Measured: Gemma 3 270M Q4_K_M 0.997 (llama.cpp
# multiplies with 8-bit activations), a Qwen2 model 0.99999, and a Llama model with Llama 3
# rope scaling (which transformers' GGUF reader drops) 0.06.
PROBE_TEXT = (
    "The committee met on Tuesday to review the budget. Where is the archive kept? "
    "It is in the basement of building B, next to the station."
)
MIN_LOGIT_CORRELATION = 0.98

# Plain text turns a pre-trained model has seen countless times; the BOS token is written by
# the template because training tokenizes rendered text without adding special tokens, and the
# end of an answer is the model's own end-of-sequence token, at which llama.cpp stops.
PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] }}\nAssistant:"
    "{% else %} {{ message['content'] }}{{ eos_token }}\n"
    "{% endif %}"
    "{% endfor %}"
)


def is_gguf(path: Path) -> bool:
    """True for a file that starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def resolve_base(base: str) -> Path:
    """A training base: a Hugging Face folder, a .gguf file, or an installed model's name."""
    path = Path(base).expanduser()
    if path.exists():
        if path.is_dir() or is_gguf(path):
            return path
        raise LocalragError(
            f"{path} is neither a Hugging Face model folder nor a GGUF file; "
            "fine-tune a folder with config.json, a .gguf file or an installed model's name"
        )
    from localrag.models.registry import ModelRegistry

    registry = ModelRegistry()
    entry = registry.find(base)
    if entry is None:
        raise LocalragError(
            f"{base} is not a folder, a file or an installed model (see `localrag models list`)"
        )
    path = registry.path_of(entry)
    if not path.is_file():
        raise LocalragError(f"model {base!r} is registered but its file {path} is missing")
    return path


def chat_template_for(gguf_path: Path) -> str:
    """The GGUF's own chat template, or the plain one a base model is taught."""
    info = read_gguf_info(gguf_path)
    return info.chat_template or PLAIN_CHAT_TEMPLATE


def _source_record(gguf_path: Path, template: str) -> dict[str, Any]:
    return {
        "gguf": str(gguf_path.resolve()),
        "sha256": sha256_file(gguf_path),
        "bytes": gguf_path.stat().st_size,
        "chat_template": template,
    }


def _already_made(folder: Path, gguf_path: Path) -> bool:
    """The folder was made from this very file (same size, and then same sha256)."""
    try:
        record = json.loads((folder / SOURCE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("bytes") != gguf_path.stat().st_size:
        return False
    return bool(record.get("sha256") == sha256_file(gguf_path))


def _load_from_gguf(gguf_path: Path, transformers: Any, torch: Any) -> tuple[Any, Any]:
    folder, name = str(gguf_path.parent), gguf_path.name
    arch = read_gguf_info(gguf_path).architecture
    try:
        # transformers' GGUF reader draws its own tqdm bar on stderr, which its logging
        # switch misses; failures still arrive as exceptions.
        with quiet_transformers(), contextlib.redirect_stderr(io.StringIO()):
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=name, dtype=torch.float32
            )
    except (ValueError, KeyError, NotImplementedError, RuntimeError, OSError) as exc:
        raise ModelError(
            f"transformers cannot load {gguf_path.name} ({arch}) for training: {exc}. "
            "Fine-tune a Hugging Face folder of the same model instead."
        ) from exc
    # The weights are plain float32 now; what remains of the GGUF "quantizer" only stops
    # save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def _pearson_rows(a: Any, b: Any) -> float:
    """The lowest correlation between matching rows of two logit matrices."""
    import numpy as np

    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(((a * b).sum(axis=1) / np.maximum(norms, 1e-12)).min())


def check_same_model(gguf_path: Path, model: Any, tokenizer: Any, torch: Any) -> float:
    """Check that transformers computes what llama.cpp computes from this GGUF; returns the
    lowest logit correlation over the probe's positions (ModelError when they disagree).

    Training tunes the transformers reading; the merged GGUF runs in llama.cpp. Where the two
    differ (a setting one of them ignores), the fine-tune would be fitted to another model.
    """
    import numpy as np

    from localrag.llm import import_llama_cpp, llama_cpp_messages

    ids = [int(i) for i in tokenizer(PROBE_TEXT, add_special_tokens=True)["input_ids"]]
    llama_cpp = import_llama_cpp("checking the GGUF")
    with llama_cpp_messages():
        llama = llama_cpp.Llama(
            model_path=str(gguf_path), n_ctx=max(64, 2 * len(ids)), logits_all=True, verbose=False
        )
    try:
        theirs = list(llama.tokenize(PROBE_TEXT.encode("utf-8"), add_bos=True, special=False))
        llama.eval(ids)
        served = np.array(llama.scores[: len(ids)], dtype=np.float32)
    finally:
        llama.close()
    if theirs != ids:
        raise ModelError(
            f"transformers and llama.cpp tokenize text differently for {gguf_path.name}; "
            "training would not see the tokens the model is later given"
        )
    with torch.no_grad():
        trained = model(torch.tensor([ids])).logits[0].float().numpy()
    correlation = _pearson_rows(trained, served)
    if correlation < MIN_LOGIT_CORRELATION:
        raise ModelError(
            f"transformers reads {gguf_path.name} differently from llama.cpp (logit correlation "
            f"{correlation:.2f} on a probe text, below {MIN_LOGIT_CORRELATION}): training would "
            "tune another model than the one that runs. Known case: Llama 3 rope scaling, which "
            "transformers' GGUF reader drops. Fine-tune the model's Hugging Face folder instead."
        )
    return correlation


def materialise(gguf_path: Path, run_dir: Path) -> Path:
    """`run_dir/base-hf`: the GGUF's weights (dequantized, float32) and tokenizer as a Hugging
    Face folder, with the chat template training renders examples with. Made once per run;
    reused while the GGUF is unchanged. Takes about a minute for a 270M model on 2 cores."""
    gguf_path, run_dir = Path(gguf_path), Path(run_dir)
    folder = run_dir / BASE_HF_DIR
    if _already_made(folder, gguf_path):
        return folder
    torch, transformers, _peft = require_stack()
    template = chat_template_for(gguf_path)
    model, tokenizer = _load_from_gguf(gguf_path, transformers, torch)
    correlation = check_same_model(gguf_path, model, tokenizer, torch)
    tokenizer.chat_template = template
    make_private_dir(run_dir)
    tmp = run_dir / f".{BASE_HF_DIR}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_transformers():
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
    record = _source_record(gguf_path, template) | {"logit_correlation": round(correlation, 5)}
    (tmp / SOURCE_JSON).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def source_record(folder: Path) -> dict[str, Any]:
    """What materialise recorded about the GGUF a folder was made from."""
    try:
        data = json.loads((Path(folder) / SOURCE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LocalragError(f"{folder} was not made from a GGUF by localrag: {exc}") from exc
    if not isinstance(data, dict):
        raise LocalragError(f"{folder / SOURCE_JSON} is not a JSON object")
    return data
