"""`localrag models …` for language models, through click's runner."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from localrag.cli import cli
from localrag.models.registry import ModelRegistry
from tests.helpers.gguf import write_gguf
from tests.helpers.hub_server import Hub, serve_hub


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "models"
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(folder))
    return folder


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["models", *args], input=input, catch_exceptions=False)


def test_list_with_nothing_installed(models: Path) -> None:
    result = run("list")
    assert result.exit_code == 0
    assert "No language models" in result.output
    assert "models pull" in result.output
    assert "No embedders" in result.output


def test_import_list_default_remove(models: Path, src: Path) -> None:
    first = write_gguf(src / "Alpha.gguf", seed=1)
    result = run("import", str(first))
    assert result.exit_code == 0, result.output
    assert "Imported alpha (llama, Q4_K_M" in result.output
    assert hashlib.sha256(first.read_bytes()).hexdigest() in result.output
    assert "alpha is the default model" in result.output

    result = run("import", str(write_gguf(src / "beta.gguf", seed=2)), "--name", "b2", "--symlink")
    assert result.exit_code == 0, result.output
    assert (models / "b2.gguf").is_symlink()

    listed = run("list").output
    assert "alpha" in listed and "b2" in listed and "Q4_K_M" in listed
    data = json.loads(run("list", "--json").output)
    assert data["default"] == "alpha"
    assert [(m["name"], m["default"], m["present"]) for m in data["models"]] == [
        ("alpha", True, True),
        ("b2", False, True),
    ]
    assert data["embedders"] == []

    assert run("default", "b2").exit_code == 0
    assert run("default").output.startswith("b2")

    result = run("remove", "b2", "-y")
    assert result.exit_code == 0
    assert "The default model is now alpha" in result.output
    assert not (models / "b2.gguf").is_symlink()
    assert (src / "beta.gguf").exists()


def test_remove_asks_first(models: Path, src: Path) -> None:
    run("import", str(write_gguf(src / "a.gguf")))
    result = run("remove", "a", input="n\n")
    assert result.exit_code == 1  # aborted
    assert ModelRegistry(models).names() == ["a"]
    result = run("remove", "a", "--keep-file", input="y\n")
    assert result.exit_code == 0
    assert "keeping" in result.output
    assert ModelRegistry(models).names() == []
    assert (models / "a.gguf").exists()


def test_bad_file_is_one_clear_line(models: Path, src: Path) -> None:
    bad = src / "notes.gguf"
    bad.write_text("hello")
    result = CliRunner().invoke(cli, ["models", "import", str(bad)])
    assert result.exit_code == 1
    assert "not a GGUF model file" in result.output
    assert "notes.gguf" in result.output
    assert "Traceback" not in result.output


def test_unknown_names(models: Path) -> None:
    for args in (("default", "nope"), ("remove", "nope", "-y"), ("pull", "gpt-17")):
        result = CliRunner().invoke(cli, ["models", *args])
        assert result.exit_code == 1
        assert "nope" in result.output or "gpt-17" in result.output


def test_pull_catalog_listing(models: Path) -> None:
    result = run("pull", "--list")
    assert "qwen2.5-1.5b-instruct *" in result.output
    assert not models.exists()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    with serve_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield hub


def test_pull(models: Path, src: Path, hub: Hub) -> None:
    data = write_gguf(src / "served.gguf").read_bytes()
    hub.add("Qwen/Qwen2.5-1.5B-Instruct-GGUF", "qwen2.5-1.5b-instruct-q4_k_m.gguf", data)
    result = run("pull")
    assert result.exit_code == 0, result.output
    assert "Downloaded qwen2.5-1.5b-instruct" in result.output
    assert f"sha256 {hashlib.sha256(data).hexdigest()}: matches" in result.output
    assert (models / "qwen2.5-1.5b-instruct-q4_k_m.gguf").read_bytes() == data
    assert "already installed" in run("pull").output


def test_pull_without_published_hash_says_unchecked(models: Path, src: Path, hub: Hub) -> None:
    hub.add("o/r", "m.gguf", write_gguf(src / "served.gguf").read_bytes())
    hub.publish_sha = False
    result = run("pull", "hf:o/r/m.gguf")
    assert result.exit_code == 0, result.output
    assert "not checked" in result.output


def test_list_shows_an_unreadable_embedder_without_failing(models: Path) -> None:
    good = models / "embedders" / "mini"
    broken = models / "embedders" / "broken"
    good.mkdir(parents=True)
    broken.mkdir(parents=True)
    manifest = {"name": "all-MiniLM-L6-v2", "dim": 384, "max_seq_length": 256}
    manifest |= {"pooling": "mean", "onnx_sha256": "0" * 64, "source": "test"}
    (good / "localrag-embedder.json").write_text(json.dumps(manifest))
    (broken / "localrag-embedder.json").write_text("{half a manifest")

    result = run("list")
    assert result.exit_code == 0, result.output
    assert "all-MiniLM-L6-v2" in result.output and "384" in result.output
    assert "broken (unusable)" in result.output and "Cannot read" in result.output
    listed = {e["name"]: e for e in json.loads(run("list", "--json").output)["embedders"]}
    assert listed["mini"]["dim"] == 384 and listed["mini"]["problem"] is None
    assert "Cannot read" in listed["broken"]["problem"]


def test_a_base_model_is_imported_and_listed_as_one(models: Path, gemma_gguf: Path) -> None:
    result = run("import", str(gemma_gguf), "--name", "gemma", "--symlink")
    assert result.exit_code == 0, result.output
    assert "gemma is a pre-trained base model" in result.output
    assert "finetune train" in result.output
    listed = json.loads(run("list", "--json").output)["models"]
    assert [(m["name"], m["chat"], m["architecture"]) for m in listed] == [
        ("gemma", False, "gemma3")
    ]
    assert "base" in run("list").output


def test_reimporting_an_installed_file_says_so_and_keeps_its_source(
    models: Path, src: Path
) -> None:
    original = write_gguf(src / "Alpha.gguf", seed=1)
    assert run("import", str(original)).exit_code == 0
    placed = models / "alpha.gguf"
    for again in (placed, original):  # the file in its place, or where it came from
        result = run("import", str(again))
        assert result.exit_code == 0, result.output
        assert "alpha is already installed" in result.output
        assert "copied" not in result.output
    (entry,) = ModelRegistry().entries()
    assert entry.source == f"import:{original}"  # where it came from, not the models folder
    assert sorted(p.name for p in models.glob("*.gguf")) == ["alpha.gguf"]


def test_a_file_already_in_the_models_folder_is_registered_not_copied(models: Path) -> None:
    models.mkdir()
    placed = write_gguf(models / "Placed.gguf")
    result = run("import", str(placed))
    assert result.exit_code == 0, result.output
    assert "registered where it is" in result.output and "copied" not in result.output
    assert sorted(p.name for p in models.glob("*.gguf")) == ["Placed.gguf"]
