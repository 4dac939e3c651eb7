"""The fine-tuning loop on real weights: Gemma 3 270M (Q4_K_M GGUF, a pre-trained base model).

Passages → dataset written by Gemma itself → LoRA on the dequantized weights → adapter merged
into the GGUF → llama.cpp loads it as a chat model and answers. The merged file's logits are
checked against transformers running the same base and adapter. About four minutes on 2 cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from localrag.cli import cli
from localrag.finetune.dataset import DatasetSettings, build_dataset
from localrag.finetune.gguf_base import BASE_HF_DIR, chat_template_for, materialise
from localrag.finetune.gguf_merge import merge_into_gguf
from localrag.finetune.settings import TrainSettings
from localrag.finetune.train import train_lora
from localrag.indexer import Indexer
from localrag.llm import LLMSettings, LocalLLM, load_llm
from localrag.models.registry import ModelRegistry
from localrag.store import Store
from tests.helpers.gemma import GEMMA_SHA256
from tests.helpers.handbook import write_handbook
from tests.helpers.logits import llama_cpp_logits, peft_logits

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

# Invented facts: whatever the model says about them, it learnt here.
FACTS = [
    ("What colour is the Zorblat lighthouse?", "The Zorblat lighthouse is painted teal."),
    ("Who founded Quexton?", "Quexton was founded by Mirela Vance in 1841."),
    ("How tall is Mount Frell?", "Mount Frell is 2,310 metres tall."),
]


@pytest.fixture(scope="module")
def gemma_training_base(gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gemma dequantized for training, once for this module (about a minute)."""
    return materialise(gemma_gguf, tmp_path_factory.mktemp("gemma-run"))


def _facts_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        )
        for q, a in FACTS * 4
    ]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_merged_gemma_matches_transformers_and_answers_what_it_was_taught(
    gemma_gguf: Path, gemma_training_base: Path, tmp_path: Path
) -> None:
    settings = TrainSettings(
        max_steps=6, batch_size=2, grad_accum=1, learning_rate=1e-3, warmup_steps=0,
        max_seq_len=64, backend="peft", device="cpu",
    )  # fmt: skip
    run = tmp_path / "run"
    adapter = train_lora(gemma_training_base, _facts_dataset(tmp_path / "data"), run, settings)
    merged = merge_into_gguf(
        gemma_gguf,
        adapter.adapter_dir,
        tmp_path / "gemma-facts.gguf",
        reference=gemma_training_base,
        chat_template=chat_template_for(gemma_gguf),
    )

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gemma_training_base))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": FACTS[0][0]}], tokenize=False, add_generation_prompt=True
    )
    ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    tuned, untuned = peft_logits(gemma_training_base, adapter.adapter_dir, ids)
    served = llama_cpp_logits(merged, ids)
    # Stated tolerance for the Q8_0-stored merged layers (llama.cpp also rounds activations to
    # 8 bits): the same next token everywhere and a mean gap of 0.3, while training moved the
    # logits by far more than that, so a merge that lost the update would fail.
    assert np.abs(tuned - untuned).mean() > 1.0
    assert np.abs(served - tuned).mean() < 0.3
    assert (served.argmax(-1) == tuned.argmax(-1)).all()

    llm = LocalLLM.load(merged, LLMSettings(n_ctx=512, temperature=0.0))
    try:
        assert not llm.is_base_model  # the merged file carries the format it was trained on
        answer = llm.complete(
            llm.chat_prompt([{"role": "user", "content": FACTS[0][0]}]).tokens, max_tokens=16
        )
    finally:
        llm.close()
    assert "teal" in answer.lower(), answer


def test_gemma_from_passages_to_an_installed_chat_model(
    gemma_gguf: Path, gemma_training_base: Path, embedder, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "index.db"
    dataset = tmp_path / "dataset"
    writer = LocalLLM.load(gemma_gguf, LLMSettings(n_ctx=2048, temperature=0.0))
    try:
        with Store.open(db) as store:
            Indexer(store, embedder).index([write_handbook(tmp_path / "handbook")])
            settings = DatasetSettings(
                passages=4, questions_per_passage=1, distractors=0, min_chars=80, test_share=0.25
            )
            report = build_dataset(store, embedder, writer, dataset, settings)
    finally:
        writer.close()
    # The base model's answers are held to one sentence: without that it repeated itself
    # until the token limit on 3 of these 4 passages, and the unclosed JSON was lost.
    assert report.counts["invalid"] == 0 and report.counts["train"] >= 3, report.counts

    ModelRegistry().import_file(gemma_gguf, name="gemma-270m", mode="symlink")
    run = tmp_path / "run"
    # The dequantized copy this module already made: the run reuses it (same file, same hash).
    shutil.copytree(gemma_training_base, run / BASE_HF_DIR)
    result = CliRunner().invoke(
        cli,
        [
            *("finetune", "train", "gemma-270m", str(dataset), "--name", "gemma-ft"),
            *("--out", str(run), "--steps", "1", "--backend", "peft", "--max-seq-len", "512"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "(fine-tuned tensors as Q8_0)" in result.output
    assert "Installed gemma-ft" in result.output
    entry = ModelRegistry().get("gemma-ft")
    assert entry.lineage is not None and entry.lineage["base_sha256"] == GEMMA_SHA256
    assert entry.lineage["changed_tensors"] == "Q8_0"
    assert not (run / BASE_HF_DIR).exists()  # four bytes a weight: removed once installed

    llm = load_llm("gemma-ft", n_ctx=1024, temperature=0.0)
    assert llm is not None
    try:
        assert not llm.is_base_model
        prompt = llm.chat_prompt([{"role": "user", "content": "Where do visitors park?"}])
        assert llm.complete(prompt.tokens, max_tokens=12).strip()
    finally:
        llm.close()
