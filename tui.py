#!/usr/bin/env python3
"""Start the localrag terminal app: `python tui.py [FOLDER...]`, the same as `localrag tui`.

Every option of `localrag tui` works here too (`python tui.py --help`).
"""

import sys

from localrag.cli import cli

if __name__ == "__main__":
    cli(["tui", *sys.argv[1:]], prog_name="tui.py")
