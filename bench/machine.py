"""One line describing the machine a benchmark ran on, for the head of its results file."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def describe() -> str:
    """Cores and CPU model, load average, date and Python version."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux: the core count still says most of it
        pass
    cpu = f"{os.cpu_count()} cores" + (f" ({model})" if model else "")
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{cpu}{load}, {time.strftime('%Y-%m-%d')}, Python {sys.version.split()[0]}"
