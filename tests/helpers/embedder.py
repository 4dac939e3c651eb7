"""Build the real test embedder once, and prove code paths stay off the network."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from localrag.models.embedder_import import import_embedder


@contextlib.contextmanager
def block_network() -> Iterator[list[str]]:
    """Make every connection attempt fail and record it, so swallowed failures still show."""
    attempts: list[str] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(repr(args[1:] if args and isinstance(args[0], socket.socket) else args))
        raise OSError("network access blocked by the test")

    saved = {
        (socket.socket, "connect"): socket.socket.connect,
        (socket.socket, "connect_ex"): socket.socket.connect_ex,
        (socket, "create_connection"): socket.create_connection,
        (socket, "getaddrinfo"): socket.getaddrinfo,
    }
    for (owner, attr), _ in saved.items():
        setattr(owner, attr, refuse)
    try:
        yield attempts
    finally:
        for (owner, attr), original in saved.items():
            setattr(owner, attr, original)


def build_test_embedder(tmp_root: Path) -> Path:
    """Export the genuine MiniLM from the installed gt package (~10 s), with the network blocked."""
    with block_network() as attempts:
        model_dir = import_embedder(None, Path(tmp_root))
    assert not attempts, f"importing the embedder tried to reach the network: {attempts}"
    return model_dir


def link_model_copy(src: Path, dest: Path) -> Path:
    """A cheap copy of a model folder made of symlinks; unlink a file before rewriting it."""
    dest.mkdir(parents=True)
    for entry in os.listdir(src):
        os.symlink(src / entry, dest / entry)
    return dest
