"""Moving an index to another embedder (`localrag index --reembed`), with real models and files.

The int8 MiniLM is the usual target; a copy of MiniLM told to read shorter passages stands in
for a model that needs files cut again. Interruptions are real: an exception thrown out of the
embedder mid-run, and a `localrag index --reembed` process killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from localrag.cli import cli
from localrag.embedder import MANIFEST_FILE, load_embedder
from localrag.errors import IndexModelChanged, ModelMismatchError
from localrag.indexer import Indexer
from localrag.reembed import reembed
from localrag.retrieval import Retriever
from localrag.store import Store
from tests.conftest import CountingEmbedder
from tests.helpers.corpus import write_tree
from tests.helpers.embedder import link_model_copy
from tests.helpers.index_state import assert_matches_fresh_index

MARKER = "zqxjvortexmarker"
LONG_NOTE = "# Field report\n\n" + " ".join(
    f"Site {i} was surveyed on day {i % 30 + 1}: the crew logged soil moisture, canopy cover "
    f"and {i * 3} bird sightings before the storm."
    for i in range(12)
)


def _identity(embedder) -> dict:  # type: ignore[no-untyped-def]
    i = embedder.identity
    return {"name": i.name, "dim": i.dim, "fingerprint": i.fingerprint}


def _docs(root: Path) -> Path:
    write_tree(root)
    (root / "marker.md").write_text(
        f"# Lab log\n\nThe calibration run for sample {MARKER} drifted by two percent.\n"
    )
    (root / "report.md").write_text(LONG_NOTE + "\n")
    return root


def _stored_passages(store: Store) -> dict[str, tuple[str, bytes]]:
    """text hash → (text as embedded, stored vector) of every passage vector."""
    rows = store.db.execute(
        "SELECT e.text_hash, c.heading, c.text, e.vector FROM embeddings e "
        "JOIN chunks c ON c.id = (SELECT min(id) FROM chunks WHERE embedding_id = e.id)"
    )
    return {h: (f"{hd}\n\n{t}" if hd else t, v) for h, hd, t, v in rows}


def _assert_vectors_are(store: Store, embedder, *, not_from=None) -> None:  # type: ignore[no-untyped-def]
    """Every stored vector is `embedder`'s vector of its passage (and none is still the one
    `not_from` made), and the sign-bit index holds one row per vector.

    int8 vectors are compared loosely: onnxruntime quantizes a whole batch's activations with
    one scale, so an int8 vector depends a little on its batch-mates (cosine ~0.995).
    """
    passages = _stored_passages(store)
    texts = [t for t, _ in passages.values()]
    stored = np.stack([np.frombuffer(v, dtype=np.float32) for _, v in passages.values()])
    expected = embedder.embed_passages(texts)
    floor = 0.99 if embedder.manifest.get("quantization") else 0.9999
    assert np.sum(stored * expected, axis=1).min() >= floor
    if not_from is not None:
        old = not_from.embed_passages(texts)
        assert np.abs(stored - old).max(axis=1).min() > 1e-3
    bits = store.db.execute("SELECT count(*) FROM embedding_bits").fetchone()[0]
    assert bits == len(passages) == store.stats().embeddings


def test_reembed_switches_the_index_and_search_still_finds_exact_terms(
    tmp_path: Path, embedder, int8_embedder
) -> None:  # type: ignore[no-untyped-def]
    docs = _docs(tmp_path / "docs")
    with Store.open(tmp_path / "index.db") as store:
        Indexer(store, embedder).index([docs])
        chunks_before = store.db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall()
        counting = CountingEmbedder(int8_embedder)
        report = reembed(store, counting, batch=4)
        assert report.switched and report.previous == embedder.identity.name
        assert report.embedded == counting.passages == store.stats().embeddings
        assert (report.already_done, report.recut_documents) == (0, 0)
        assert store.model_identity() == _identity(int8_embedder)
        assert store.reembed_target() is None
        assert store.integrity_check() == "ok"
        # No file was read again: the same passages, with the int8 model's vectors.
        assert store.db.execute("SELECT id, text FROM chunks ORDER BY id").fetchall() == (
            chunks_before
        )
        _assert_vectors_are(store, int8_embedder, not_from=embedder)
        assert "reembed_vectors" not in {
            r[0] for r in store.db.execute("SELECT name FROM sqlite_master")
        }

        retriever = Retriever(store, int8_embedder)
        for query in (MARKER, f"which sample is {MARKER}?"):
            assert retriever.search(query, 3)[0].path.endswith("marker.md")
        best = retriever.search("hotel costs per night", 3, mode="vector")[0]
        assert best.path.endswith("travel.html")
        with pytest.raises(ModelMismatchError):
            Retriever(store, embedder)  # float32 queries are refused now
        again = Indexer(store, int8_embedder).index([docs])
        assert again.unchanged == 7 and again.chunks_embedded == 0

        # Moving to the model it already has does nothing.
        assert not reembed(store, counting).switched
        assert counting.passages == report.embedded


class _Interrupted(Exception):
    pass


class _StopsAfter(CountingEmbedder):
    """The int8 embedder, failing (as a crash would) at its `calls`+1-th batch."""

    def __init__(self, inner, calls: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(inner)
        self.limit = calls

    def embed_passages(self, texts):  # type: ignore[no-untyped-def]
        if self.calls >= self.limit:
            raise _Interrupted
        return super().embed_passages(texts)


def test_an_interrupted_reembed_keeps_answering_and_the_next_run_continues(
    tmp_path: Path, embedder, int8_embedder
) -> None:  # type: ignore[no-untyped-def]
    docs = _docs(tmp_path / "docs")
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([docs])
        total = store.stats().embeddings
        with pytest.raises(_Interrupted):
            reembed(store, _StopsAfter(int8_embedder, calls=2), batch=3)
    with Store.open(db, create=False) as store:
        assert store.integrity_check() == "ok"
        # Still the float32 index, whole, answering as before.
        assert store.model_identity() == _identity(embedder)
        assert store.reembed_target() == _identity(int8_embedder)
        assert store.reembed_counts() == (6, total)
        assert store.stats().reembed == {
            "to": int8_embedder.identity.name,
            "done": 6,
            "total": total,
        }
        _assert_vectors_are(store, embedder, not_from=int8_embedder)
        assert Retriever(store, embedder).search(MARKER, 1)[0].path.endswith("marker.md")
        with pytest.raises(ModelMismatchError, match=f"6 of {total} passages re-embedded"):
            Retriever(store, int8_embedder)

        code, out = _run("status", "--db", str(db), "--json")
        assert code == 0 and json.loads(out)["reembed"]["done"] == 6
        code, out = _run("status", "--db", str(db))
        assert code == 0 and "Moving to" in out

        counting = CountingEmbedder(int8_embedder)
        report = reembed(store, counting, batch=3)
        assert report.switched and report.already_done == 6
        assert store.stats().reembed is None
        assert counting.passages == report.embedded == total - 6  # nothing done twice
        _assert_vectors_are(store, int8_embedder, not_from=embedder)
        assert Retriever(store, int8_embedder).search(MARKER, 1)[0].path.endswith("marker.md")


def test_going_back_to_the_current_model_drops_a_move_under_way(
    tmp_path: Path, embedder, int8_embedder
) -> None:  # type: ignore[no-untyped-def]
    docs = _docs(tmp_path / "docs")
    with Store.open(tmp_path / "index.db") as store:
        Indexer(store, embedder).index([docs])
        with pytest.raises(_Interrupted):
            reembed(store, _StopsAfter(int8_embedder, calls=1), batch=3)
        assert not reembed(store, embedder).switched
        assert store.reembed_target() is None
        assert store.model_identity() == _identity(embedder)
        _assert_vectors_are(store, embedder)


def test_passages_added_meanwhile_by_another_process_are_reembedded_too(
    tmp_path: Path, embedder, int8_embedder
) -> None:  # type: ignore[no-untyped-def]
    docs = _docs(tmp_path / "docs")
    db = tmp_path / "index.db"
    late = docs / "late.md"

    class AddsAFileOnce(CountingEmbedder):
        def embed_passages(self, texts):  # type: ignore[no-untyped-def]
            if not late.exists():  # a watcher still on the float32 model writes meanwhile
                late.write_text("# Late\n\nThe ferry timetable changes on the first of May.\n")
                with Store.open(db, create=False) as other:
                    Indexer(other, embedder).index([docs])
            return super().embed_passages(texts)

    with Store.open(db) as store:
        Indexer(store, embedder).index([docs])
        report = reembed(store, AddsAFileOnce(int8_embedder), batch=4)
        assert report.switched
        assert store.document(str(late)) is not None
        _assert_vectors_are(store, int8_embedder, not_from=embedder)
        hit = Retriever(store, int8_embedder).search("when does the ferry timetable change", 1)
        assert hit[0].path == str(late)


def test_a_writer_still_on_the_old_model_cannot_add_its_vectors_after_the_switch(
    tmp_path: Path, embedder, int8_embedder
) -> None:  # type: ignore[no-untyped-def]
    """A long-running writer (a watcher) bound the float32 model before another process moved
    the index to int8: its next file is refused whole, so no float32 vector joins the index."""
    docs = _docs(tmp_path / "docs")
    db = tmp_path / "index.db"
    with Store.open(db) as watcher_store:
        old_writer = Indexer(watcher_store, embedder)
        old_writer.index([docs])
        with Store.open(db, create=False) as other:
            assert reembed(other, int8_embedder).switched
        late = docs / "late.md"
        late.write_text("# Late\n\nThe ferry timetable changes on the first of May.\n")
        with pytest.raises(IndexModelChanged, match="moved to embedding model") as refused:
            old_writer.update([str(late)])
        assert refused.value.current == _identity(int8_embedder)
        assert watcher_store.document(str(late)) is None
        _assert_vectors_are(watcher_store, int8_embedder, not_from=embedder)
        # Reusing vectors already in the index is no harm: an unchanged file is fine.
        assert old_writer.update([str(docs / "marker.md")])[0].failed == 0


@pytest.fixture
def short_embedder(models_root: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """MiniLM told to read at most 64 tokens: another model, whose passages are shorter."""
    folder = link_model_copy(models_root / "embedders" / "all-MiniLM-L6-v2", tmp_path / "short")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    (folder / MANIFEST_FILE).unlink()
    manifest.update(name="short-minilm", max_seq_length=64)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return load_embedder(folder)


def test_files_with_passages_too_long_for_the_new_model_are_cut_again(
    tmp_path: Path, embedder, short_embedder
) -> None:  # type: ignore[no-untyped-def]
    docs = _docs(tmp_path / "docs")
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([docs])
        report = reembed(store, short_embedder)
        assert report.switched and report.recut_documents >= 1
        # Until the pass below, the long passages answer with the new model's truncated view.
        _assert_vectors_are(store, short_embedder)
        passes = Indexer(store, short_embedder).index([docs])
        assert passes.updated == report.recut_documents
    # The same index a fresh run with the short model makes, passage for passage.
    assert_matches_fresh_index(db, docs, short_embedder, tmp_path)


def test_a_passage_whose_text_cannot_be_rebuilt_is_cut_again_not_misfiled(
    tmp_path: Path, embedder, int8_embedder
) -> None:  # type: ignore[no-untyped-def]
    """The rebuilt text must hash to the stored key; otherwise its file is read again."""
    docs = _docs(tmp_path / "docs")
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([docs])
        with store.transaction() as conn:  # a row whose heading no longer matches its hash
            conn.execute(
                "UPDATE chunks SET heading = '' WHERE id = "
                "(SELECT min(id) FROM chunks WHERE heading != '')"
            )
        report = reembed(store, int8_embedder)
        assert report.switched and report.recut_documents == 1
        stale = store.db.execute(
            "SELECT count(*) FROM embeddings WHERE text_hash LIKE 'stale:%'"
        ).fetchone()[0]
        assert stale == 1
        Indexer(store, int8_embedder).index([docs])
    assert_matches_fresh_index(db, docs, int8_embedder, tmp_path)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_index_reembed_command(
    tmp_path: Path, int8_models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(int8_models_root))
    docs = _docs(tmp_path / "docs")
    assert _run("index", str(docs))[0] == 0
    code, out = _run("search", MARKER, "--embedder", "all-MiniLM-L6-v2-int8")
    assert code == 1 and "--reembed --embedder all-MiniLM-L6-v2-int8" in out

    code, out = _run("index", "--reembed", "--embedder", "all-MiniLM-L6-v2-int8")
    assert code == 0, out
    assert "the index now uses sentence-transformers/all-MiniLM-L6-v2-int8" in out
    assert "7 unchanged" in out
    code, out = _run("search", MARKER, "--embedder", "all-MiniLM-L6-v2-int8", "-k", "1")
    assert code == 0 and "marker.md" in out
    code, out = _run("index", "--reembed", "--embedder", "all-MiniLM-L6-v2-int8")
    assert code == 0 and "already uses" in out
    code, out = _run("status", "--json")
    assert json.loads(out)["model"]["name"].endswith("-int8")
    # From then on every command uses the index's own model without being told...
    code, out = _run("search", MARKER, "-k", "1")
    assert code == 0 and "marker.md" in out
    (docs / "late.md").write_text("# Late\n\nThe late delivery arrived on Thursday.\n")
    code, out = _run("index")
    assert code == 0 and "1 added" in out, out
    # ...but one named on the command line is still checked against the index,
    code, out = _run("search", MARKER, "--embedder", "all-MiniLM-L6-v2")
    assert code == 1 and "was built with embedding model" in out
    # and an index whose model is not installed here says which model it needs.
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(int8_models_root / "nothing-here"))
    code, out = _run("search", MARKER)
    needed = "built with embedding model sentence-transformers/all-MiniLM-L6-v2-int8"
    assert code == 1 and needed in out


def test_the_app_and_the_mcp_tools_follow_an_index_moved_while_they_run(
    tmp_path: Path,
    embedder,  # type: ignore[no-untyped-def]
    int8_embedder,
    int8_models_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`index --reembed` in another process: the next question uses the new model."""
    from localrag.assistant import Assistant
    from localrag.mcp_server import IndexTools

    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(int8_models_root))
    docs = _docs(tmp_path / "docs")
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([docs])
    assistant = Assistant(db, embedder=embedder)
    assistant.open()
    tools = IndexTools(db, embedder, use_model=False)
    try:
        assert tools.search(MARKER, k=1)["results"][0]["path"].endswith("marker.md")
        with Store.open(db) as other:
            assert reembed(other, int8_embedder).switched
        answer = assistant.ask(MARKER, None, search_only=True)
        assert answer.sources[0].path.endswith("marker.md")
        assert assistant.embedder is not None
        assert _identity(assistant.embedder) == _identity(int8_embedder)
        assert tools.search(MARKER, k=1)["results"][0]["path"].endswith("marker.md")
        assert _identity(tools.embedder) == _identity(int8_embedder)
    finally:
        tools.close()
        assistant.close()
    # Opened after the move with the old model named: refused, not switched behind the user.
    stale = Assistant(db, embedder=embedder)
    stale.open()
    stale_tools = IndexTools(db, embedder, use_model=False)
    try:
        with pytest.raises(ModelMismatchError, match="was built with embedding model"):
            stale.ask(MARKER, None, search_only=True)
        with pytest.raises(ModelMismatchError, match="was built with embedding model"):
            stale_tools.search(MARKER, k=1)
        assert stale.embedder is embedder and stale_tools.embedder is embedder
    finally:
        stale_tools.close()
        stale.close()


def _many_files(root: Path, count: int) -> None:
    root.mkdir()
    for i in range(count):
        paragraphs = [
            f"Survey {i}, plot {p}: volunteers counted {i * 11 + p} oak seedlings and noted "
            f"deer browsing on {p + 2} of them near transect {i % 7}. " * 3
            for p in range(3)
        ]
        (root / f"survey-{i:03}.md").write_text(f"# Survey {i}\n\n" + "\n\n".join(paragraphs))


def _reembedded_so_far(db: Path) -> int:
    with Store.open(db, create=False, read_only=True) as store:
        if store.reembed_target() is None:
            return -1  # finished (or not started)
        return store.reembed_counts()[0]


@pytest.mark.slow
def test_a_killed_reembed_run_resumes(
    tmp_path: Path, int8_models_root: Path, embedder, int8_embedder
) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    _many_files(docs, 60)
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([docs])
        total = store.stats().embeddings
    env = dict(os.environ, LOCALRAG_MODELS_DIR=str(int8_models_root), LOCALRAG_DB=str(db))
    command = [sys.executable, "-m", "localrag", "index", "--embedder", "all-MiniLM-L6-v2-int8"]
    proc = subprocess.Popen(
        [*command, "--reembed", "--embed-batch", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while _reembedded_so_far(db) < 8:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "re-embedding made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    with Store.open(db, create=False) as store:
        assert store.integrity_check() == "ok"
        done = store.reembed_counts()[0]
        assert 8 <= done < total
        # The killed run left the float32 index whole: it opens and answers.
        assert store.model_identity() == _identity(embedder)
        hits = Retriever(store, embedder).search("deer browsing on oak seedlings", 3)
        assert hits and hits[0].path.startswith(str(docs))

    # The next run, even without --reembed, finishes the move it finds under way.
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"Re-embedded {total - done} passages" in finished.stdout
    assert f"({done} by an earlier run)" in finished.stdout
    with Store.open(db, create=False) as store:
        assert store.model_identity() == _identity(int8_embedder)
        _assert_vectors_are(store, int8_embedder, not_from=embedder)
        hits = Retriever(store, int8_embedder).search("Survey 42, plot 1", 3)
        assert any(h.path.endswith("survey-042.md") for h in hits)
