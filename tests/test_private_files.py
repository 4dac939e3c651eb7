"""Owner-only files and folders: made private from the first byte, whatever the umask, and
older world-readable ones tightened only when they are ours."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from localrag.private_files import (
    PRIVATE_DIR_MODE,
    PRIVATE_FILE_MODE,
    create_private_file,
    make_private_dir,
    tighten,
    write_private_text,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o077, 0o777], ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Permissive, usual, strict and absurd umasks: none may change what localrag creates."""
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_private_modes_are_owner_only() -> None:
    assert (PRIVATE_DIR_MODE, PRIVATE_FILE_MODE) == (0o700, 0o600)


def test_make_private_dir_creates_every_missing_parent_owner_only(
    tmp_path: Path, umask: int
) -> None:
    folder = tmp_path / "data" / "localrag" / "models"
    make_private_dir(folder)
    for path in (tmp_path / "data", tmp_path / "data" / "localrag", folder):
        assert path.is_dir() and _mode(path) == 0o700, path


def test_make_private_dir_leaves_existing_folders_as_they_are(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    make_private_dir(shared / "mine")
    make_private_dir(shared)  # already there: not touched
    assert _mode(shared) == 0o755
    assert _mode(shared / "mine") == 0o700


def test_create_private_file_makes_an_empty_owner_only_file(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "index.db"
    create_private_file(path)
    assert path.read_bytes() == b""
    assert _mode(path) == 0o600


def test_create_private_file_leaves_an_existing_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "index.db"
    path.write_bytes(b"SQLite format 3\x00 and more")
    path.chmod(0o640)
    create_private_file(path)
    assert path.read_bytes() == b"SQLite format 3\x00 and more"
    assert _mode(path) == 0o640


def test_write_private_text_writes_utf8_owner_only(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "manifest.json"
    write_private_text(path, '{"name": "Qwen ☃ naïve"}\n')
    assert path.read_bytes() == '{"name": "Qwen ☃ naïve"}\n'.encode()
    assert _mode(path) == 0o600


def test_write_private_text_replaces_a_world_readable_file_with_a_private_one(
    tmp_path: Path,
) -> None:
    old_umask = os.umask(0)
    try:
        path = tmp_path / "manifest.json"
        path.write_text("old")
        path.chmod(0o644)
        write_private_text(path, "new")
    finally:
        os.umask(old_umask)
    assert path.read_text() == "new"
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary left


def test_write_private_text_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    """A reader holding the old file sees the old text whole, never a half-written one."""
    path = tmp_path / "manifest.json"
    path.write_text("old text")
    with open(path, encoding="utf-8") as reader:
        write_private_text(path, "new text")
        assert reader.read() == "old text"
    assert path.read_text() == "new text"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("old text")
    with pytest.raises(UnicodeEncodeError):
        write_private_text(path, "a lone surrogate \ud800 cannot be UTF-8")
    assert path.read_text() == "old text"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_write_private_text_into_a_missing_folder_fails_and_creates_nothing(
    tmp_path: Path,
) -> None:
    with pytest.raises(FileNotFoundError):
        write_private_text(tmp_path / "missing" / "manifest.json", "text")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "before", "wanted"),
    [
        ("file", 0o644, 0o600),
        ("file", 0o666, 0o600),
        ("file", 0o640, 0o600),
        ("folder", 0o755, 0o700),
        ("folder", 0o775, 0o700),
    ],
)
def test_tighten_takes_group_and_other_permissions_away(
    tmp_path: Path, kind: str, before: int, wanted: int
) -> None:
    path = tmp_path / "item"
    if kind == "folder":
        path.mkdir()
    else:
        path.write_text("x")
    path.chmod(before)
    tighten(path, wanted)
    assert _mode(path) == wanted


@pytest.mark.parametrize("before", [0o600, 0o400, 0o700])
def test_tighten_leaves_an_owner_only_file_as_it_is(tmp_path: Path, before: int) -> None:
    path = tmp_path / "item"
    path.write_text("x")
    path.chmod(before)
    tighten(path, PRIVATE_FILE_MODE)
    assert _mode(path) == before


def test_tighten_ignores_a_missing_path(tmp_path: Path) -> None:
    tighten(tmp_path / "never-made.db", PRIVATE_FILE_MODE)
    assert not (tmp_path / "never-made.db").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_tighten_leaves_another_users_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    path.write_text("x")
    path.chmod(0o644)
    os.chown(path, 54321, 54321)
    tighten(path, PRIVATE_FILE_MODE)
    assert _mode(path) == 0o644
