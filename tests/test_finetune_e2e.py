"""The whole fine-tuning loop on CPU: dataset from a real index → LoRA → merge → GGUF → quantize
→ installed with its lineage → generates → `eval answers` compares the four modes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from localrag.cli import cli
from localrag.finetune.dataset import DatasetSettings, build_dataset, sample_passages
from localrag.indexer import Indexer
from localrag.llm import LLMSettings, LocalLLM, load_llm
from localrag.models.registry import ModelRegistry
from localrag.store import Store
from tests.helpers.handbook import write_handbook
from tests.helpers.llm import ScriptedLLM


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models train far faster on one thread of a busy 2-core machine."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _first_sentence(text: str) -> str:
    body = text.split("\n\n", 1)[-1]
    return body.split(". ")[0].strip()


def test_fine_tuning_loop_end_to_end(
    tmp_path: Path, embedder, models_root: Path, tiny_llm_dir: Path, tiny_gguf
) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([write_handbook(tmp_path / "handbook")])
    settings = DatasetSettings(
        passages=5, questions_per_passage=1, distractors=1, min_chars=50, test_share=0.2
    )
    dataset = tmp_path / "dataset"
    with Store.open(db) as store:
        # The model's questions are forced (random weights write nothing useful): one per
        # sampled passage, quoting its first sentence verbatim.
        script = []
        for i, passage in enumerate(sample_passages(store, settings)):
            quote = _first_sentence(passage.text)
            pair = {"question": f"What does section {i} say?", "quote": quote, "answer": quote}
            script.append(json.dumps([pair]))
        writer = ScriptedLLM(
            LocalLLM.load(tiny_gguf["q4_k_m"], LLMSettings(n_ctx=2048, temperature=0.0)),
            *script,
        )
        try:
            report = build_dataset(store, embedder, writer, dataset, settings)
        finally:
            writer.close()
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert report.counts["train"] >= 3 and report.counts["test"] >= 1

    embedder_dir = str(models_root / "embedders" / "all-MiniLM-L6-v2")
    run = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            *("finetune", "train", str(tiny_llm_dir), str(dataset), "--name", "tiny-ft"),
            *("--out", str(run), "--steps", "3", "--backend", "peft", "--threads", "1"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "Training with peft on cpu" in result.output
    assert "Installed tiny-ft (Q4_K_M" in result.output
    training = json.loads(next(run.rglob("training.json")).read_text())
    assert training["settings"]["threads"] == 1

    registry = ModelRegistry()
    entry = registry.get("tiny-ft")
    assert entry.source == "finetune" and entry.quantization == "Q4_K_M"
    assert entry.lineage is not None
    assert entry.lineage["dataset_sha256"] == manifest["dataset_sha256"]
    assert entry.base_model == str(tiny_llm_dir.resolve())
    assert Path(entry.adapter or "").is_dir()
    llm = load_llm("tiny-ft", n_ctx=512, max_tokens=4, temperature=0.0)
    assert llm is not None
    try:
        prompt = llm.chat_prompt([{"role": "user", "content": "Where do visitors park?"}])
        assert llm.complete(prompt.tokens, max_tokens=4) is not None
    finally:
        llm.close()

    registry.import_file(tiny_gguf["q4_k_m"], name="tiny-base")
    chart = tmp_path / "chart.svg"
    result = CliRunner().invoke(
        cli,
        [
            *("eval", "answers", str(dataset / "test.jsonl"), "--db", str(db)),
            *("--embedder", embedder_dir, "--base", "tiny-base", "--finetuned", "tiny-ft"),
            *("--max-tokens", "8", "--chart", str(chart), "--json"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report_json = json.loads(result.stdout)
    modes = [row["mode"] for row in report_json["modes"]]
    assert modes == ["base", "base + RAG", "fine-tuned", "fine-tuned + RAG"]
    assert report_json["questions"] == report.counts["test"]
    for row in report_json["modes"]:
        assert len(row["answers"]) == report.counts["test"]
    assert chart.read_text().startswith("<svg")
