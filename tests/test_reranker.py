"""Cross-encoder reranking: import (ONNX folder or a Hugging Face model exported here), scoring
that matches the model, and search results in the reranker's order.

The model is tests/helpers/reranker.py's random-weight BERT classifier (conftest's
`cross_encoder_source` and `installed_reranker`): its scores, whatever they mean, are checked
against torch's for the same pairs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from localrag.cli import cli
from localrag.config import IndexSettings
from localrag.errors import EmbedderError
from localrag.evaluate import Question, ablate_retrieval
from localrag.indexer import Indexer
from localrag.models.reranker_import import import_reranker
from localrag.reranker import MANIFEST_FILE, ONNX_FILE, CrossEncoder, load_reranker, relevance
from localrag.retrieval import RERANK_CANDIDATES, Retriever, Stages
from localrag.store import Store
from tests.helpers.reranker import TOKENIZER_FILES

pytest.importorskip("torch")
pytest.importorskip("transformers")

PAIRS = [
    ("how long is parental leave?", "New parents may take up to twenty weeks away from work."),
    ("how long is parental leave?", "Descale the espresso machine every Friday afternoon."),
    ("how long is parental leave?", "Passwords must be at least fourteen characters long."),
]
NOTES = {
    f"notes/note-{i:02d}.md": f"# Note {i}\n\nItem {i}: {topic} is kept on shelf {i} of the "
    f"{room} and is checked every {period}."
    for i, (topic, room, period) in enumerate(
        (t, r, p)
        for t in ("the printer paper", "the first-aid kit", "the spare keys", "the fire blanket")
        for r in ("store room", "office")
        for p in ("week", "month")
    )
}


def torch_scores(source: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(source)).eval()
    batch = tokenizer(
        [q for q, _ in pairs], [p for _, p in pairs], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**batch).logits[:, 0].numpy()


def test_an_exported_cross_encoder_scores_pairs_as_the_model_does(
    cross_encoder_source: Path, installed_reranker: Path
) -> None:
    manifest = json.loads((installed_reranker / MANIFEST_FILE).read_text())
    assert manifest["name"] == "tiny-ce" and manifest["exported"] is True
    assert manifest["max_seq_length"] == 256  # the tokenizer's limit, under 512 positions
    scores = CrossEncoder(installed_reranker).score(PAIRS[0][0], [p for _, p in PAIRS])
    expected = torch_scores(cross_encoder_source, PAIRS)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert len(set(np.round(scores, 5))) == len(PAIRS)  # distinct: the order means something


def test_an_onnx_folder_as_the_hub_carries_it_is_installed_as_it_is(
    installed_reranker: Path, tmp_path: Path
) -> None:
    source = tmp_path / "ms-marco-like"
    (source / "onnx").mkdir(parents=True)
    shutil.copyfile(installed_reranker / ONNX_FILE, source / "onnx" / ONNX_FILE)
    for name in TOKENIZER_FILES:
        shutil.copyfile(installed_reranker / name, source / name)
    installed = import_reranker(source, tmp_path / "rerankers")
    manifest = json.loads((installed / MANIFEST_FILE).read_text())
    assert installed.name == "ms-marco-like" and manifest["exported"] is False
    assert (installed / ONNX_FILE).read_bytes() == (installed_reranker / ONNX_FILE).read_bytes()


def test_a_folder_without_a_model_or_tokenizer_is_refused_and_nothing_is_left(
    installed_reranker: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "rerankers"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EmbedderError, match=r"no tokenizer\.json"):
        import_reranker(empty, dest)
    shutil.copyfile(installed_reranker / "tokenizer.json", empty / "tokenizer.json")
    with pytest.raises(EmbedderError, match="holds no cross-encoder"):
        import_reranker(empty, dest)
    assert not dest.exists() or not any(dest.iterdir())


def test_a_damaged_model_file_is_refused(installed_reranker: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(installed_reranker, tmp_path / "copy")
    (copy / ".localrag-verified.json").unlink(missing_ok=True)
    with open(copy / ONNX_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(EmbedderError, match="damaged or was replaced"):
        CrossEncoder(copy)


def test_an_unknown_reranker_name_says_how_to_import_one(models_env: Path) -> None:
    with pytest.raises(EmbedderError, match="localrag models import-reranker FOLDER"):
        load_reranker("no-such-reranker")


def test_two_class_outputs_score_the_relevant_class() -> None:
    logits = np.array([[2.0, -1.0], [0.0, 3.0]], dtype=np.float32)
    np.testing.assert_allclose(relevance(logits), [-3.0, 3.0])
    with pytest.raises(EmbedderError, match="cross-encoder"):
        relevance(np.zeros((2, 5), dtype=np.float32))


@pytest.fixture
def notes_index(tmp_path: Path, embedder: Any) -> Path:
    root = tmp_path / "docs"
    for rel, text in NOTES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder, IndexSettings()).index([root])
    return db


def test_search_returns_the_best_passages_in_the_rerankers_order(
    notes_index: Path, embedder: Any, installed_reranker: Path
) -> None:
    reranker = CrossEncoder(installed_reranker)
    query = "where are the spare keys kept"
    with Store.open(notes_index, read_only=True) as store:
        plain = Retriever(store, embedder, Stages(neighbour_runs=False)).search(query, k=8)
        reranked = Retriever(store, embedder, Stages(neighbour_runs=False), reranker).search(
            query, k=8
        )
        candidates = Retriever(store, embedder, Stages(neighbour_runs=False)).search(
            query, k=RERANK_CANDIDATES
        )
    assert len(candidates) == len(NOTES) <= RERANK_CANDIDATES  # every note is a candidate
    texts = [f"{r.chunk.heading}\n\n{r.chunk.text}" for r in candidates]
    scores = reranker.score(query, texts)
    by_reranker = [candidates[i].chunk.chunk_id for i in np.argsort(-scores, kind="stable")]
    assert [r.chunk.chunk_id for r in reranked] == by_reranker[:8]
    assert [r.chunk.chunk_id for r in reranked] != [r.chunk.chunk_id for r in plain]
    assert [r.score for r in reranked] == sorted((r.score for r in reranked), reverse=True)


def test_ablation_shows_the_search_without_the_reranker(
    notes_index: Path, embedder: Any, installed_reranker: Path
) -> None:
    questions = [Question("where are the spare keys kept", "note-09.md", "spare keys")]
    with Store.open(notes_index, read_only=True) as store:
        plain = [row.label for row in ablate_retrieval(store, embedder, questions)]
        with_reranker = ablate_retrieval(
            store, embedder, questions, CrossEncoder(installed_reranker)
        )
    assert "without the reranker" not in plain
    assert [row.label for row in with_reranker] == [
        plain[0],
        "without the reranker",
        *plain[1:],
    ]


def test_the_command_line_imports_a_reranker_and_searches_with_it(
    notes_index: Path, models_env: Path, cross_encoder_source: Path
) -> None:
    runner = CliRunner()
    imported = runner.invoke(
        cli, ["models", "import-reranker", str(cross_encoder_source), "--name", "tiny-ce"]
    )
    assert imported.exit_code == 0, imported.output
    assert (models_env / "rerankers" / "tiny-ce" / MANIFEST_FILE).is_file()
    args = ["search", "where are the spare keys kept", "--db", str(notes_index), "--json"]
    plain = runner.invoke(cli, args)
    reranked = runner.invoke(cli, [*args, "--reranker", "tiny-ce"])
    assert plain.exit_code == 0 and reranked.exit_code == 0, reranked.output
    assert json.loads(plain.output) != json.loads(reranked.output)
    missing = runner.invoke(cli, [*args, "--reranker", "nope"])
    assert missing.exit_code != 0 and "import-reranker" in missing.output
    # `ask` retrieves through the same reranker: its sources come in the reranked order.
    asked = runner.invoke(
        cli,
        ["ask", args[1], "--db", str(notes_index), "--no-model", "--json", "--reranker", "tiny-ce"],
    )
    assert asked.exit_code == 0, asked.output
    sources = [s["path"] for s in json.loads(asked.output)["sources"]]
    every = ["-k", str(len(NOTES))]
    by_reranker = [
        r["path"]
        for r in json.loads(runner.invoke(cli, [*args, *every, "--reranker", "tiny-ce"]).output)
    ]
    by_fusion = [r["path"] for r in json.loads(runner.invoke(cli, [*args, *every]).output)]
    assert len(sources) >= 2
    assert sources == sorted(sources, key=by_reranker.index)
    assert sources != sorted(sources, key=by_fusion.index)


@pytest.fixture
def configured(
    models_env: Path, installed_reranker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A reranker installed under models/rerankers and named in config.toml's [answer]."""
    name = "ce-from-config"
    shutil.copytree(installed_reranker, models_env / "rerankers" / name, dirs_exist_ok=True)
    settings = tmp_path / "config.toml"
    settings.write_text(f'[answer]\nreranker = "{name}"\n')
    monkeypatch.setenv("LOCALRAG_CONFIG", str(settings))
    return name


def ranked_notes(db: Path, embedder: Any, reranker: Path | None, query: str) -> list[str]:
    """Every note's file name, best first (one passage a note)."""
    with Store.open(db, read_only=True) as store:
        found = Retriever(
            store, embedder, reranker=CrossEncoder(reranker) if reranker else None
        ).search(query, k=len(NOTES))
    return [Path(r.path).name for r in found]


def test_a_reranker_named_in_the_settings_serves_every_search(
    notes_index: Path, embedder: Any, installed_reranker: Path, configured: str
) -> None:
    """config.toml's `[answer] reranker` reorders `search`, the TUI's questions and the MCP
    tools alike; `--reranker none` turns it off for one command."""
    from localrag.assistant import Assistant
    from localrag.mcp_server import IndexTools

    query = "where are the spare keys kept"
    by_reranker = ranked_notes(notes_index, embedder, installed_reranker, query)
    by_fusion = ranked_notes(notes_index, embedder, None, query)
    assert by_reranker != by_fusion

    runner = CliRunner()
    args = ["search", query, "--db", str(notes_index), "--json", "-k", str(len(NOTES))]
    searched = runner.invoke(cli, args)
    assert searched.exit_code == 0, searched.output
    assert [Path(r["path"]).name for r in json.loads(searched.output)] == by_reranker
    off = runner.invoke(cli, [*args, "--reranker", "none"])
    assert [Path(r["path"]).name for r in json.loads(off.output)] == by_fusion

    assistant = Assistant(notes_index, embedder=embedder)
    assistant.open()
    try:
        assert assistant.reranker is not None
        answer = assistant.ask(query, None, search_only=True)
        sources = [Path(s.path).name for s in answer.sources]
    finally:
        assistant.close()
    assert len(sources) >= 2
    assert sources == sorted(sources, key=by_reranker.index)
    assert sources != sorted(sources, key=by_fusion.index)

    tools = IndexTools(notes_index, embedder, use_model=False)
    try:
        hits = tools.search(query, k=len(NOTES))["results"]
        assert [Path(h["path"]).name for h in hits] == by_reranker
        assert tools.status()["reranker"] == "tiny-ce"  # the name it was imported under
    finally:
        tools.close()


def test_a_missing_reranker_in_the_settings_names_the_setting_and_the_import(
    notes_index: Path, embedder: Any, configured: str, models_env: Path
) -> None:
    from localrag.assistant import Assistant

    shutil.rmtree(models_env / "rerankers" / configured)
    assistant = Assistant(notes_index, embedder=embedder)
    with pytest.raises(EmbedderError, match=r"config.toml \[answer\] reranker.*import-reranker"):
        assistant.open()
    assistant.close()
    failed = CliRunner().invoke(cli, ["search", "spare keys", "--db", str(notes_index)])
    assert failed.exit_code != 0 and "[answer] reranker" in failed.output
