"""How paths are shown and which indexed folder holds them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from localrag.paths import from_here, from_root, is_within, printable


@dataclass
class _Root:
    path: str


def test_is_within_is_by_whole_folder_names() -> None:
    assert is_within("/data/docs/a.txt", "/data/docs")
    assert is_within("/data/docs", "/data/docs")
    assert is_within("/data/docs/a.txt", "/data/docs/")
    assert not is_within("/data/docs-old/a.txt", "/data/docs")  # a prefix is not a parent
    assert not is_within("/data", "/data/docs")


def test_from_root_shows_the_folder_name_of_the_root_that_holds_the_file() -> None:
    roots = [_Root("/home/ann/notes"), _Root("/srv/contracts/")]
    assert from_root("/home/ann/notes/todo/list.md", roots) == "notes/todo/list.md"
    assert from_root("/srv/contracts/2024/lease.pdf", roots) == "contracts/2024/lease.pdf"
    assert from_root("/elsewhere/x.txt", roots) == "/elsewhere/x.txt"


def test_undecodable_names_are_shown_escaped_everywhere() -> None:
    name = os.fsdecode(b"/docs/caf\xe9.txt")
    assert printable(name) == "/docs/caf\\xe9.txt"
    assert from_root(name, [_Root("/docs")]) == "docs/caf\\xe9.txt"
    printable(name).encode("utf-8")  # printable output is always valid text


def test_from_here_is_relative_inside_the_working_folder_and_uses_tilde_for_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    work = home / "work"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert from_here(str(work / "sub" / "a.txt")) == os.path.join("sub", "a.txt")
    assert from_here(str(home / "other" / "b.txt")) == os.path.join("~", "other", "b.txt")
    assert from_here("/opt/c.txt") == "/opt/c.txt"
