"""Find the files under a root that should be indexed, honouring ignore rules.

Skipped without being read: hidden files and folders, anything matched by a `.gitignore` or
`.localragignore` (at any level, git semantics), extra patterns from the settings, well-known
binary extensions, and the index database itself with its WAL and journal files.
Symlinks are followed once; loops and dangling links are reported, never fatal.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec

IGNORE_FILES = (".gitignore", ".localragignore")

# Extensions that are never text worth indexing; content sniffing catches the rest.
BINARY_EXTENSIONS = frozenset(
    (
        "png jpg jpeg gif bmp tif tiff webp ico icns heic psd svgz raw cr2 nef mp3 wav flac "
        "ogg m4a aac opus mp4 mkv mov avi webm wmv flv zip gz tgz bz2 xz zst 7z rar tar jar "
        "war whl egg deb rpm dmg iso apk msi exe dll so dylib a o obj lib class pyc pyo pyd "
        "wasm bin dat ttf otf woff woff2 eot sqlite sqlite3 db db-wal db-shm db-journal mdb "
        "accdb parquet feather arrow npy npz pkl pickle onnx gguf safetensors pt pth ckpt h5 "
        "hdf5 tflite xls xlsx ppt pptx odt ods odp pages numbers key epub mobi"
    ).split()
)


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class WalkProblem:
    """Something under the root that could not be looked at, with a reason for the user."""

    path: str
    reason: str


@dataclass
class _Rules:
    base: str  # folder the patterns are relative to
    spec: pathspec.GitIgnoreSpec


def _load_rules(folder: str) -> list[_Rules]:
    rules = []
    for name in IGNORE_FILES:
        try:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as fh:
                lines = fh.read().splitlines()
        except OSError:
            continue
        if lines:
            rules.append(_Rules(folder, pathspec.GitIgnoreSpec.from_lines(lines)))
    return rules


def _ignored(path: str, is_dir: bool, rules: list[_Rules]) -> bool:
    """Git semantics: the deepest rule file with a verdict wins; `!` re-includes."""
    verdict: bool | None = None
    for rule in rules:
        rel = os.path.relpath(path, rule.base).replace(os.sep, "/")
        if is_dir:
            rel += "/"
        result = rule.spec.check_file(rel)
        if result.include is not None:
            verdict = result.include
    return bool(verdict)


class RootFilter:
    """Which files under one root get indexed: the whole tree, a sub-folder, or one path.
    A root may also be a single file: then that file is all there is.

    Rule files are read once per folder and kept, so checking single paths (what the watcher
    does for every event) costs a `stat`; call `forget` when a rule file changes.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        exclude_paths: Iterable[Path | str] = (),
        extra_ignore: Iterable[str] = (),
    ) -> None:
        self.root = os.path.abspath(root)
        self._excluded = {name for p in exclude_paths for name in database_files(p)}
        extra = list(extra_ignore)
        self._base = [_Rules(self.root, pathspec.GitIgnoreSpec.from_lines(extra))] if extra else []
        self._own_rules: dict[str, list[_Rules]] = {}

    def forget(self, folder: str) -> None:
        """A rule file in `folder` changed: read it again next time."""
        self._own_rules.pop(os.path.abspath(folder), None)

    def walk(self, folder: str | None = None) -> Iterator[FileEntry | WalkProblem]:
        """Yield the indexable files under `folder` (default: the whole root)."""
        start = self.root if folder is None else os.path.abspath(folder)
        if start == self.root and not os.path.isdir(start):
            only = self._root_file()  # a root that is one file (`localrag index FILE`)
            if only is not None:
                yield only
            return
        context = self._context(start)
        if context is None:
            return
        rules, ancestors = context
        # (folder, rules in force above it, real paths of the folders above: to notice loops)
        stack: list[tuple[str, list[_Rules], frozenset[str]]] = [(start, rules, ancestors)]
        while stack:
            current, inherited, above = stack.pop()
            real = os.path.realpath(current)
            if real in above:
                yield WalkProblem(current, "symlink loop (folder links to one of its parents)")
                continue
            above = above | {real}
            rules = inherited + self._rules_of(current)
            try:
                with os.scandir(current) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except PermissionError:
                yield WalkProblem(current, "permission denied (folder)")
                continue
            except FileNotFoundError:
                continue  # removed while we looked; its own event (or the next scan) says so
            except OSError as exc:
                yield WalkProblem(current, _os_reason(exc, "folder"))
                continue
            subfolders = []
            for entry in entries:
                found = self._judge(entry.path, entry.name, rules, entry.is_symlink(), entry.stat)
                if isinstance(found, str):  # "folder"
                    subfolders.append(entry.path)
                elif found is not None:
                    yield found
            # Reversed so folders are visited in name order (the stack is LIFO).
            stack.extend((sub, rules, above) for sub in reversed(subfolders))

    def check(self, path: str) -> FileEntry | WalkProblem | None:
        """The entry for one file, or None when it is gone, a folder, or not to be indexed."""
        path = os.path.abspath(path)
        if path == self.root:
            return None if os.path.isdir(path) else self._root_file()
        parent, name = os.path.split(path)
        context = self._context(parent)
        if context is None:
            return None
        rules = context[0] + self._rules_of(parent)
        found = self._judge(path, name, rules, os.path.islink(path), lambda: os.stat(path))
        return None if isinstance(found, str) else found

    # -- internals -----------------------------------------------------------------------------

    def _root_file(self) -> FileEntry | WalkProblem | None:
        """The root itself, when it is one file. The user named it, so the rules about names
        (hidden, ignore files, binary extensions) do not apply: the parser says whether it
        holds text. The index database never is indexed."""
        if self.root in self._excluded:
            return None
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            return None  # deleted, or an unmounted folder root
        except OSError as exc:
            return WalkProblem(self.root, _os_reason(exc, "file"))
        if not stat.S_ISREG(st.st_mode):
            return None
        return FileEntry(self.root, st.st_size, st.st_mtime_ns)

    def _rules_of(self, folder: str) -> list[_Rules]:
        rules = self._own_rules.get(folder)
        if rules is None:
            rules = self._own_rules[folder] = _load_rules(folder)
        return rules

    def _context(self, folder: str) -> tuple[list[_Rules], frozenset[str]] | None:
        """Rules in force above `folder` and the real paths of its ancestors, or None when
        `folder` is outside the root or itself not indexed (hidden, ignored, excluded)."""
        if folder == self.root:
            return list(self._base), frozenset()
        if not folder.startswith(self.root + os.sep):
            return None
        rules = list(self._base)
        ancestors: set[str] = set()
        current = self.root
        parts = folder[len(self.root) + 1 :].split(os.sep)
        for part in parts:
            if part.startswith(".") or not part:
                return None
            rules += self._rules_of(current)
            ancestors.add(os.path.realpath(current))
            current = os.path.join(current, part)
            if current in self._excluded or (rules and _ignored(current, True, rules)):
                return None
        return rules, frozenset(ancestors)

    def _judge(
        self,
        path: str,
        name: str,
        rules: list[_Rules],
        is_link: bool,
        stat_of: Callable[[], os.stat_result],
    ) -> FileEntry | WalkProblem | str | None:
        """One directory entry: a file to index, a problem, "folder" to descend, or None."""
        if name.startswith(".") or path in self._excluded:
            return None
        try:
            st = stat_of()  # follows symlinks
        except FileNotFoundError as exc:
            # A dangling link is worth reporting; a file deleted as we looked simply is not there.
            return WalkProblem(path, _link_reason(exc)) if is_link else None
        except OSError as exc:
            return WalkProblem(path, _link_reason(exc) if is_link else _os_reason(exc, "file"))
        if stat.S_ISDIR(st.st_mode):
            return None if rules and _ignored(path, True, rules) else "folder"
        if not stat.S_ISREG(st.st_mode):
            return None  # sockets, fifos, devices
        if rules and _ignored(path, False, rules):
            return None
        if os.path.splitext(name)[1][1:].lower() in BINARY_EXTENSIONS:
            return None
        return FileEntry(path, st.st_size, st.st_mtime_ns)


def walk(
    root: Path,
    *,
    exclude_paths: Iterable[Path] = (),
    extra_ignore: Iterable[str] = (),
) -> Iterator[FileEntry | WalkProblem]:
    """Yield indexable files under `root` (absolute paths, not resolved through links)."""
    yield from RootFilter(root, exclude_paths=exclude_paths, extra_ignore=extra_ignore).walk()


def is_excluded_name(path: str, root: str) -> bool:
    """Cheap test for the watcher: hidden below the root (rule files aside) means never indexed."""
    rel = path[len(root) + 1 :].split(os.sep)
    if any(part.startswith(".") for part in rel[:-1]):
        return True
    return rel[-1].startswith(".") and rel[-1] not in IGNORE_FILES


def database_files(db_path: Path | str) -> frozenset[str]:
    """The index database and its WAL, shared-memory and journal files: never to be indexed.

    Both the path as given (made absolute) and as resolved through symlinks, so a match does
    not depend on how the database or the watched folder was named.
    """
    names: set[str] = set()
    for base in (os.path.abspath(db_path), os.path.realpath(db_path)):
        names.update(base + suffix for suffix in ("", "-wal", "-shm", "-journal"))
    return frozenset(names)


def _link_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink (target missing)"
    return _os_reason(exc, "symlink target")


def _os_reason(exc: OSError, what: str) -> str:
    if isinstance(exc, PermissionError):
        return f"permission denied ({what})"
    return f"cannot read {what}: {exc.strerror or exc}"
