"""Keep localrag off the network and free of telemetry, whatever its libraries do by default.

`apply()` runs on `import localrag`, so before any entry point (the CLI, `python tui.py`, a
program using `localrag.embedder`) can import onnxruntime, fastembed, huggingface_hub or
transformers: each reads these variables once, when it is imported or its runtime starts.

onnxruntime's official wheels (1.29 and later, Linux and macOS) start a 1DS telemetry uploader
with their runtime: a store at ~/.cache/Microsoft/DeveloperTools/.onnxruntime (onnxruntime.db, a
device id) and, in a process that lives about ten seconds, DNS lookups for
mobile.events.data.microsoft.com. ORT_DISABLE_TELEMETRY=1, seen before onnxruntime is imported,
stops all of it: no uploader, no store, no device id. `onnxruntime.disable_telemetry_events()`
comes too late (the store and the lookups still happen). localrag promises no telemetry, so this
one is set even over a user's "0".

The other switches are defaults: a value the user set is kept. HF_HUB_OFFLINE keeps the hub
libraries from ever asking the network; the two commands that exist to download
(`localrag models pull`, `localrag models import-embedder --download`) lift it with `online()`.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ORT_OPT_OUT = "ORT_DISABLE_TELEMETRY"
# The values onnxruntime itself reads as "disabled" (trimmed, any case).
_ORT_TRUE = {"1", "true", "yes", "on", "y"}

# Telemetry opt-outs, kept as the user set them when they did.
TELEMETRY_DEFAULTS = {
    "HF_HUB_DISABLE_TELEMETRY": "1",  # huggingface_hub and transformers usage reports
    "UNSLOTH_DISABLE_STATISTICS": "1",  # the optional fine-tuning back end's environment report
}
# Network switches, lifted by online() for an explicit download (unless the user set them).
OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # huggingface_hub, transformers, fastembed, unsloth: no hub requests
}

# What apply() set itself, by name: only these may online() lift.
_supplied: dict[str, str] = {}


def apply() -> None:
    """Switch telemetry and hub access off for this process and the processes it starts."""
    if os.environ.get(ORT_OPT_OUT, "").strip().lower() not in _ORT_TRUE:
        os.environ[ORT_OPT_OUT] = "1"
        if "onnxruntime" in sys.modules:
            # Its runtime has started and read the environment already: too late for this one.
            warnings.warn(
                "onnxruntime was imported before localrag, so its telemetry could not be "
                "switched off; import localrag first, or set ORT_DISABLE_TELEMETRY=1",
                RuntimeWarning,
                stacklevel=2,
            )
    for name, value in {**TELEMETRY_DEFAULTS, **OFFLINE_DEFAULTS}.items():
        if name not in os.environ:
            os.environ[name] = value
            _supplied[name] = value


def _hub_offline() -> bool:
    """huggingface_hub's own reading of the environment (constants.HF_HUB_OFFLINE)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return (value or "").upper() in {"1", "ON", "YES", "TRUE"}


@contextmanager
def online() -> Iterator[None]:
    """Allow an explicit download: lift the offline switches localrag set, never the user's.

    Telemetry stays off. huggingface_hub reads HF_HUB_OFFLINE once, on import, so its copy
    follows the environment while the block runs, and goes back after.
    """
    lifted = {
        name: value
        for name, value in _supplied.items()
        if name in OFFLINE_DEFAULTS and os.environ.get(name) == value
    }
    if not lifted:
        yield
        return
    hub: Any = sys.modules.get("huggingface_hub.constants")
    saved = None if hub is None else hub.HF_HUB_OFFLINE
    for name in lifted:
        del os.environ[name]
    if hub is not None:
        hub.HF_HUB_OFFLINE = _hub_offline()
    try:
        yield
    finally:
        for name, value in lifted.items():
            os.environ.setdefault(name, value)
        hub = sys.modules.get("huggingface_hub.constants")
        if hub is not None:
            # Imported inside the block, it read the lifted environment: make it offline again.
            hub.HF_HUB_OFFLINE = _hub_offline() if saved is None else saved
