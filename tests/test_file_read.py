"""Reading one file to index: regular files up to the limit, anything else refused unread.

Every case uses a real file system object under tmp_path (or the system's own /dev and /proc):
a named pipe with no writer, a socket, a folder, a device behind a link, a file that yields
more bytes than its size said.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from localrag.errors import SkipFile
from localrag.file_read import FileBytes, read_regular_file, too_big_reason


def _read_in_thread(call: Callable[[], FileBytes]) -> FileBytes | BaseException:
    """Run `call` on a worker so that a read that blocks fails the test instead of hanging it."""
    outcome: list[FileBytes | BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the read blocked"
    return outcome[0]


def test_a_regular_file_is_read_whole_with_its_size_and_mtime(tmp_path: Path) -> None:
    data = b"Tomatoes need six hours of sun.\n" * 1000 + "naïve ☃\n".encode()
    path = tmp_path / "notes.txt"
    path.write_bytes(data)
    read = read_regular_file(str(path), limit=len(data) + 100)
    st = path.stat()
    assert read == FileBytes(data, len(data), st.st_mtime_ns)


def test_an_empty_file_is_read_as_no_bytes(tmp_path: Path) -> None:
    path = tmp_path / "empty.md"
    path.touch()
    assert read_regular_file(str(path), limit=0).data == b""


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "exact.txt"
    path.write_bytes(b"x" * 4096)
    assert read_regular_file(str(path), limit=4096).data == b"x" * 4096


def test_a_file_one_byte_over_the_limit_is_skipped_with_both_sizes(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"x" * 2_600_001)
    with pytest.raises(SkipFile) as caught:
        read_regular_file(str(path), limit=2_500_000)
    assert str(caught.value) == "too big (2.6 MB > limit 2.5 MB)"


def test_too_big_reasons_read_in_megabytes() -> None:
    assert too_big_reason(60_000_000, 50_000_000) == "too big (60.0 MB > limit 50.0 MB)"
    assert too_big_reason(50_000_001, 50_000_000, growing=True) == (
        "too big (grew past the limit of 50.0 MB while being read)"
    )


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.txt"
    os.mkfifo(pipe)
    try:
        outcome = _read_in_thread(lambda: read_regular_file(str(pipe), limit=1000))
    finally:
        # A read that blocked in open() waiting for a writer is released by opening one.
        with contextlib.suppress(OSError):  # no reader waiting: nothing to release
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
    assert isinstance(outcome, SkipFile)
    assert str(outcome) == "not a regular file (named pipe)"


def test_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "looks-like-a-file.txt"
    folder.mkdir()
    with pytest.raises(SkipFile, match=r"^not a regular file \(folder\)$"):
        read_regular_file(str(folder), limit=1000)


def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        assert stat.S_ISSOCK(path.lstat().st_mode)
        with pytest.raises(SkipFile, match=r"^not a regular file \(socket or device\)$"):
            read_regular_file(str(path), limit=1000)
    finally:
        server.close()


def test_a_link_to_a_regular_file_reads_the_file(tmp_path: Path) -> None:
    target = tmp_path / "real.md"
    target.write_text("# Real\n\ncontent\n")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    assert read_regular_file(str(link), limit=1000).data == b"# Real\n\ncontent\n"


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_a_link_to_a_device_is_refused_unread(tmp_path: Path, device: str) -> None:
    link = tmp_path / "endless.txt"
    link.symlink_to(device)
    outcome = _read_in_thread(lambda: read_regular_file(str(link), limit=1000))
    assert isinstance(outcome, SkipFile)
    assert str(outcome) == "not a regular file (character device)"


def test_a_link_to_a_named_pipe_is_refused(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    link = tmp_path / "notes.txt"
    link.symlink_to(pipe)
    try:
        outcome = _read_in_thread(lambda: read_regular_file(str(link), limit=1000))
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
    assert isinstance(outcome, SkipFile)
    assert str(outcome) == "not a regular file (named pipe)"


def test_a_missing_file_or_a_dangling_link_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular_file(str(tmp_path / "gone.txt"), limit=1000)
    link = tmp_path / "dangling.txt"
    link.symlink_to(tmp_path / "nowhere.txt")
    with pytest.raises(FileNotFoundError):
        read_regular_file(str(link), limit=1000)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_a_permission_error_not_a_skip(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("private")
    path.chmod(0)
    try:
        with pytest.raises(PermissionError):
            read_regular_file(str(path), limit=1000)
    finally:
        path.chmod(0o600)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs /proc: regular files that say size 0"
)
def test_bytes_past_the_size_the_file_gave_are_read_up_to_the_limit_and_no_further() -> None:
    # /proc files are regular files that report size 0 and yield text when read: like a file
    # that grew between fstat and read.
    path = "/proc/self/status"
    whole = read_regular_file(path, limit=1_000_000)
    assert whole.size == 0 and whole.data.startswith(b"Name:")
    with pytest.raises(SkipFile) as caught:
        read_regular_file(path, limit=10)
    assert str(caught.value) == too_big_reason(11, 10, growing=True)
