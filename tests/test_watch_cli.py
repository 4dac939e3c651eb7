"""`localrag watch` as a user runs it: a real process, real signals, JSON events on stdout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localrag.indexer import Indexer
from localrag.store import Store
from tests.helpers.corpus import write_tree
from tests.helpers.index_state import assert_matches_fresh_index
from tests.helpers.watch import LIMIT, WatchProcess


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


def test_watch_goes_on_when_a_folder_in_the_index_is_missing(
    tmp_path, models_root, embedder
) -> None:
    """`localrag watch` while one indexed folder is on an unmounted drive."""
    docs = tmp_path / "docs"
    write_tree(docs)
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "otters.md").write_text("# Otters\n\nOtters were seen below the weir in June.\n")
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([docs, usb])
    usb.rename(tmp_path / "unplugged")

    # Both folders named, as a service's command line would: the drive's may be missing.
    watch = WatchProcess(docs, db, models_root, "--json", "--debounce", "0.1", str(usb))
    notice = watch.wait_for("notice")
    assert f"{usb} is missing; its passages are kept" in notice["message"]
    assert f"`localrag forget {usb}`" in notice["message"]
    watch.wait_for("idle")
    (docs / "swifts.md").write_text("# Swifts\n\nSwifts nest under the eaves every May.\n")
    watch.wait_for("index", path=str(docs / "swifts.md"), status="added")
    code, err = watch.stop(signal.SIGTERM)
    assert code == 0, err
    notices = [json.loads(line) for line in watch.lines if '"notice"' in line]
    assert [n for n in notices if str(usb) in n["message"]] == [notice]  # said once
    with Store.open(db, create=False) as store:
        assert store.document(str(usb / "otters.md")) is not None
