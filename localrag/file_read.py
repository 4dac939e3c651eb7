"""Reading one file to index, whatever it has become since the folder was scanned.

Between the walk and the read a file can be replaced by a named pipe (whose open would wait
for a writer forever), by a link to a device such as /dev/zero (endless bytes), or grow past
the size limit. So the path is opened without blocking, checked again on the open descriptor,
and read no further than the limit.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from localrag.errors import SkipFile
from localrag.sizes import megabytes

_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
_PIECE = 8 << 20


@dataclass(frozen=True)
class FileBytes:
    data: bytes
    size: int  # as the open file said before reading
    mtime_ns: int


def read_regular_file(path: str, limit: int) -> FileBytes:
    """The bytes of `path` if it is a regular file of at most `limit` bytes.

    Raises SkipFile (not a regular file, too big), FileNotFoundError (gone) or another
    OSError (permission, I/O): each the problem of this one file.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a device with no driver behind it
            raise SkipFile("not a regular file (socket or device)") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SkipFile(f"not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise SkipFile(too_big_reason(st.st_size, limit))
        parts: list[bytes] = []
        got = 0
        while got <= limit:  # one byte past the limit tells a file that grew meanwhile
            piece = os.read(fd, min(_PIECE, limit + 1 - got))
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        if got > limit:
            raise SkipFile(too_big_reason(got, limit, growing=True))
        return FileBytes(b"".join(parts), st.st_size, st.st_mtime_ns)
    finally:
        os.close(fd)


def too_big_reason(size: int, limit: int, *, growing: bool = False) -> str:
    if growing:
        return f"too big (grew past the limit of {megabytes(limit)} while being read)"
    return f"too big ({megabytes(size)} > limit {megabytes(limit)})"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "folder"
    return "special file"
