"""The `localrag` command line: a thin layer that turns library calls into terminal output.

`base` holds the command group, the options several commands share and the process set-up;
one module per group of commands registers them on it (importing them below is what makes
the commands exist); `ask_view` and `watch_view` show a streamed answer and watch events.
"""

from localrag.cli import ask, evaluation, finetune, index, mcp, models  # noqa: F401 (registers)
from localrag.cli.ask import tui
from localrag.cli.base import cli, main

__all__ = ["cli", "main", "tui"]
