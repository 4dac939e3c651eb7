"""Which files get indexed: whole trees, sub-folders and single paths agree on the rules."""

from __future__ import annotations

from pathlib import Path

from localrag.walker import FileEntry, RootFilter, WalkProblem, is_excluded_name


def make_tree(root: Path) -> None:
    files = {
        "a.md": "a",
        "notes/b.md": "b",
        "notes/drafts/c.md": "c",
        "notes/.secret.md": "hidden",
        ".obsidian/config.md": "hidden folder",
        "build/out.txt": "ignored by the root rules",
        "notes/tmp/scratch.txt": "ignored by notes/.gitignore",
        "notes/keep.log": "re-included",
        "notes/other.log": "ignored",
        "photo.jpg": "binary extension",
        "index.db": "the database",
        "index.db-wal": "its WAL",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / ".gitignore").write_text("build/\n*.log\n")
    (root / "notes" / ".localragignore").write_text("tmp/\n!keep.log\n")


def names(items: object, root: Path) -> set[str]:
    return {
        str(Path(i.path).relative_to(root))
        for i in items  # type: ignore[attr-defined]
        if isinstance(i, FileEntry)
    }


EXPECTED = {"a.md", "notes/b.md", "notes/drafts/c.md", "notes/keep.log"}


def test_walk_check_and_subfolder_walk_agree(tmp_path: Path) -> None:
    make_tree(tmp_path)
    rules = RootFilter(tmp_path, exclude_paths=[tmp_path / "index.db"])
    assert names(rules.walk(), tmp_path) == EXPECTED
    # A sub-folder walk inherits the rules of the folders above it.
    assert names(rules.walk(str(tmp_path / "notes")), tmp_path) == EXPECTED - {"a.md"}
    assert names(rules.walk(str(tmp_path / "build")), tmp_path) == set()
    assert names(rules.walk(str(tmp_path / ".obsidian")), tmp_path) == set()
    # Single paths, as the watcher asks about them.
    every_file = [p for p in tmp_path.rglob("*") if p.is_file()]
    checked = {str(p.relative_to(tmp_path)) for p in every_file if rules.check(str(p))}
    assert checked == EXPECTED
    assert rules.check(str(tmp_path / "gone.md")) is None
    assert rules.check(str(tmp_path / "notes")) is None  # a folder is not a file


def test_changed_rule_file_is_read_again_after_forget(tmp_path: Path) -> None:
    make_tree(tmp_path)
    rules = RootFilter(tmp_path)
    assert rules.check(str(tmp_path / "notes" / "b.md"))
    (tmp_path / "notes" / ".localragignore").write_text("b.md\n")
    assert rules.check(str(tmp_path / "notes" / "b.md"))  # cached until told
    rules.forget(str(tmp_path / "notes"))
    assert rules.check(str(tmp_path / "notes" / "b.md")) is None


def test_broken_symlink_is_a_problem_but_a_vanished_file_is_not(tmp_path: Path) -> None:
    (tmp_path / "dangling.md").symlink_to(tmp_path / "missing.md")
    rules = RootFilter(tmp_path)
    problem = rules.check(str(tmp_path / "dangling.md"))
    assert isinstance(problem, WalkProblem) and "broken symlink" in problem.reason
    assert rules.check(str(tmp_path / "never-there.md")) is None


def test_hidden_names_are_excluded_cheaply_but_rule_files_are_not(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert is_excluded_name(f"{root}/.git/index", root)
    assert is_excluded_name(f"{root}/notes/.swp", root)
    assert not is_excluded_name(f"{root}/notes/.gitignore", root)
    assert not is_excluded_name(f"{root}/notes/a.md", root)
