"""`localrag mcp` as an MCP client sees it: a real server process on a real index, driven
through the SDK's own stdio client (tests/helpers/mcp.py). One server serves the module's
read-only tests; `--index` and a missing index get a process each."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from localrag.answer import NOT_ASKED_HINT
from localrag.cli import cli
from localrag.indexer import Indexer
from localrag.retrieval import NO_WORDS_MESSAGE
from localrag.store import Store
from tests.helpers.handbook import write_handbook
from tests.helpers.mcp import McpClient, localrag_mcp

pytestmark = pytest.mark.slow

QUESTION = "How long can new parents stay at home?"

# A file long enough for several passages, one fact per section, so a passage has neighbours.
TOPICS = [
    ("Agenda", "The agenda is posted in the team channel the day before each meeting."),
    ("Minutes", "The note taker writes the minutes and files them in the shared drive."),
    ("Retrospective", "Every second Thursday the team holds a retrospective on the sprint."),
    ("Decisions", "Decisions are recorded with their reasons and the people who made them."),
    ("Follow-up", "Open actions are reviewed at the start of the next meeting, owner by owner."),
]
MEETINGS = "# Meetings\n\n" + "\n\n".join(
    f"## {title}\n\n" + " ".join([sentence] * 14) for title, sentence in TOPICS
)


@dataclass
class Served:
    client: McpClient
    db: Path
    folder: Path
    before: dict[str, tuple[int, int, str]]


def db_files(db: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mtime, sha256) of the index and its -wal/-shm files."""
    found = {}
    for p in db.parent.iterdir():
        if p.name.startswith(db.name):
            st = p.stat()
            found[p.name] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return found


def server_env(models_root: Path, home: Path) -> dict[str, str]:
    """Set here, not read from the autouse fixture: a module fixture starts before it."""
    env = {k: v for k, v in os.environ.items() if k not in ("LOCALRAG_DB", "LOCALRAG_MODELS_DIR")}
    env.update(LOCALRAG_HOME=str(home), LOCALRAG_MODELS_DIR=str(models_root), HF_HUB_OFFLINE="1")
    return env


def build_index(folder: Path, db: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    with Store.open(db) as store:
        Indexer(store, embedder).index([folder])


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    embedder,  # type: ignore[no-untyped-def]
    models_root: Path,
) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("mcp")
    folder = write_handbook(work / "handbook", {"team/meetings.md": MEETINGS})
    db = work / "index" / "index.db"
    db.parent.mkdir()
    build_index(folder, db, embedder)
    before = db_files(db)
    argv = localrag_mcp("--db", str(db), "--no-model")
    env = server_env(models_root, work / "home")
    with McpClient(argv, env, work / "server.err") as client:
        yield Served(client, db, folder, before)


def test_lists_four_read_only_tools(served: Served) -> None:
    tools = {t.name: t for t in served.client.list_tools()}
    assert set(tools) == {"search", "ask", "status", "passage"}
    for tool in tools.values():
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.open_world_hint is False
        assert tool.output_schema is not None  # structured results, described
    search = tools["search"].input_schema["properties"]
    assert search["mode"]["enum"] == ["hybrid", "vector", "keyword"]
    assert search["k"]["default"] == 5
    assert tools["search"].input_schema["required"] == ["query"]
    assert tools["passage"].input_schema["required"] == ["chunk_id"]


def test_search_ranks_the_passage_that_answers_first(served: Served) -> None:
    found = served.client.data("search", {"query": QUESTION, "k": 3})
    assert found["query"] == QUESTION and found["mode"] == "hybrid"
    assert len(found["results"]) == 3
    first = found["results"][0]
    assert first["path"] == str(served.folder / "hr" / "leave.md")
    assert first["rank"] == 1
    assert first["location"] == "line 3"
    assert (first["line_start"], first["line_end"]) == (3, 3)
    assert first["page_start"] is None
    assert first["heading"] == "Parental leave"
    assert "twenty weeks" in first["text"]
    assert first["vector_score"] > 0.35
    assert first["also_in"] == []
    assert isinstance(first["chunk_id"], int)
    assert [r["rank"] for r in found["results"]] == [1, 2, 3]


def test_search_modes_and_path_filter(served: Served) -> None:
    keyword = served.client.data("search", {"query": "WireGuard", "mode": "keyword"})
    assert [Path(r["path"]).name for r in keyword["results"]] == ["vpn.md"]
    assert keyword["results"][0]["vector_score"] is None  # the keyword side alone
    vector = served.client.data("search", {"query": "WireGuard", "mode": "vector", "k": 6})
    assert len(vector["results"]) == 6  # meaning always finds something near
    assert all(r["keyword_score"] is None for r in vector["results"])
    only = served.client.data("search", {"query": QUESTION, "path": "finance"})
    assert only["results"]
    assert {Path(r["path"]).name for r in only["results"]} == {"travel.md"}


def test_ask_without_a_model_gives_the_passages_and_says_why(served: Served) -> None:
    answer = served.client.data("ask", {"question": QUESTION})
    assert answer["mode"] == "extractive"
    assert answer["hint"] == NOT_ASKED_HINT  # what `localrag ask --no-model` says
    first = answer["sources"][0]
    assert first["number"] == 1
    assert first["path"] == str(served.folder / "hr" / "leave.md")
    assert first["location"] == "line 3"
    assert "[1] handbook/hr/leave.md (line 3)" in answer["answer"]
    assert "twenty weeks" in answer["answer"]
    assert answer["cited"] == [s["number"] for s in answer["sources"]]
    assert answer["invalid_citations"] == []
    # A source's chunk_id opens the same passage.
    opened = served.client.data("passage", {"chunk_id": first["chunk_id"], "around": 0})
    assert opened["passages"][0]["text"] == first["text"]


def test_ask_about_nothing_in_the_documents_says_so(served: Served) -> None:
    answer = served.client.data("ask", {"question": "Who won the football world cup in 1998?"})
    assert answer["mode"] == "not_found"
    assert answer["sources"] == [] and answer["cited"] == []


def test_status_reports_the_index(served: Served) -> None:
    status = served.client.data("status")
    assert status["db"] == str(served.db)
    assert status["folders"] == [{"path": str(served.folder), "present": True}]
    assert (status["documents"], status["indexed"], status["failed"]) == (6, 6, 0)
    assert status["chunks"] > 6  # the meetings file is several passages
    assert status["embedder"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert status["searchable"] is True
    assert "--no-model" in status["language_model"]
    assert status["indexing"]["state"] == "off"  # no --index: read-only
    assert status["db_bytes"] >= served.db.stat().st_size


def test_passage_comes_with_its_neighbours(served: Served) -> None:
    found = served.client.data("search", {"query": "retrospective every second Thursday"})
    hit = found["results"][0]
    assert hit["path"].endswith("meetings.md") and hit["heading"] == "Meetings > Retrospective"
    shown = served.client.data("passage", {"chunk_id": hit["chunk_id"], "around": 1})
    assert shown["path"] == hit["path"]
    passages = shown["passages"]
    assert len(passages) == 3
    assert [p["target"] for p in passages] == [False, True, False]
    assert passages[1]["chunk_id"] == hit["chunk_id"] and passages[1]["text"] in hit["text"]
    # The hit joins the neighbours found with it, in file order.
    joined = [p for p in passages if p["chunk_id"] in hit["chunk_ids"]]
    assert [p["chunk_id"] for p in joined] == hit["chunk_ids"]
    assert all(p["text"] in hit["text"] for p in joined)
    ordinals = [p["ordinal"] for p in passages]
    assert ordinals == list(range(ordinals[0], ordinals[0] + 3))
    assert "Minutes" in passages[0]["heading"] and "Decisions" in passages[2]["heading"]
    wider = served.client.data("passage", {"chunk_id": hit["chunk_id"], "around": 10})
    assert len(wider["passages"]) > 3  # all of the file there is, and no more
    assert {p["ordinal"] for p in wider["passages"]} >= set(ordinals)


def test_bad_requests_are_tool_errors_and_the_server_keeps_serving(served: Served) -> None:
    client = served.client
    assert NO_WORDS_MESSAGE in client.error("search", {"query": "?!"})
    assert NO_WORDS_MESSAGE in client.error("ask", {"question": "   "})
    assert "no passage with chunk_id 999999" in client.error("passage", {"chunk_id": 999999})
    assert "greater than or equal to 1" in client.error("search", {"query": "vpn", "k": 0})
    assert "mode" in client.error("search", {"query": "vpn", "mode": "fuzzy"})
    assert "unknown tool" in client.error("reindex").lower()
    # Still serving, and nothing but protocol messages came on its stdout.
    assert client.data("search", {"query": "WireGuard"})["results"]
    assert client.errors == [], client.stderr()
    assert "Traceback" not in client.stderr()


def test_serving_writes_nothing_to_the_index(served: Served) -> None:
    served.client.data("search", {"query": QUESTION})
    served.client.data("ask", {"question": "Where do visitors park?"})
    served.client.data("status")
    after = db_files(served.db)
    assert after[served.db.name] == served.before[served.db.name]  # size, mtime, bytes
    wal = after.get(f"{served.db.name}-wal")
    assert wal is None or wal[0] == 0  # no page was written, not even to the WAL
    if sys.platform == "linux":  # and it could not have: the server holds the file read-only
        modes = open_modes(served.db)
        assert modes and modes <= {os.O_RDONLY}, modes


def open_modes(db: Path) -> set[int]:
    """How the server processes hold `db` open: each descriptor's access mode (/proc)."""
    modes = set()
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"mcp" not in argv or os.fsencode(db) not in argv:
                continue
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == str(db):
                    flags = (proc / "fdinfo" / fd.name).read_text().split("flags:")[1].split()[0]
                    modes.add(int(flags, 8) & os.O_ACCMODE)
        except OSError:  # not ours, or gone meanwhile
            continue
    return modes


def add_notes(folder: Path, count: int) -> Path:
    """`count` new files under notes/, one of them about bees; returns that one."""
    notes = folder / "notes"
    notes.mkdir()
    for n in range(count):
        topic = f"Note {n}: the kitchen rota for week {n} lists who cleans the coffee machine."
        (notes / f"note-{n:03}.md").write_text(f"# Note {n}\n\n{topic}\n")
    bees = notes / "bees.md"
    bees.write_text("# Bees\n\nThe beehive on the roof is inspected every Sunday in summer.\n")
    return bees


BEES = "When is the beehive inspected?"


def test_index_flag_serves_at_once_and_indexes_in_the_background(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
    models_root: Path,
) -> None:
    """A client that waits for `initialize` while the pass runs gives up on a big first index:
    the server answers at once, and searches what is indexed so far meanwhile.

    The test holds the index's write lock (as a `localrag index` in another terminal would)
    until it has seen the pass running, so that order is certain rather than a race.
    """
    folder = write_handbook(tmp_path / "handbook")
    db = tmp_path / "index.db"
    build_index(folder, db, embedder)
    bees = add_notes(folder, 40)
    argv = localrag_mcp("--db", str(db), "--no-model", "--index")
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        with McpClient(argv, server_env(models_root, tmp_path / "home"), tmp_path / "err") as c:
            assert {t.name for t in c.list_tools()} == {"search", "ask", "status", "passage"}
            status = c.data("status")
            assert status["indexing"]["state"] == "running"
            assert status["indexing"]["finished_at"] is None
            assert status["indexed"] == 5  # what was there before
            # The folders walked, the pass waits to write its first file: 5 + 41 files.
            status = c.until("status", lambda s: s["indexing"]["files_total"] is not None)
            indexing = status["indexing"]
            assert indexing["state"] == "running"
            assert indexing["files_total"] == 46
            assert indexing["files_done"] < 46
            # Searches answer meanwhile, from what is indexed.
            assert c.data("search", {"query": "WireGuard"})["results"][0]["path"].endswith("vpn.md")
            found = c.data("search", {"query": BEES, "k": 10})["results"]
            assert all(r["path"] != str(bees) for r in found)

            writer.execute("ROLLBACK")  # let it write
            status = c.until("status", lambda s: s["indexing"]["state"] != "running")
            indexing = status["indexing"]
            assert indexing["state"] == "done", indexing
            assert (indexing["files_done"], indexing["files_total"]) == (46, 46)
            assert indexing["finished_at"] is not None and indexing["error"] is None
            assert indexing["summary"] is not None and "41 added" in indexing["summary"]
            assert status["indexed"] == 46
            assert c.data("search", {"query": BEES})["results"][0]["path"] == str(bees)
            assert "41 added" in c.stderr()  # the pass's summary, on stderr too
            assert c.errors == [] and "Traceback" not in c.stderr()
    finally:
        writer.close()


def test_a_failed_index_pass_is_reported_and_the_server_goes_on(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
    models_root: Path,
) -> None:
    folder = write_handbook(tmp_path / "handbook")
    db = tmp_path / "index.db"
    build_index(folder, db, embedder)
    shutil.rmtree(folder)  # nothing left to index: the pass fails at once
    argv = localrag_mcp("--db", str(db), "--no-model", "--index")
    with McpClient(argv, server_env(models_root, tmp_path / "home"), tmp_path / "err") as client:
        status = client.until("status", lambda s: s["indexing"]["state"] != "running")
        indexing = status["indexing"]
        assert indexing["state"] == "failed"
        assert indexing["error"].startswith("nothing to index")
        assert indexing["finished_at"] is not None and indexing["summary"] is None
        assert status["folders"] == [{"path": str(folder), "present": False}]
        # Still serving what the index holds.
        found = client.data("search", {"query": "WireGuard"})
        assert found["results"][0]["path"].endswith("vpn.md")
        assert "nothing to index" in client.stderr()
        assert "Traceback" not in client.stderr()


def test_without_the_index_flag_nothing_is_indexed(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
    models_root: Path,
) -> None:
    folder = write_handbook(tmp_path / "handbook")
    db = tmp_path / "index.db"
    build_index(folder, db, embedder)
    bees = add_notes(folder, 2)
    before = db_files(db)
    argv = localrag_mcp("--db", str(db), "--no-model")
    with McpClient(argv, server_env(models_root, tmp_path / "home"), tmp_path / "err") as client:
        status = client.data("status")
        assert status["indexing"] == {
            "state": "off",
            "files_done": 0,
            "files_total": None,
            "started_at": None,
            "finished_at": None,
            "summary": None,
            "error": None,
        }
        assert status["indexed"] == 5
        found = client.data("search", {"query": BEES, "k": 10})["results"]
        assert all(r["path"] != str(bees) for r in found)
    after = db_files(db)
    assert after[db.name] == before[db.name]  # size, mtime, bytes
    wal = after.get(f"{db.name}-wal")
    assert wal is None or wal[0] == 0  # not a page written, not even to the WAL


def test_a_missing_index_is_a_tool_error_until_there_is_one(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
    models_root: Path,
) -> None:
    db = tmp_path / "index.db"
    argv = localrag_mcp("--db", str(db), "--no-model")
    with McpClient(argv, server_env(models_root, tmp_path / "home"), tmp_path / "err") as client:
        for tool, arguments in [("search", {"query": "vpn"}), ("status", {})]:
            assert "run `localrag index FOLDER` first" in client.error(tool, arguments)
        assert not db.exists()  # read-only: the server did not create it
        build_index(write_handbook(tmp_path / "handbook"), db, embedder)
        found = client.data("search", {"query": "WireGuard"})  # the same server, now it exists
        assert found["results"][0]["path"].endswith("vpn.md")


def test_ask_loads_the_model_at_the_first_question_and_generates(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
    models_root: Path,
    tiny_gguf: dict[str, Path],
) -> None:
    db = tmp_path / "index.db"
    build_index(write_handbook(tmp_path / "handbook"), db, embedder)
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[generation]\nmax_tokens = 16\ntemperature = 0.0\n")
    argv = localrag_mcp("--db", str(db), "--model", str(tiny_gguf["q4_k_m"]))
    with McpClient(argv, server_env(models_root, home), tmp_path / "err") as client:
        assert client.data("status")["language_model"].startswith("not loaded yet")
        answer = client.data("ask", {"question": QUESTION})
        # Random weights write nonsense, but the model wrote it: generated, no hint.
        assert answer["mode"] == "generated"
        assert answer["hint"] is None
        assert answer["sources"][0]["path"].endswith("leave.md")
        assert set(answer["cited"]) <= {s["number"] for s in answer["sources"]}
        loaded = client.data("status")["language_model"]
        assert loaded == f"loaded: {tiny_gguf['q4_k_m'].name}"


def test_a_model_that_fails_to_load_leaves_extractive_answers(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
    models_root: Path,
) -> None:
    db = tmp_path / "index.db"
    build_index(write_handbook(tmp_path / "handbook"), db, embedder)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 60)  # a header and nothing after it
    argv = localrag_mcp("--db", str(db), "--model", str(broken))
    with McpClient(argv, server_env(models_root, tmp_path / "home"), tmp_path / "err") as client:
        for _ in range(2):  # tried once, then extractive without trying again
            answer = client.data("ask", {"question": QUESTION})
            assert answer["mode"] == "extractive"
            assert answer["hint"].startswith("The language model could not be loaded")
            assert "broken.gguf" in answer["hint"]
            assert "twenty weeks" in answer["answer"]
        assert client.data("status")["language_model"].startswith("failed to load")


def test_without_the_mcp_extra_it_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # what `import mcp` meets without the extra
    result = CliRunner().invoke(cli, ["mcp", "--db", str(tmp_path / "index.db")])
    assert result.exit_code == 1
    assert "pip install 'localrag[mcp]'" in result.output
