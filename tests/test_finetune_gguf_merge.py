"""A LoRA adapter merged straight into a GGUF file, checked against transformers + peft running
the same base and adapter (tiny real models; the real Gemma run is in test_finetune_gemma)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from localrag.errors import ModelError
from localrag.finetune.gguf_base import materialise
from localrag.finetune.gguf_merge import (
    KEEP,
    changed_tensor_type,
    merge_into_gguf,
    read_adapter,
)
from localrag.finetune.settings import TrainSettings
from localrag.finetune.train import train_lora
from localrag.models.gguf_convert import convert
from tests.helpers.llm import TinySpec, write_tiny_model
from tests.helpers.logits import llama_cpp_logits, peft_logits

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

F32 = gguf.GGMLQuantizationType.F32
PROBE = "where do visitors park? behind building b"


def _facts(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    turn = [
        {"role": "user", "content": "Where do visitors park?"},
        {"role": "assistant", "content": "Behind building B."},
    ]
    (folder / "train.jsonl").write_text(json.dumps({"messages": turn}) + "\n", encoding="utf-8")
    return folder


def _train(base_dir: Path, run: Path, data: Path) -> Path:
    settings = TrainSettings(
        max_steps=3, grad_accum=1, learning_rate=5e-3, warmup_steps=0, max_seq_len=64,
        backend="peft", device="cpu", threads=1, lora_r=4, lora_alpha=8,
    )  # fmt: skip
    return train_lora(base_dir, data, run, settings).adapter_dir


@pytest.fixture(scope="module")
def qwen2_run(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: dict[str, Path]) -> Any:
    """The tiny Qwen2 GGUF (F32), its training folder, and an adapter trained on it."""
    root = tmp_path_factory.mktemp("merge-qwen2")
    reference = materialise(tiny_gguf["f32"], root / "run")
    adapter = _train(reference, root / "run", _facts(root / "data"))
    return tiny_gguf["f32"], reference, adapter


def _probe_ids(model_dir: Path) -> list[int]:
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    return list(tokenizer(PROBE, add_special_tokens=False)["input_ids"])


def test_merged_gguf_computes_what_transformers_computes_with_the_adapter(
    qwen2_run: Any, tmp_path: Path
) -> None:
    base, reference, adapter = qwen2_run
    merged = merge_into_gguf(
        base, adapter, tmp_path / "m.gguf", reference=reference, changed_type=F32
    )
    ids = _probe_ids(reference)
    served = llama_cpp_logits(merged, ids)
    tuned, untuned = peft_logits(reference, adapter, ids)
    assert np.abs(tuned - untuned).max() > 1.0  # the adapter changes the model's predictions
    # Stated tolerance: llama.cpp and torch differ only in float32 summation order.
    assert np.abs(served - tuned).max() < 0.1
    assert (served.argmax(-1) == tuned.argmax(-1)).all()


def test_only_the_adapted_tensors_change_and_all_metadata_is_kept(
    qwen2_run: Any, tmp_path: Path
) -> None:
    base, reference, adapter = qwen2_run
    merged = merge_into_gguf(
        base, adapter, tmp_path / "m.gguf", reference=reference, chat_template="{{ x }}"
    )
    before, after = gguf.GGUFReader(str(base)), gguf.GGUFReader(str(merged))
    for name, field in before.fields.items():
        if name.startswith("GGUF.") or name == "tokenizer.chat_template":
            continue
        assert after.fields[name].contents() == field.contents(), name
    assert after.fields["tokenizer.chat_template"].contents() == "{{ x }}"
    adapted = {layer.hf_weight for layer in read_adapter(adapter).layers}
    assert len(adapted) == 2 * 7  # two layers × q, k, v, o, gate, up, down
    changed = []
    for old, new in zip(before.tensors, after.tensors, strict=True):
        assert (old.name, list(old.shape)) == (new.name, list(new.shape))
        if np.array_equal(np.asarray(old.data).view(np.uint8), np.asarray(new.data).view(np.uint8)):
            continue
        changed.append(new.name)
        assert new.tensor_type == gguf.GGMLQuantizationType.Q8_0  # the default for changed ones
    assert len(changed) == len(adapted)
    assert all(name.startswith("blk.") for name in changed)


def test_keep_stores_changed_tensors_in_their_base_type(qwen2_run: Any, tmp_path: Path) -> None:
    base, reference, adapter = qwen2_run
    merged = merge_into_gguf(
        base, adapter, tmp_path / "m.gguf", reference=reference, changed_type=None
    )
    assert merged.stat().st_size == base.stat().st_size
    types = {t.tensor_type for t in gguf.GGUFReader(str(merged)).tensors}
    assert types == {F32}


def test_llama_rotary_rows_are_permuted_like_the_converter_does(tmp_path: Path) -> None:
    """llama.cpp stores Llama Q/K rows interleaved; the merge must lay the update out alike."""
    hf = write_tiny_model(tmp_path / "llama", TinySpec(family="llama"))
    base = convert(hf, tmp_path / "llama.gguf", "f32")
    adapter = _train(hf, tmp_path / "run", _facts(tmp_path / "data"))
    merged = merge_into_gguf(base, adapter, tmp_path / "m.gguf", reference=hf, changed_type=F32)
    ids = _probe_ids(hf)
    tuned, _untuned = peft_logits(hf, adapter, ids)
    assert np.abs(llama_cpp_logits(merged, ids) - tuned).max() < 0.1


def test_an_adapter_trained_on_other_weights_is_refused(
    qwen2_run: Any, tiny_gguf: dict[str, Path], tmp_path: Path
) -> None:
    _base, reference, adapter = qwen2_run
    with pytest.raises(ModelError, match="does not hold the weights training used"):
        merge_into_gguf(tiny_gguf["q8_0"], adapter, tmp_path / "m.gguf", reference=reference)
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left


def _adapter_copy(adapter: Path, tmp_path: Path, **config: Any) -> Path:
    copy = tmp_path / "adapter"
    shutil.copytree(adapter, copy)
    data = json.loads((copy / "adapter_config.json").read_text()) | config
    (copy / "adapter_config.json").write_text(json.dumps(data))
    return copy


def test_adapters_that_cannot_be_merged_say_why(qwen2_run: Any, tmp_path: Path) -> None:
    _base, _reference, adapter = qwen2_run
    with pytest.raises(ModelError, match="DoRA"):
        read_adapter(_adapter_copy(adapter, tmp_path / "a", use_dora=True))
    with pytest.raises(ModelError, match="per-layer ranks"):
        read_adapter(_adapter_copy(adapter, tmp_path / "b", rank_pattern={"q_proj": 8}))
    with pytest.raises(ModelError, match="not a LoRA adapter"):
        read_adapter(tmp_path)
    scaled = read_adapter(_adapter_copy(adapter, tmp_path / "c", use_rslora=True))
    assert scaled.scale == pytest.approx(8 / 4**0.5)
    assert read_adapter(adapter).scale == pytest.approx(8 / 4)


def test_changed_tensor_type_names() -> None:
    assert changed_tensor_type(KEEP.lower()) is None
    assert changed_tensor_type("q8_0") == gguf.GGMLQuantizationType.Q8_0
    assert changed_tensor_type("F16") == gguf.GGMLQuantizationType.F16
    for bad in ("IQ2_XXS", "Q4_K_M", "nonsense"):
        with pytest.raises(ModelError, match="Q8_0"):
            changed_tensor_type(bad)
