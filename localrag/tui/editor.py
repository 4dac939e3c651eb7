"""Opening a source file at the right place in the user's editor or viewer."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

# Editors that take `+LINE FILE` (vi family, nano, emacs, micro, kakoune, joe, ne).
_PLUS_LINE = {
    "vi",
    "vim",
    "nvim",
    "gvim",
    "view",
    "nano",
    "emacs",
    "emacsclient",
    "micro",
    "kak",
    "joe",
    "ne",
    "mg",
    "jed",
}
# Editors that take `FILE:LINE`.
_COLON_LINE = {"hx", "helix", "subl", "zed", "mate"}
# Editors that take `-g FILE:LINE`.
_GOTO_FLAG = {"code", "codium", "code-insiders", "cursor"}
# Formats an editor cannot show: open them with the system's viewer instead.
_BINARY_SUFFIXES = {".pdf", ".docx", ".doc", ".odt", ".rtf", ".epub"}


def editor_setting() -> str | None:
    return os.environ.get("VISUAL") or os.environ.get("EDITOR") or None


def open_command(path: str, line: int | None, editor: str | None) -> list[str]:
    """The command that shows `path` (at `line` when the editor supports it).

    Binary documents go to the desktop's viewer; text goes to $VISUAL/$EDITOR. Raises
    ValueError with advice when a text file has no editor to go to.
    """
    if Path(path).suffix.lower() in _BINARY_SUFFIXES:
        return [_system_opener(), path]
    if not editor:
        raise ValueError("set $EDITOR (for example `export EDITOR=nano`) to open files")
    argv = shlex.split(editor)
    name = Path(argv[0]).name
    if line is None or line < 1:
        return [*argv, path]
    if name in _PLUS_LINE:
        return [*argv, f"+{line}", path]
    if name in _COLON_LINE:
        return [*argv, f"{path}:{line}"]
    if name in _GOTO_FLAG:
        return [*argv, "-g", f"{path}:{line}"]
    return [*argv, path]  # unknown editor: the right file, at its start


def _system_opener() -> str:
    return "open" if sys.platform == "darwin" else "xdg-open"
