"""`localrag watch` as a user runs it: a real process, real signals, JSON events on stdout."""

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

import pytest

from localrag.store import Store
from tests.corpus import write_tree
from tests.index_state import assert_matches_fresh_index

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


def _indexed_count(db: Path) -> int:
    with Store.open(db, create=False) as store:
        return store.stats().indexed


@pytest.mark.slow
def test_kill_9_mid_burst_then_restart_loses_and_duplicates_nothing(
    tmp_path, models_root, embedder
) -> None:
    docs = tmp_path / "docs"
    write_tree(docs)
    db = tmp_path / "index.db"
    first = WatchProcess(docs, db, models_root, "--json", "--debounce", "0.1")
    first.wait_for("idle")
    burst = docs / "inbox"
    burst.mkdir()
    for i in range(150):
        (burst / f"memo-{i:03}.md").write_text(
            f"# Memo {i}\n\n"
            + f"Memo {i} asks the archive team to scan box {i} and index folder {i % 11}. " * 8
        )
    deadline = time.monotonic() + LIMIT
    while _indexed_count(db) < 10:  # part of the burst is in, the rest is not
        assert time.monotonic() < deadline, "the burst was not being indexed"
        time.sleep(0.05)
    first.proc.kill()
    first.proc.wait(timeout=30)
    assert _indexed_count(db) < 5 + 150

    second = WatchProcess(docs, db, models_root, "--json", "--debounce", "0.1")
    reconciled = second.wait_for("reconciled")
    assert reconciled["report"]["added"] > 0  # the rest of the burst, caught up on start
    second.wait_for("idle")
    code, err = second.stop(signal.SIGTERM)
    assert code == 0, err
    assert _event_kinds(second)[-1] == "stopped"
    assert_matches_fresh_index(db, docs, embedder, tmp_path)


def _event_kinds(process: WatchProcess) -> list[str]:
    return [json.loads(line)["event"] for line in process.lines if line.startswith("{")]


def test_watch_prints_changes_and_stops_cleanly_on_ctrl_c(tmp_path, models_root) -> None:
    docs = tmp_path / "docs"
    write_tree(docs)
    db = tmp_path / "index.db"
    proc = WatchProcess(docs, db, models_root, "--debounce", "0.1")
    proc.wait_for_line("Watching for changes", stderr=True)
    (docs / "swifts.md").write_text("# Swifts\n\nSwifts nest under the eaves every May.\n")
    line = proc.wait_for_line("swifts.md")
    assert "added" in line and "(1 chunk)" in line
    code, err = proc.stop(signal.SIGINT)
    assert code == 0
    assert "Stopped. Everything indexed so far is saved" in err


def test_watch_without_folders_or_index_is_a_clear_error(tmp_path, models_root) -> None:
    env = dict(os.environ, LOCALRAG_MODELS_DIR=str(models_root))
    result = subprocess.run(
        [sys.executable, "-m", "localrag", "watch", "--db", str(tmp_path / "none.db")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "nothing to watch" in result.stderr
    assert "Traceback" not in result.stderr
