"""`localrag watch --json` as a user runs it: a real process whose events a test reads."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

LIMIT = 120.0


class WatchProcess:
    """`localrag watch --json` in a subprocess, its events read line by line in a thread."""

    def __init__(self, folder: Path, db: Path, models_root: Path, *extra: str) -> None:
        env = dict(os.environ)
        env.update(LOCALRAG_MODELS_DIR=str(models_root), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "localrag", "watch", str(folder), "--db", str(db), *extra],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.lines: list[str] = []
        self.err_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_out, daemon=True),
            threading.Thread(target=self._read_err, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("{"):
                self.events.put(json.loads(line))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err_lines.append(line)

    def wait_for_line(self, text: str, *, stderr: bool = False) -> str:
        deadline = time.monotonic() + LIMIT
        lines = self.err_lines if stderr else self.lines
        while time.monotonic() < deadline:
            found = next((line for line in list(lines) if text in line), None)
            if found is not None:
                return found
            assert self.proc.poll() is None, "".join(self.err_lines)
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} within {LIMIT}s")

    def wait_for(self, kind: str, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + LIMIT
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(f"watch exited: {''.join(self.err_lines)}") from None
                continue
            if event["event"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event
        raise AssertionError(f"no {kind} event within {LIMIT}s")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        for reader in self._readers:
            reader.join(10)
        return code, "".join(self.err_lines)
