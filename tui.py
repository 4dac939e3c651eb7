#!/usr/bin/env python3
"""Start the localrag terminal app: `python tui.py [FOLDER...]`, the same as `localrag tui`.

Every option of `localrag tui` works here too (`python tui.py --help`).
"""

from localrag.cli import tui

if __name__ == "__main__":
    tui(prog_name="tui.py")
