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
from collections.abc import Iterable, Iterator
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


def walk(
    root: Path,
    *,
    exclude_paths: Iterable[Path] = (),
    extra_ignore: Iterable[str] = (),
) -> Iterator[FileEntry | WalkProblem]:
    """Yield indexable files under `root` (absolute paths, not resolved through links)."""
    excluded = {os.path.abspath(p) for p in exclude_paths}
    extra = list(extra_ignore)
    root_str = os.path.abspath(root)
    base_rules = [_Rules(root_str, pathspec.GitIgnoreSpec.from_lines(extra))] if extra else []
    # (folder, rules in force, real paths of the folders above: to notice symlink loops)
    stack: list[tuple[str, list[_Rules], frozenset[str]]] = [(root_str, base_rules, frozenset())]
    while stack:
        folder, inherited, ancestors = stack.pop()
        real = os.path.realpath(folder)
        if real in ancestors:
            yield WalkProblem(folder, "symlink loop (folder links to one of its parents)")
            continue
        ancestors = ancestors | {real}
        rules = inherited + _load_rules(folder)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except PermissionError:
            yield WalkProblem(folder, "permission denied (folder)")
            continue
        except OSError as exc:
            yield WalkProblem(folder, _os_reason(exc, "folder"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = entry.path
            if path in excluded or _is_database_sidecar(path, excluded):
                continue
            try:
                st = entry.stat()  # follows symlinks
            except OSError as exc:
                if entry.is_symlink():
                    yield WalkProblem(path, _link_reason(exc))
                else:
                    yield WalkProblem(path, _os_reason(exc, "file"))
                continue
            if stat.S_ISDIR(st.st_mode):
                if not (rules and _ignored(path, True, rules)):
                    subfolders.append(path)
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # sockets, fifos, devices
            if rules and _ignored(path, False, rules):
                continue
            suffix = os.path.splitext(entry.name)[1][1:].lower()
            if suffix in BINARY_EXTENSIONS:
                continue
            yield FileEntry(path, st.st_size, st.st_mtime_ns)
        # Reversed so folders are visited in name order (stack is LIFO).
        stack.extend((sub, rules, ancestors) for sub in reversed(subfolders))


def _is_database_sidecar(path: str, excluded: set[str]) -> bool:
    for suffix in ("-wal", "-shm", "-journal"):
        if path.endswith(suffix) and path[: -len(suffix)] in excluded:
            return True
    return False


def _link_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink (target missing)"
    return _os_reason(exc, "symlink target")


def _os_reason(exc: OSError, what: str) -> str:
    if isinstance(exc, PermissionError):
        return f"permission denied ({what})"
    if isinstance(exc, FileNotFoundError):
        return "vanished while indexing"
    return f"cannot read {what}: {exc.strerror or exc}"
