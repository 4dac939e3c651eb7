"""Real faults against the real commands: a disk that fills up, a database deleted under a
running watch, a read-only disk, another program's database, a second user on the machine,
and two first runs started together.

Mounting a small or read-only file system and switching users need root: those tests skip
otherwise, and say so.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlean as sqlite3  # one SQLite library per process (docs/ARCHITECTURE.md §8)

from localrag.store import Store
from tests.helpers.corpus import write_tree
from tests.helpers.watch import WatchProcess

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="mounting a file system needs root")

_WORDS = (
    "contract notice tenant landlord payment invoice period clause party agreement renewal "
    "deposit damage repair inspection termination schedule boiler chimney garden"
).split()


def _localrag(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localrag", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(models_root: Path) -> dict[str, str]:
    return dict(os.environ, LOCALRAG_MODELS_DIR=str(models_root), PYTHONUNBUFFERED="1")


def _letters(folder: Path, count: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(start)
    for i in range(start, start + count):
        paragraphs = [
            "\n".join(" ".join(rng.choice(_WORDS) for _ in range(14)) for _ in range(4))
            for _ in range(10)
        ]
        (folder / f"letter-{i:03}.txt").write_text(f"Letter {i}\n\n" + "\n\n".join(paragraphs))


@pytest.fixture
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A tmpfs of 1 MB (or the size a test asks for with `indirect`): a disk that fills up."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    size = getattr(request, "param", "1m")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# -- a full disk ----------------------------------------------------------------------------------


@needs_root
def test_index_on_a_full_disk_says_so_in_one_line_and_keeps_what_it_saved(
    tmp_path: Path, small_disk: Path, env: dict[str, str]
) -> None:
    docs = tmp_path / "docs"
    _letters(docs, 60)
    db = small_disk / "index.db"
    result = _localrag("index", str(docs), "--db", str(db), "-q", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is full" in errors[0], result.stderr
    assert "Free some space and run the same command again" in result.stderr
    # What was saved before the disk filled up opens, is consistent and answers.
    with Store.open(db, read_only=True) as store:
        assert store.integrity_check() == "ok"
        saved = store.stats().indexed
        assert 0 < saved < 60
    found = _localrag("search", "tenant deposit", "--db", str(db), env=env)
    assert found.returncode == 0 and "letter-" in found.stdout, found.stderr


@needs_root
@pytest.mark.parametrize("small_disk", ["4m"], indirect=True)  # room for the WAL once freed
def test_watch_keeps_running_on_a_full_disk_and_catches_up_when_space_returns(
    tmp_path: Path, small_disk: Path, env: dict[str, str]
) -> None:
    docs = tmp_path / "docs"
    write_tree(docs)
    db = small_disk / "index.db"
    watch = WatchProcess(docs, db, Path(env["LOCALRAG_MODELS_DIR"]), "--json", "--debounce", "0.1")
    watch.wait_for("idle")
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * max(0, free - 48 * 1024))  # leave too little for the letters
    _letters(docs / "inbox", 25)
    notice = watch.wait_for("notice")
    while "is full" not in (notice.get("message") or ""):
        notice = watch.wait_for("notice")
    assert "Watching goes on" in notice["message"]
    assert watch.proc.poll() is None  # still running

    filler.unlink()  # space is back
    watch.wait_for("notice", message="there is disk space again: indexing resumed")
    watch.wait_for("idle")
    code, err = watch.stop(signal.SIGINT)
    assert code == 0, err
    with Store.open(db, read_only=True) as store:
        assert store.integrity_check() == "ok"
        indexed = {Path(p).name for p, *_ in store.db.execute("SELECT path FROM documents")}
    assert {f"letter-{i:03}.txt" for i in range(25)} <= indexed


# -- the database deleted under a running watch ------------------------------------------------


def test_a_database_deleted_under_watch_is_noticed_and_nothing_is_written_to_it(
    tmp_path: Path, env: dict[str, str]
) -> None:
    docs = tmp_path / "docs"
    write_tree(docs)
    db = tmp_path / "index" / "index.db"
    watch = WatchProcess(docs, db, Path(env["LOCALRAG_MODELS_DIR"]), "--debounce", "0.1")
    watch.wait_for_line("Watching for changes", stderr=True)
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (db.parent / name).unlink(missing_ok=True)
    (docs / "after.md").write_text("# After\n\nWritten after the index was deleted.\n")
    code = watch.proc.wait(timeout=60)
    err = "".join(watch.err_lines)
    assert code == 1, err
    assert "was deleted while localrag was using it" in err
    assert "Traceback" not in err
    assert not db.exists()  # not silently re-created either


# -- read-only and foreign databases -----------------------------------------------------------


@pytest.fixture
def read_only_copy(tmp_path: Path, env: dict[str, str]) -> Iterator[Path]:
    """An index on a read-only file system (root) or in a read-only folder (other users)."""
    docs = tmp_path / "docs"
    write_tree(docs)
    built = tmp_path / "built.db"
    assert _localrag("index", str(docs), "--db", str(built), "-q", env=env).returncode == 0
    place = tmp_path / "read-only"
    place.mkdir()
    if IS_ROOT:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(place)], check=True)
    shutil.copy(built, place / "index.db")
    if IS_ROOT:
        subprocess.run(["mount", "-o", "remount,ro", str(place)], check=True)
    else:
        place.chmod(0o555)
    try:
        yield place / "index.db"
    finally:
        if IS_ROOT:
            subprocess.run(["umount", "-l", str(place)], check=False)
        else:
            place.chmod(0o755)


def test_status_search_and_ask_work_on_an_index_they_cannot_write(
    read_only_copy: Path, env: dict[str, str]
) -> None:
    before = hashlib.sha256(read_only_copy.read_bytes()).hexdigest()
    db = str(read_only_copy)
    status = _localrag("status", "--db", db, env=env)
    assert status.returncode == 0, status.stderr
    assert "indexed" in status.stdout
    search = _localrag("search", "how often to water tomatoes", "--db", db, env=env)
    assert search.returncode == 0, search.stderr
    assert "notes.md" in search.stdout
    ask = _localrag("ask", "how often should tomatoes be watered?", "--db", db, env=env)
    assert ask.returncode == 0, ask.stderr
    assert "notes.md" in ask.stdout
    assert hashlib.sha256(read_only_copy.read_bytes()).hexdigest() == before


def test_status_never_writes(tmp_path: Path, env: dict[str, str]) -> None:
    docs = tmp_path / "docs"
    write_tree(docs)
    db = tmp_path / "index.db"
    assert _localrag("index", str(docs), "--db", str(db), "-q", env=env).returncode == 0
    # A writer that died without closing leaves committed pages in the WAL: a connection that
    # may write would move them into the database file when it closes.
    leave_wal = (
        "import os, sqlean; db = sqlean.connect(os.environ['DB'], isolation_level=None); "
        "db.execute('PRAGMA wal_autocheckpoint = 0'); "
        'db.execute("INSERT INTO conversations(title, created_at, updated_at) '
        "VALUES ('left in the WAL', 0, 0)\"); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", leave_wal], env=dict(env, DB=str(db)), check=True)
    assert Path(f"{db}-wal").stat().st_size > 0
    before = (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns)
    assert _localrag("status", "--db", str(db), env=env).returncode == 0
    assert _localrag("status", "--errors", "--json", "--db", str(db), env=env).returncode == 0
    assert (hashlib.sha256(db.read_bytes()).hexdigest(), db.stat().st_mtime_ns) == before


@pytest.mark.parametrize("command", ["status", "index", "search"])
def test_another_programs_database_is_refused_by_every_command(
    tmp_path: Path, env: dict[str, str], command: str
) -> None:
    other = tmp_path / "mail.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, subject TEXT)")
    conn.execute("INSERT INTO messages (subject) VALUES ('quarterly figures')")
    conn.commit()
    conn.close()
    before = hashlib.sha256(other.read_bytes()).hexdigest()
    args = {"status": [], "index": [str(tmp_path)], "search": ["figures"]}[command]
    result = _localrag(command, *args, "--db", str(other), env=env)
    assert result.returncode == 1
    assert "is a SQLite database but not a localrag index" in result.stderr
    assert "Traceback" not in result.stderr
    assert hashlib.sha256(other.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mail.sqlite"]


# -- two first runs at once ------------------------------------------------------------------------


def test_two_index_runs_creating_one_new_database_together_both_succeed(
    tmp_path: Path, env: dict[str, str]
) -> None:
    docs = tmp_path / "docs"
    write_tree(docs)
    for attempt in range(2):
        db = tmp_path / f"together-{attempt}.db"
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "localrag", "index", str(docs), "--db", str(db), "-q"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for run in runs:
            out, err = run.communicate(timeout=300)
            assert run.returncode == 0, out + err
        with Store.open(db, read_only=True) as store:
            assert store.integrity_check() == "ok"
            assert store.stats().indexed == len(list(docs.rglob("*.*")))


# -- a second user on the machine ------------------------------------------------------------------


@pytest.mark.skipif(
    not IS_ROOT or shutil.which("runuser") is None, reason="switching users needs root and runuser"
)
def test_another_user_cannot_read_the_index_of_a_file_they_cannot_read(
    env: dict[str, str],
) -> None:
    # Under /tmp, outside pytest's own 0700 folder: only localrag's permissions stand between
    # the other user and the data.
    area = Path(tempfile.mkdtemp(prefix="localrag-users-", dir="/tmp"))
    try:
        area.chmod(0o755)
        docs = area / "docs"
        docs.mkdir()
        docs.chmod(0o755)
        secret = docs / "salaries.txt"
        secret.write_text("The director's salary is 181,400 and nobody else may read it.\n")
        secret.chmod(0)
        public = area / "public.txt"
        public.write_text("anyone can read this\n")
        public.chmod(0o644)
        home = area / "home"
        home.mkdir(mode=0o755)  # as an earlier version left it
        home.chmod(0o755)
        user_env = dict(env, LOCALRAG_HOME=str(home))
        user_env.pop("LOCALRAG_DB", None)
        assert _localrag("index", str(docs), "-q", env=user_env).returncode == 0
        assert (home / "index.db").exists()
        assert oct((home / "index.db").stat().st_mode & 0o777) == "0o600"
        assert oct(home.stat().st_mode & 0o777) == "0o700"

        def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["runuser", "-u", "nobody", "--", *command],
                capture_output=True,
                text=True,
                timeout=60,
            )

        control = as_nobody("cat", str(public))
        assert control.returncode == 0 and "anyone" in control.stdout  # the check can see
        assert as_nobody("cat", str(home / "index.db")).returncode != 0
        assert as_nobody("ls", str(home)).returncode != 0
        denied = as_nobody("cat", str(home / "index.db"))
        assert "Permission denied" in denied.stderr
    finally:
        shutil.rmtree(area, ignore_errors=True)
