"""The language-model registry: manifest, import, default, remove, resolve, and pull over HTTP."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from localrag.errors import ModelError
from localrag.models.registry import (
    CATALOG,
    RECOMMENDED,
    ModelEntry,
    ModelRegistry,
    derive_name,
    resolve_model,
    resolve_pull_spec,
)
from tests.helpers.gguf import write_gguf
from tests.helpers.hub_server import CDN, Hub, serve_hub


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def registry(models: Path) -> ModelRegistry:
    return ModelRegistry(models)


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


def _leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.glob(".*")) if models.is_dir() else []


# -- manifest --------------------------------------------------------------------------------------


def test_no_manifest_means_no_models(registry: ModelRegistry) -> None:
    assert registry.entries() == []
    assert registry.default_entry() is None
    assert not registry.dir.exists()  # reading creates nothing


@pytest.mark.parametrize(
    "text",
    ["{not json", "[1, 2]", '{"models": 3}', '{"models": [{"file": "x.gguf"}]}', '{"default": 5}'],
)
def test_corrupt_manifest_is_a_clear_error(registry: ModelRegistry, text: str) -> None:
    registry.dir.mkdir(parents=True)
    registry.manifest_path.write_text(text)
    with pytest.raises(ModelError, match="corrupt") as info:
        registry.entries()
    assert str(registry.manifest_path) in str(info.value)


def test_manifest_round_trip_and_unknown_keys(registry: ModelRegistry, src: Path) -> None:
    entry = registry.import_file(write_gguf(src / "a.gguf"))
    data = json.loads(registry.manifest_path.read_text())
    assert data["default"] == "a"
    data["models"][0]["future_key"] = 1  # written by a newer localrag
    registry.manifest_path.write_text(json.dumps(data))
    assert registry.entries() == [entry]


# -- import ----------------------------------------------------------------------------------------


def test_import_copies_hashes_and_registers(registry: ModelRegistry, src: Path) -> None:
    path = write_gguf(src / "Tiny-Chat.Q4_K_M.gguf", context_length=4096)
    entry = registry.import_file(path)
    assert entry.name == "tiny-chat.q4_k_m"
    dest = registry.path_of(entry)
    assert dest == registry.dir / "tiny-chat.q4_k_m.gguf"
    assert dest.read_bytes() == path.read_bytes()
    assert not dest.is_symlink()
    assert entry.sha256 == _sha(path)
    assert entry.size_bytes == path.stat().st_size
    assert (entry.quantization, entry.architecture) == ("Q4_K_M", "llama")
    assert entry.context_length == 4096
    assert entry.source == f"import:{path}"
    assert (entry.base_model, entry.adapter) == (None, None)
    assert registry.get(entry.name) == entry
    assert registry.default_entry() == entry  # the first model becomes the default
    assert path.exists()  # the original stays
    assert _leftovers(registry.dir) == []  # no temporary files


def test_import_reports_progress(registry: ModelRegistry, src: Path) -> None:
    path = write_gguf(src / "a.gguf")
    seen: list[tuple[int, int | None]] = []
    registry.import_file(path, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)


def test_bad_file_is_refused_before_anything_changes(registry: ModelRegistry, src: Path) -> None:
    bad = src / "notes.gguf"
    bad.write_text("not a model")
    with pytest.raises(ModelError, match="not a GGUF") as info:
        registry.import_file(bad)
    assert str(bad) in str(info.value)
    assert not registry.manifest_path.exists()
    assert not (registry.dir / "notes.gguf").exists()


def test_truncated_file_is_refused(registry: ModelRegistry, src: Path) -> None:
    good = write_gguf(src / "good.gguf")
    cut = src / "cut.gguf"
    cut.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(ModelError, match="truncated"):
        registry.import_file(cut)
    assert registry.entries() == []


def test_explicit_name_is_validated(registry: ModelRegistry, src: Path) -> None:
    path = write_gguf(src / "a.gguf")
    for bad in ("", "Upper", "has space", "../escape", "-dash-first"):
        with pytest.raises(ModelError, match="invalid model name"):
            registry.import_file(path, name=bad)
    assert registry.import_file(path, name="my-model_1.5b").name == "my-model_1.5b"


def test_duplicate_name_is_refused(registry: ModelRegistry, src: Path, tmp_path: Path) -> None:
    registry.import_file(write_gguf(src / "a.gguf", seed=1))
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ModelError, match="already installed"):
        registry.import_file(write_gguf(other / "a.gguf", seed=2))
    assert [e.name for e in registry.entries()] == ["a"]
    assert _sha(registry.dir / "a.gguf") == _sha(src / "a.gguf")  # the first one is untouched


def test_same_file_under_another_name_is_refused(registry: ModelRegistry, src: Path) -> None:
    path = write_gguf(src / "a.gguf")
    registry.import_file(path)
    with pytest.raises(ModelError, match="already installed as 'a'"):
        registry.import_file(path, name="b")
    assert registry.names() == ["a"]
    assert not (registry.dir / "b.gguf").exists()


def test_an_installed_model_is_recognised_and_not_imported_again(
    registry: ModelRegistry, src: Path, tmp_path: Path
) -> None:
    original = write_gguf(src / "a.gguf", seed=1)
    entry = registry.import_file(original)
    placed = registry.path_of(entry)
    assert registry.holds(placed) and not registry.holds(original)
    # The very file, or the same bytes under the name it would get: already installed.
    assert registry.installed_as(placed) == entry
    assert registry.installed_as(original) == entry
    other = tmp_path / "other"
    other.mkdir()
    assert registry.installed_as(write_gguf(other / "a.gguf", seed=2)) is None  # other bytes
    # Importing the installed file itself names the model it is, not a name clash.
    with pytest.raises(ModelError, match="already installed as 'a'"):
        registry.import_file(placed)
    assert registry.entries() == [entry]  # its source still says where it came from


def test_symlink_import(registry: ModelRegistry, src: Path) -> None:
    path = write_gguf(src / "a.gguf")
    entry = registry.import_file(path, mode="symlink")
    dest = registry.path_of(entry)
    assert dest.is_symlink()
    assert dest.resolve() == path.resolve()
    assert entry.sha256 == _sha(path)
    result = registry.remove("a")
    assert result.file_deleted
    assert not dest.is_symlink()
    assert path.exists()  # removing a symlinked model never deletes the original


def test_move_import(registry: ModelRegistry, src: Path) -> None:
    path = write_gguf(src / "a.gguf")
    data = path.read_bytes()
    entry = registry.import_file(path, mode="move", source="finetune")
    assert not path.exists()
    assert registry.path_of(entry).read_bytes() == data
    assert entry.source == "finetune"


@pytest.mark.parametrize("name", [None, "other-name"])
def test_file_already_in_the_folder_is_registered_in_place(
    registry: ModelRegistry, name: str | None
) -> None:
    registry.dir.mkdir(parents=True)
    path = write_gguf(registry.dir / "Placed.gguf")
    entry = registry.import_file(path, name=name)
    assert entry.name == (name or "placed")
    assert entry.file == "Placed.gguf"
    assert sorted(p.name for p in registry.dir.glob("*.gguf")) == ["Placed.gguf"]


def test_failed_move_import_puts_the_file_back(registry: ModelRegistry, src: Path) -> None:
    registry.import_file(write_gguf(src / "a.gguf"))
    again = src / "again.gguf"
    again.write_bytes((src / "a.gguf").read_bytes())
    with pytest.raises(ModelError, match="already installed as 'a'"):
        registry.import_file(again, mode="move")
    assert again.read_bytes() == (src / "a.gguf").read_bytes()
    assert not (registry.dir / "again.gguf").exists()


def test_unregistered_file_in_the_way_is_not_overwritten(
    registry: ModelRegistry, src: Path
) -> None:
    registry.dir.mkdir(parents=True)
    (registry.dir / "a.gguf").write_bytes(b"the user's own file")
    with pytest.raises(ModelError, match="already exists"):
        registry.import_file(write_gguf(src / "a.gguf"))
    assert (registry.dir / "a.gguf").read_bytes() == b"the user's own file"


def test_add_keeps_fine_tune_provenance(registry: ModelRegistry, src: Path) -> None:
    tuned = write_gguf(src / "tuned.gguf")
    entry = ModelEntry(
        name="tuned",
        file=str(tuned),  # registered where it lies
        sha256=_sha(tuned),
        quantization="Q4_K_M",
        context_length=2048,
        architecture="llama",
        size_bytes=tuned.stat().st_size,
        source="finetune",
        added_at="2025-01-01T00:00:00+00:00",
        base_model="qwen2.5-1.5b-instruct",
        adapter="/runs/7/adapter",
    )
    registry.add(entry)
    assert ModelRegistry(registry.dir).get("tuned") == entry
    assert registry.path_of(entry) == tuned
    result = registry.remove("tuned")
    assert not result.file_deleted
    assert tuned.exists()  # a file outside the models folder is the user's


# -- default and remove ----------------------------------------------------------------------------


def _three(registry: ModelRegistry, src: Path) -> None:
    for i, name in enumerate(("a", "b", "c")):
        registry.import_file(write_gguf(src / f"{name}.gguf", seed=i))


def test_default_stays_on_the_first_until_set(registry: ModelRegistry, src: Path) -> None:
    _three(registry, src)
    assert registry.default_name() == "a"
    registry.set_default("b")
    assert ModelRegistry(registry.dir).default_entry().name == "b"  # type: ignore[union-attr]
    with pytest.raises(ModelError, match="installed: a, b, c"):
        registry.set_default("zzz")


def test_remove_deletes_the_file(registry: ModelRegistry, src: Path) -> None:
    _three(registry, src)
    path = registry.path_of(registry.get("b"))
    result = registry.remove("b")
    assert result.file_deleted
    assert not path.exists()
    assert registry.names() == ["a", "c"]
    assert result.new_default == "a"  # not the default: unchanged


def test_remove_keep_file(registry: ModelRegistry, src: Path) -> None:
    _three(registry, src)
    path = registry.path_of(registry.get("c"))
    result = registry.remove("c", delete_file=False)
    assert not result.file_deleted
    assert path.exists()
    assert registry.names() == ["a", "b"]


def test_removing_the_default_moves_it_to_the_newest(registry: ModelRegistry, src: Path) -> None:
    _three(registry, src)
    result = registry.remove("a")
    # Same-second timestamps: the later entry in the manifest counts as newer.
    assert result.new_default == "c"
    assert registry.default_name() == "c"
    registry.remove("c")
    assert registry.default_name() == "b"
    assert registry.remove("b").new_default is None
    assert registry.entries() == []


def test_remove_unknown(registry: ModelRegistry) -> None:
    with pytest.raises(ModelError, match="none is installed"):
        registry.remove("nothing")


# -- resolve_model ---------------------------------------------------------------------------------


def test_resolve_nothing_installed(models: Path) -> None:
    assert resolve_model(None, models) is None
    with pytest.raises(ModelError, match="models pull"):
        resolve_model("qwen", models)


def test_resolve_by_default_name_and_path(registry: ModelRegistry, src: Path) -> None:
    _three(registry, src)
    assert resolve_model(None, registry.dir) == registry.dir / "a.gguf"
    assert resolve_model("b", registry.dir) == registry.dir / "b.gguf"
    loose = write_gguf(src / "loose.gguf", seed=9)
    assert resolve_model(str(loose), registry.dir) == loose
    with pytest.raises(ModelError, match="not found"):
        resolve_model(str(src / "missing.gguf"), registry.dir)
    with pytest.raises(ModelError, match="installed: a, b, c"):
        resolve_model("nope", registry.dir)


def test_resolve_the_only_model_without_a_default(registry: ModelRegistry, src: Path) -> None:
    registry.import_file(write_gguf(src / "solo.gguf"))
    data = json.loads(registry.manifest_path.read_text())
    data["default"] = None
    registry.manifest_path.write_text(json.dumps(data))
    assert resolve_model(None, registry.dir) == registry.dir / "solo.gguf"


def test_resolve_several_without_a_default_asks_to_choose(
    registry: ModelRegistry, src: Path
) -> None:
    _three(registry, src)
    data = json.loads(registry.manifest_path.read_text())
    data["default"] = None
    registry.manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="models default"):
        resolve_model(None, registry.dir)


def test_resolve_registered_but_missing_file(registry: ModelRegistry, src: Path) -> None:
    entry = registry.import_file(write_gguf(src / "a.gguf"))
    registry.path_of(entry).unlink()
    with pytest.raises(ModelError, match="file is missing"):
        resolve_model("a", registry.dir)


def test_resolve_uses_the_configured_models_dir(
    src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(tmp_path / "configured"))
    ModelRegistry().import_file(write_gguf(src / "a.gguf"))
    assert resolve_model(None) == tmp_path / "configured" / "a.gguf"


# -- pull ------------------------------------------------------------------------------------------

REPO = "someone/Tiny-GGUF"
FILE = "tiny-chat-q4_k_m.gguf"
SPEC = f"hf:{REPO}/{FILE}"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    with serve_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        yield hub


@pytest.fixture
def weights(src: Path) -> bytes:
    # Big enough to be cut in the middle of its tensor data.
    return write_gguf(src / "served.gguf", f32_shape=(64, 256)).read_bytes()


def test_pull_downloads_verifies_and_registers(
    hub: Hub, registry: ModelRegistry, weights: bytes
) -> None:
    hub.add(REPO, FILE, weights)
    seen: list[tuple[int, int | None]] = []
    result = registry.pull(SPEC, progress=lambda done, total: seen.append((done, total)))
    sha = hashlib.sha256(weights).hexdigest()
    assert result.path == registry.dir / FILE
    assert result.path.read_bytes() == weights
    assert result.verified_sha256 == sha
    assert result.resumed_from == 0
    assert result.entry.name == "tiny-chat-q4_k_m"
    assert result.entry.sha256 == sha
    assert result.entry.source == SPEC
    assert registry.default_name() == "tiny-chat-q4_k_m"
    assert seen[-1] == (len(weights), len(weights))
    assert not (registry.dir / (FILE + ".part")).exists()
    assert hub.requests == [(f"/{REPO}/resolve/main/{FILE}", None)]


def test_pull_catalog_name_and_the_recommended_default(
    hub: Hub, registry: ModelRegistry, weights: bytes
) -> None:
    model = CATALOG[RECOMMENDED]
    hub.add(model.repo, model.file, weights)
    result = registry.pull()
    assert result.entry.name == RECOMMENDED
    assert result.entry.source == f"hf:{model.repo}/{model.file}"
    assert result.path.name == model.file
    again = registry.pull(RECOMMENDED)
    assert again.already_installed
    assert len(hub.requests) == 1  # nothing downloaded twice


def test_pull_resumes_after_the_connection_drops(
    hub: Hub, registry: ModelRegistry, weights: bytes
) -> None:
    hub.add(REPO, FILE, weights)
    cut = len(weights) // 2 + 3
    hub.cut_after = cut
    with pytest.raises(ModelError, match=f"stopped after {cut} of {len(weights)}") as info:
        registry.pull(SPEC)
    assert "again to resume" in str(info.value)
    part = registry.dir / (FILE + ".part")
    assert part.read_bytes() == weights[:cut]
    assert registry.entries() == []
    assert not (registry.dir / FILE).exists()

    result = registry.pull(SPEC)
    assert hub.requests[-1][1] == f"bytes={cut}-"
    assert result.resumed_from == cut
    assert result.path.read_bytes() == weights
    assert result.verified_sha256 == hashlib.sha256(weights).hexdigest()
    assert not part.exists()


def test_pull_starts_over_when_the_server_ignores_the_range(
    hub: Hub, registry: ModelRegistry, weights: bytes
) -> None:
    hub.add(REPO, FILE, weights)
    hub.cut_after = 1000
    with pytest.raises(ModelError):
        registry.pull(SPEC)
    hub.ignore_range = True
    result = registry.pull(SPEC)
    assert hub.requests[-1][1] == "bytes=1000-"
    assert result.resumed_from == 0
    assert result.path.read_bytes() == weights


def test_pull_hash_mismatch_keeps_nothing(
    hub: Hub, registry: ModelRegistry, weights: bytes
) -> None:
    hub.add(REPO, FILE, weights)
    hub.wrong_sha = True
    with pytest.raises(ModelError, match="sha256") as info:
        registry.pull(SPEC)
    assert "f" * 64 in str(info.value)
    assert registry.entries() == []
    assert not (registry.dir / FILE).exists()
    assert not (registry.dir / (FILE + ".part")).exists()


def test_pull_takes_the_hash_from_the_redirect_not_the_cdn(
    hub: Hub, registry: ModelRegistry, weights: bytes
) -> None:
    hub.add(REPO, FILE, weights)
    hub.redirect = True
    result = registry.pull(SPEC)
    assert [path.startswith(CDN) for path, _ in hub.requests] == [False, True]
    assert result.verified_sha256 == hashlib.sha256(weights).hexdigest()
    assert result.path.read_bytes() == weights


def test_pull_ignores_a_cdn_etag(hub: Hub, registry: ModelRegistry, weights: bytes) -> None:
    """With no hash on the hub's redirect, the CDN's 64-hex ETag is not mistaken for one."""
    hub.add(REPO, FILE, weights)
    hub.redirect = True
    hub.publish_sha = False
    result = registry.pull(SPEC)
    assert result.verified_sha256 is None
    assert result.path.read_bytes() == weights


def test_pull_resume_through_a_redirect(hub: Hub, registry: ModelRegistry, weights: bytes) -> None:
    hub.add(REPO, FILE, weights)
    hub.redirect = True
    hub.cut_after = 777
    with pytest.raises(ModelError):
        registry.pull(SPEC)
    result = registry.pull(SPEC)
    assert hub.requests[-1] == (f"{CDN}{REPO}/{FILE}", "bytes=777-")
    assert result.path.read_bytes() == weights


def test_pull_without_a_published_hash_says_so(
    hub: Hub, registry: ModelRegistry, weights: bytes
) -> None:
    hub.add(REPO, FILE, weights)
    hub.publish_sha = False
    result = registry.pull(SPEC)
    assert result.verified_sha256 is None
    assert result.entry.sha256 == hashlib.sha256(weights).hexdigest()  # recorded all the same


def test_pull_not_found(hub: Hub, registry: ModelRegistry) -> None:
    with pytest.raises(ModelError, match="404") as info:
        registry.pull(SPEC)
    assert FILE in str(info.value)
    assert registry.entries() == []
    assert not (registry.dir / (FILE + ".part")).exists()


def test_pull_of_something_that_is_not_a_model(hub: Hub, registry: ModelRegistry) -> None:
    hub.add(REPO, FILE, b"<html>Please log in</html>")
    with pytest.raises(ModelError, match="not a usable model"):
        registry.pull(SPEC)
    assert registry.entries() == []
    assert list(registry.dir.iterdir()) == []


def test_pull_without_network_suggests_import(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve_hub() as hub:
        url = hub.url
    monkeypatch.setenv("HF_ENDPOINT", url)  # nothing listens there any more
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelError, match="needs network access") as info:
        registry.pull(SPEC)
    assert "models import" in str(info.value)


def test_pull_respects_hf_hub_offline(hub: Hub, registry: ModelRegistry, weights: bytes) -> None:
    hub.add(REPO, FILE, weights)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):
            registry.pull(SPEC)
    assert hub.requests == []


def test_pull_never_replaces_another_models_file(
    hub: Hub, registry: ModelRegistry, weights: bytes, src: Path
) -> None:
    registry.dir.mkdir(parents=True)
    mine = write_gguf(registry.dir / FILE, seed=5)
    registry.import_file(mine, name="mine")
    hub.add(REPO, FILE, weights)
    with pytest.raises(ModelError, match="belongs to the installed model 'mine'"):
        registry.pull(f"hf:{REPO}/{FILE}")
    assert _sha(mine) == registry.get("mine").sha256
    assert hub.requests == []


def test_pull_specs() -> None:
    assert resolve_pull_spec(None).name == RECOMMENDED
    spec = resolve_pull_spec("hf:org/repo/sub/Model-Q8_0.gguf")
    assert (spec.name, spec.repo, spec.file) == ("model-q8_0", "org/repo", "sub/Model-Q8_0.gguf")
    with pytest.raises(ModelError, match=r"hf:OWNER/REPO/FILE\.gguf"):
        resolve_pull_spec("hf:org/repo")
    with pytest.raises(ModelError, match=RECOMMENDED):
        resolve_pull_spec("gpt-17")


def test_derive_name() -> None:
    assert derive_name("Llama-3.2-3B-Instruct-Q4_K_M.gguf") == "llama-3.2-3b-instruct-q4_k_m"
    assert derive_name("my model (final).GGUF") == "my-model-final"
    assert derive_name("___.gguf") == "model"
