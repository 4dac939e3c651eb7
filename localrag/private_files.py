"""Files and folders only their owner can read: the index holds the text of private documents.

Everything localrag creates for itself (its data folder, databases, manifests) is made with
owner-only permissions from the first byte, not chmod-ed afterwards, so there is no moment
when another user could open it. SQLite gives a database's WAL and shared-memory files the
database file's own mode, so creating the database 0600 covers them too.
"""

from __future__ import annotations

import os
import stat
import uuid
from contextlib import suppress
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(folder: Path) -> None:
    """Create `folder` and any missing parents as 0700; existing folders are left as they are."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process
        # mkdir's mode is filtered by the umask; an explicit chmod is not.
        os.chmod(path, PRIVATE_DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create an empty file readable by its owner only (nothing if it exists already)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # the umask may have taken bits the owner needs
    finally:
        os.close(fd)


def write_private_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (temporary file and rename), owner-only."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1  # closed by the file object from here on
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise


def tighten(path: Path, mode: int) -> None:
    """Remove group and other permissions from a file or folder we own (earlier versions made
    them world-readable). Missing files and files owned by someone else are left alone."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if st.st_uid != os.getuid() or not stat.S_IMODE(st.st_mode) & 0o077:
        return
    with suppress(OSError):  # a read-only file system: nothing to do, and reading still works
        os.chmod(path, mode)
