"""A GGUF as a training base: which bases are accepted, the folder training reads, and the
check that transformers reads the file as llama.cpp runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from localrag.errors import LocalragError, ModelError
from localrag.finetune.gguf_base import (
    BASE_HF_DIR,
    PLAIN_CHAT_TEMPLATE,
    is_gguf,
    materialise,
    resolve_base,
    source_record,
)
from localrag.finetune.sft_data import build_training_set
from localrag.models.gguf_convert import convert
from localrag.models.registry import ModelRegistry
from tests.helpers.llm import TinySpec, write_tiny_model

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")


def test_a_base_is_a_folder_a_gguf_file_or_an_installed_models_name(
    tmp_path: Path, tiny_llm_dir: Path, tiny_gguf: dict[str, Path]
) -> None:
    assert resolve_base(str(tiny_llm_dir)) == tiny_llm_dir
    assert resolve_base(str(tiny_gguf["q8_0"])) == tiny_gguf["q8_0"]
    entry = ModelRegistry().import_file(tiny_gguf["q8_0"], name="tiny")
    assert resolve_base("tiny") == ModelRegistry().path_of(entry)
    assert is_gguf(resolve_base("tiny"))
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    with pytest.raises(LocalragError, match="neither a Hugging Face model folder nor a GGUF"):
        resolve_base(str(text))
    with pytest.raises(LocalragError, match="not a folder, a file or an installed model"):
        resolve_base("no-such-model")


def test_the_training_folder_holds_the_ggufs_weights_and_template_and_is_reused(
    tmp_path: Path, tiny_gguf: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    folder = materialise(tiny_gguf["q8_0"], tmp_path / "run")
    assert "de-quantizing" not in capfd.readouterr().err  # transformers' own progress bar
    assert folder == tmp_path / "run" / BASE_HF_DIR
    record = source_record(folder)
    assert record["bytes"] == tiny_gguf["q8_0"].stat().st_size
    assert record["logit_correlation"] > 0.98
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert "<|im_start|>" in tokenizer.chat_template  # the GGUF's own (ChatML) template is kept
    model_file = folder / "model.safetensors"
    made = model_file.stat().st_mtime_ns
    assert materialise(tiny_gguf["q8_0"], tmp_path / "run") == folder
    assert model_file.stat().st_mtime_ns == made  # same file: not made again
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]


def test_a_gguf_that_transformers_reads_differently_from_llama_cpp_is_refused(
    tmp_path: Path,
) -> None:
    """Llama 3 rope scaling is dropped by transformers' GGUF reader: training would tune a
    different model from the one llama.cpp runs."""
    hf = write_tiny_model(tmp_path / "llama", TinySpec(family="llama"))
    gguf_file = convert(hf, tmp_path / "llama.gguf", "f32")
    with pytest.raises(ModelError, match=r"differently from llama.cpp \(logit correlation"):
        materialise(gguf_file, tmp_path / "run")
    assert not (tmp_path / "run" / BASE_HF_DIR).exists()


def test_the_plain_template_trains_only_the_answer_and_its_end(tiny_llm_dir: Path) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_llm_dir))
    tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    conversation = [
        {"role": "system", "content": "Answer from the handbook."},
        {"role": "user", "content": "Where do visitors park?"},
        {"role": "assistant", "content": "Behind building B."},
    ]
    prompt = tokenizer.apply_chat_template(conversation[:2], tokenize=False)
    assert prompt.endswith("Answer from the handbook.\n\nUser: Where do visitors park?\nAssistant:")
    examples, stats = build_training_set(tokenizer, [conversation], max_seq_len=256)
    assert stats.used == 1
    example = examples[0]
    trained = [
        t for t, label in zip(example.input_ids, example.labels, strict=True) if label != -100
    ]
    assert tokenizer.decode(trained).strip() == "Behind building B." + tokenizer.eos_token
    assert stats.notes == []
