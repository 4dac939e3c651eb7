"""The int8 embedder: made from the real MiniLM, checked against it, a model of its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from localrag.chunking import chunk_document
from localrag.cli import cli
from localrag.embedder import MANIFEST_FILE, TOKENIZER_FILES, load_embedder
from localrag.errors import EmbedderError, ModelMismatchError
from localrag.hashing import sha256_file
from localrag.indexer import Indexer
from localrag.models.embedder_quantize import (
    MIN_COSINE,
    quantize_embedder,
    write_int8_onnx,
)
from localrag.parsers import parse_file
from localrag.retrieval import Retriever
from localrag.store import Store
from tests.helpers.corpus import write_tree
from tests.helpers.embedder import link_model_copy

REPO = Path(__file__).resolve().parent.parent


def _float_dir(root: Path) -> Path:
    return root / "embedders" / "all-MiniLM-L6-v2"


def _int8_dir(root: Path) -> Path:
    return root / "embedders" / "all-MiniLM-L6-v2-int8"


def _manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST_FILE).read_text())


def _real_passages(embedder, limit: int = 120) -> list[str]:  # type: ignore[no-untyped-def]
    """Passages of this project's own documentation, cut as indexing cuts them."""
    texts: list[str] = []
    for name in ("README.md", "docs/ARCHITECTURE.md"):
        path = REPO / name
        parsed = parse_file(path, path.read_bytes())
        texts += [c.embed_text for c in chunk_document(parsed, embedder, embedder.max_tokens, 0)]
    step = max(1, len(texts) // limit)
    return texts[::step][:limit]


def test_int8_export_installs_a_complete_model_of_its_own(int8_models_root: Path) -> None:
    float_dir, int8_dir = _float_dir(int8_models_root), _int8_dir(int8_models_root)
    manifest, float_manifest = _manifest(int8_dir), _manifest(float_dir)
    assert manifest["name"] == "sentence-transformers/all-MiniLM-L6-v2-int8"
    assert manifest["onnx_sha256"] == sha256_file(int8_dir / "model.onnx")
    assert manifest["onnx_sha256"] != float_manifest["onnx_sha256"]
    assert manifest["quantized_from"] == {
        "name": float_manifest["name"],
        "onnx_sha256": float_manifest["onnx_sha256"],
        "folder": "all-MiniLM-L6-v2",
    }
    assert manifest["quantization"]["weights"].startswith("int8")
    # The first half of the feed-forward down-projections stays float32 (see _keep_float).
    assert manifest["quantization"]["kept_float"] == [
        f"/model/encoder/layer.{i}/output/dense/MatMul" for i in range(3)
    ]
    assert manifest["int8_check"]["min_cosine"] >= MIN_COSINE
    for key in ("dim", "max_seq_length", "pooling", "normalize"):
        assert manifest[key] == float_manifest[key]
    for filename in TOKENIZER_FILES:  # the same tokenizer: the same passages
        if (float_dir / filename).is_file():
            assert (int8_dir / filename).read_bytes() == (float_dir / filename).read_bytes()
    # int8 weights: the file is about two thirds the size (embeddings stay float32).
    assert (int8_dir / "model.onnx").stat().st_size < 0.8 * (
        float_dir / "model.onnx"
    ).stat().st_size
    hidden = [p.name for p in (int8_models_root / "embedders").iterdir() if p.name.startswith(".")]
    assert hidden == []  # no staging folder left behind


def test_int8_vectors_stay_close_to_float32_on_real_text(embedder, int8_embedder) -> None:  # type: ignore[no-untyped-def]
    passages = _real_passages(embedder)
    assert len(passages) >= 100
    queries = ["how does vector search find its candidates?", "re-embed an index", "kill -9"]
    for texts in (passages, queries):
        cosines = np.sum(int8_embedder.embed_passages(texts) * embedder.embed_passages(texts), 1)
        assert cosines.min() >= MIN_COSINE, texts[int(np.argmin(cosines))]
    query = queries[0]
    assert float(int8_embedder.embed_query(query) @ embedder.embed_query(query)) >= MIN_COSINE


def test_int8_identity_differs_but_it_cuts_the_same_passages(embedder, int8_embedder) -> None:  # type: ignore[no-untyped-def]
    assert int8_embedder.identity.fingerprint != embedder.identity.fingerprint
    assert int8_embedder.identity.name != embedder.identity.name
    assert int8_embedder.identity.dim == embedder.identity.dim
    assert int8_embedder.max_tokens == embedder.max_tokens
    text = "Tomatoes need at least six hours of direct sun every day."
    assert int8_embedder.count_tokens(text) == embedder.count_tokens(text)


def test_the_same_float_model_always_gives_the_same_int8_file(
    int8_models_root: Path, tmp_path: Path
) -> None:
    """Two users quantizing one model get one fingerprint."""
    again = tmp_path / "model.onnx"
    write_int8_onnx(_float_dir(int8_models_root) / "model.onnx", again)
    assert sha256_file(again) == _manifest(_int8_dir(int8_models_root))["onnx_sha256"]


def test_a_failed_check_installs_nothing_and_keeps_what_was_there(
    int8_models_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "embedders"
    float_dir = link_model_copy(_float_dir(int8_models_root), root / "all-MiniLM-L6-v2")
    with pytest.raises(EmbedderError, match="Nothing was installed"):
        quantize_embedder(float_dir, root, min_cosine=1.01)  # a bar no int8 model clears
    assert sorted(p.name for p in root.iterdir()) == ["all-MiniLM-L6-v2"]

    earlier = quantize_embedder(float_dir, root, name="mini8")
    before = sha256_file(earlier.path / MANIFEST_FILE)
    with pytest.raises(EmbedderError):
        quantize_embedder(float_dir, root, name="mini8", min_cosine=1.01)
    assert sha256_file(earlier.path / MANIFEST_FILE) == before
    assert load_embedder(earlier.path).identity.name == "mini8"
    assert not [p for p in root.iterdir() if p.name.startswith(".")]


def test_an_int8_model_is_not_quantized_again(int8_models_root: Path, tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="already a quantized model"):
        quantize_embedder(_int8_dir(int8_models_root), tmp_path / "embedders")


def test_an_index_built_with_float32_refuses_the_int8_model(
    tmp_path: Path, embedder, int8_embedder
) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    write_tree(docs)
    with Store.open(tmp_path / "index.db") as store:
        Indexer(store, embedder).index([docs])
        with pytest.raises(ModelMismatchError) as refused:
            Indexer(store, int8_embedder)  # no int8 vectors beside float32 ones
        assert "--reembed --embedder all-MiniLM-L6-v2-int8" in str(refused.value)
        with pytest.raises(ModelMismatchError):
            Retriever(store, int8_embedder)  # nor int8 queries against float32 vectors
        assert store.model_identity()["fingerprint"] == embedder.identity.fingerprint


def test_quantize_embedder_command(
    int8_models_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    link_model_copy(_float_dir(int8_models_root), models / "embedders" / "all-MiniLM-L6-v2")
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(models))
    result = CliRunner().invoke(cli, ["models", "quantize-embedder"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Use it with --embedder all-MiniLM-L6-v2-int8." in result.output
    assert (
        _manifest(_int8_dir(models))["onnx_sha256"]
        == _manifest(_int8_dir(int8_models_root))["onnx_sha256"]
    )
    listed = json.loads(
        CliRunner().invoke(cli, ["models", "list", "--json"], catch_exceptions=False).output
    )
    names = {e["name"]: e for e in listed["embedders"]}
    assert names["all-MiniLM-L6-v2-int8"]["source"] == (
        "int8 of sentence-transformers/all-MiniLM-L6-v2"
    )
    result = CliRunner().invoke(cli, ["models", "quantize-embedder", "no-such-model"])
    assert result.exit_code == 1 and "not installed" in result.output
