"""Incremental indexing on real files with the real embedder and a real SQLite file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import localrag.indexer as indexer_module
from localrag.config import IndexSettings
from localrag.errors import ConfigError, ModelMismatchError
from localrag.indexer import Indexer, IndexEvent
from localrag.retrieval import Retriever, Stages
from localrag.store import Store
from tests.conftest import CountingEmbedder
from tests.helpers.corpus import make_docx, make_pdf, write_tree


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with Store.open(tmp_path / "index.db") as s:
        yield s


def snapshot(store: Store) -> set[tuple[str, str, int | None, int | None]]:
    """What a user can observe: every chunk's file, text and position."""
    rows = store.db.execute(
        "SELECT d.path, c.text, c.line_start, c.page_start FROM chunks c "
        "JOIN documents d ON d.id = c.document_id"
    )
    return {tuple(r) for r in rows}


def test_indexes_a_mixed_folder_with_provenance(tmp_path, store, counting_embedder):
    docs = tmp_path / "docs"
    files = write_tree(docs)
    report = Indexer(store, counting_embedder).index([docs])

    assert report.added == len(files)
    assert report.failed == 0
    stats = store.stats()
    assert stats.indexed == len(files)
    assert stats.chunks == counting_embedder.passages  # every distinct passage embedded once
    results = Retriever(store, counting_embedder).search("how often should I water tomatoes", 3)
    top = results[0]
    assert top.path == str(files["notes.md"])
    assert top.chunk.heading == "Garden notes > Tomatoes"
    assert top.chunk.line_start == 5  # "Tomatoes need at least six hours…" is on line 5


def test_unchanged_rerun_embeds_and_parses_nothing(tmp_path, store, counting_embedder):
    docs = tmp_path / "docs"
    write_tree(docs)
    Indexer(store, counting_embedder).index([docs])
    before = snapshot(store)
    counting_embedder.passages = 0

    parsed: list[Path] = []
    real_parse = indexer_module.parse_file

    def spy(path: Path, data: bytes):  # type: ignore[no-untyped-def]
        parsed.append(path)
        return real_parse(path, data)

    indexer_module.parse_file = spy  # type: ignore[assignment]
    try:
        report = Indexer(store, counting_embedder).index([docs])
    finally:
        indexer_module.parse_file = real_parse  # type: ignore[assignment]
    assert counting_embedder.passages == 0
    assert parsed == []
    assert report.unchanged == 5 and report.changed == 0
    assert snapshot(store) == before


def test_touched_file_with_same_content_is_not_reembedded(tmp_path, store, counting_embedder):
    docs = tmp_path / "docs"
    files = write_tree(docs)
    Indexer(store, counting_embedder).index([docs])
    counting_embedder.passages = 0
    os.utime(files["notes.md"], ns=(1, 1_000_000_000))

    report = Indexer(store, counting_embedder).index([docs])
    assert counting_embedder.passages == 0
    assert report.unchanged == 5
    assert store.document(str(files["notes.md"])).mtime_ns == 1_000_000_000


def test_edit_reembeds_only_changed_chunks(tmp_path, store, counting_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    sections = [
        f"## Section {i}\n\n" + f"Paragraph about topic number {i}. " * 30 for i in range(6)
    ]
    big = docs / "big.md"
    big.write_text("# Big\n\n" + "\n\n".join(sections), encoding="utf-8")
    Indexer(store, counting_embedder).index([docs])
    chunks_before = store.stats().chunks
    assert chunks_before >= 6
    counting_embedder.passages = 0

    sections[2] = "## Section 2\n\nThis section was rewritten about penguins in Antarctica."
    big.write_text("# Big\n\n" + "\n\n".join(sections), encoding="utf-8")
    report = Indexer(store, counting_embedder).index([docs])

    assert report.updated == 1
    assert 1 <= counting_embedder.passages < chunks_before
    results = Retriever(store, counting_embedder).search("penguins", 1, mode="keyword")
    assert "penguins" in results[0].chunk.text
    assert not store.db.execute(
        "SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH 'topic AND number AND 2'"
    ).fetchall()


def test_deleted_file_disappears_from_results(tmp_path, store, counting_embedder):
    docs = tmp_path / "docs"
    files = write_tree(docs)
    Indexer(store, counting_embedder).index([docs])
    files["recipes/lentil-soup.txt"].unlink()

    report = Indexer(store, counting_embedder).index([docs])
    assert report.deleted == 1
    retriever = Retriever(store, counting_embedder)
    for mode in ("hybrid", "keyword", "vector"):
        paths = {r.path for r in retriever.search("lentil soup recipe", 10, mode=mode)}
        assert str(files["recipes/lentil-soup.txt"]) not in paths
    # The soup's vectors are garbage-collected: only the remaining chunks' vectors stay.
    used = store.db.execute("SELECT count(DISTINCT embedding_id) FROM chunks").fetchone()[0]
    assert store.stats().embeddings == used


def test_renamed_and_moved_files_are_not_reembedded(tmp_path, store, counting_embedder):
    docs = tmp_path / "docs"
    files = write_tree(docs)
    Indexer(store, counting_embedder).index([docs])
    counting_embedder.passages = 0
    (docs / "archive").mkdir()
    files["notes.md"].rename(docs / "archive" / "garden.md")
    shutil.move(str(docs / "recipes"), str(docs / "archive" / "recipes"))

    report = Indexer(store, counting_embedder).index([docs])
    assert counting_embedder.passages == 0
    assert report.moved == 2
    assert report.deleted == 0
    paths = {r[0] for r in store.db.execute("SELECT path FROM documents")}
    assert str(docs / "archive" / "garden.md") in paths
    assert str(files["notes.md"]) not in paths
    hit = Retriever(store, counting_embedder).search("compost heap", 1)[0]
    assert hit.path == str(docs / "archive" / "garden.md")


def test_copied_file_reuses_vectors(tmp_path, store, counting_embedder):
    docs = tmp_path / "docs"
    files = write_tree(docs)
    Indexer(store, counting_embedder).index([docs])
    counting_embedder.passages = 0
    shutil.copy(files["notes.md"], docs / "notes-copy.md")

    report = Indexer(store, counting_embedder).index([docs])
    assert report.added == 1
    assert counting_embedder.passages == 0
    assert report.chunks_reused > 0
    # Search shows the passage once, naming the other file that holds it too.
    hit = Retriever(store, counting_embedder).search("tomatoes direct sun", 5)[0]
    assert {hit.path, *hit.also_in} == {str(files["notes.md"]), str(docs / "notes-copy.md")}


def test_pdf_and_docx_keep_pages_and_headings(tmp_path, store, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    filler = "The figures in this section were checked by the finance team. " * 8
    make_pdf(
        docs / "report.pdf",
        [
            "Quarterly report. Revenue grew modestly in the first quarter. " + filler,
            "The warehouse in Rotterdam was closed for renovation in March. " + filler,
            "Outlook: hiring will resume once the new office opens in Lisbon. " + filler,
        ],
    )
    make_docx(
        docs / "handbook.docx",
        "Onboarding",
        ["New staff receive a laptop and a security badge on their first morning."],
    )
    Indexer(store, embedder).index([docs])
    # Each stored passage's own page, not a result joined with its neighbours.
    retriever = Retriever(store, embedder, Stages(neighbour_runs=False))

    warehouse = retriever.search("Rotterdam warehouse renovation", 1)[0]
    assert warehouse.path.endswith("report.pdf")
    assert warehouse.chunk.page_start == 2
    assert warehouse.location == "p. 2"
    badge = retriever.search("security badge", 1)[0]
    assert badge.path.endswith("handbook.docx")
    assert badge.chunk.heading == "Onboarding"


def test_bad_inputs_are_recorded_and_never_stop_the_run(tmp_path, store, embedder, monkeypatch):
    docs = tmp_path / "docs"
    write_tree(docs)
    bad = docs / "bad"
    bad.mkdir()
    good_pdf = make_pdf(tmp_path / "good.pdf", ["Some text on a page."])
    (bad / "corrupt.pdf").write_bytes(good_pdf.read_bytes()[:300])
    _encrypted_pdf(good_pdf, bad / "secret.pdf")
    (bad / "latin.txt").write_bytes(bytes(range(128, 256)) * 20 + b"\x00\x81\x8d")
    (bad / "big.txt").write_text("word " * 5000)
    (bad / "blob.dat2").write_bytes(os.urandom(4000))
    (bad / "locked.txt").write_text("private")
    (bad / "dangling.md").symlink_to(bad / "does-not-exist.md")
    (bad / "loop").symlink_to(bad)
    (bad / "vanishing.txt").write_text("here one moment")

    if os.geteuid() == 0:
        # root reads any file, so the denial cannot be produced for real: fake the one call.
        real_read = indexer_module.read_regular_file

        def deny(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            if str(path).endswith("locked.txt"):
                raise PermissionError(13, "Permission denied", str(path))
            return real_read(path, *args, **kwargs)

        monkeypatch.setattr(indexer_module, "read_regular_file", deny)
    else:
        (bad / "locked.txt").chmod(0)

    def remove_after_scan(event: IndexEvent) -> None:
        if event.kind == "scanned":
            (bad / "vanishing.txt").unlink()  # really gone between the scan and the read

    settings = IndexSettings(max_file_bytes=10_000)
    report = Indexer(store, embedder, settings, on_event=remove_after_scan).index([docs])

    problems = {Path(p).name: (status, reason) for p, status, reason in store.problems()}
    assert problems["corrupt.pdf"][0] == "error"
    assert "pdf" in problems["corrupt.pdf"][1].lower()
    assert "encrypted" in problems["secret.pdf"][1]
    assert problems["big.txt"] == ("skipped", problems["big.txt"][1])
    assert "too big" in problems["big.txt"][1]
    assert problems["blob.dat2"][0] == "skipped" and "binary" in problems["blob.dat2"][1]
    assert problems["locked.txt"] == ("error", "permission denied")
    assert "broken symlink" in problems["dangling.md"][1]
    assert "loop" in problems["loop"][1]
    assert "vanishing.txt" not in problems
    assert "vanished while indexing" in dict((Path(p).name, r) for p, r in report.problems).get(
        "vanishing.txt", ""
    )
    # latin.txt is either decoded as legacy text or recorded, never a crash.
    assert "latin.txt" in problems or store.document(str(bad / "latin.txt")) is not None
    # The good files all made it.
    assert store.stats().indexed >= 5
    assert store.integrity_check() == "ok"


def _encrypted_pdf(source: Path, dest: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(str(source)).pages:
        writer.add_page(page)
    writer.encrypt(user_password="hunter2", owner_password="owner")
    with open(dest, "wb") as fh:
        writer.write(fh)


def test_fixed_file_leaves_the_error_list(tmp_path, store, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    broken = docs / "notes.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    Indexer(store, embedder).index([docs])
    assert [p for p, s, _ in store.problems() if s == "error"] == [str(broken)]

    broken.unlink()
    (docs / "notes.md").write_text("# Notes\n\nNow in markdown.\n")
    Indexer(store, embedder).index([docs])
    assert store.problems() == []


def test_ignore_rules_hidden_folders_and_database_inside_root(tmp_path, embedder):
    docs = tmp_path / "docs"
    write_tree(docs)
    (docs / ".git").mkdir()
    (docs / ".git" / "config.txt").write_text("hidden git internals")
    (docs / ".gitignore").write_text("build/\n*.log\n")
    (docs / "build").mkdir()
    (docs / "build" / "output.txt").write_text("generated file")
    (docs / "debug.log").write_text("log line")
    (docs / ".localragignore").write_text("private/\n")
    (docs / "private").mkdir()
    (docs / "private" / "diary.txt").write_text("my diary")
    (docs / "keep.log.txt").write_text("a kept text file")

    with Store.open(docs / "index.db") as store:  # the database lives inside the root
        Indexer(store, embedder, IndexSettings(extra_ignore=["code/"])).index([docs])
        Indexer(store, embedder).index([docs])  # its WAL now exists too; still ignored
        names = {Path(p).name for (p,) in store.db.execute("SELECT path FROM documents")}
    assert "keep.log.txt" in names and "notes.md" in names
    for ignored in (
        "config.txt",
        "output.txt",
        "debug.log",
        "diary.txt",
        "index.db",
        "index.db-wal",
    ):
        assert ignored not in names


def test_nested_roots_are_one_root(tmp_path, store, embedder):
    docs = tmp_path / "docs"
    write_tree(docs)
    Indexer(store, embedder).index([docs / "recipes"])
    Indexer(store, embedder).index([docs])
    assert [r.path for r in store.roots()] == [str(docs)]
    counts = store.db.execute("SELECT count(*), count(DISTINCT path) FROM documents").fetchone()
    assert counts[0] == counts[1] == 5


def test_missing_root_is_a_clear_error_and_keeps_the_index(tmp_path, store, embedder):
    docs = tmp_path / "docs"
    write_tree(docs)
    Indexer(store, embedder).index([docs])
    with pytest.raises(ConfigError, match=r"does not exist: .*nope"):
        Indexer(store, embedder).index([tmp_path / "nope"])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a file or folder"):
        Indexer(store, embedder).index([fifo])
    assert store.stats().indexed == 5


def test_a_file_is_a_root_of_its_own(tmp_path, store, embedder):
    """Its folder is never walked: not when it is added, refreshed or updated by the watcher."""
    docs = tmp_path / "docs"
    write_tree(docs)
    notes = docs / "notes.md"
    indexer = Indexer(store, embedder)
    report = indexer.index([notes])
    assert (report.files_seen, report.added) == (1, 1)
    assert [r.path for r in store.roots()] == [str(notes)]
    assert list(store.documents_in_root(store.roots()[0].id)) == [str(notes)]
    assert indexer.index([Path(r.path) for r in store.roots()]).unchanged == 1
    notes.write_text("# Notes\n\nThe heron nests by the weir every spring.\n")
    (docs / "beside.md").write_text("# Beside\n\nNot asked for.\n")
    report, left = indexer.update([str(notes), str(docs / "beside.md")])
    assert (report.updated, left) == (1, [])
    assert store.stats().indexed == 1  # the file beside it is outside every root
    notes.unlink()
    report, _ = indexer.update([str(notes)])
    assert report.problems == [(str(notes), "file is missing; its documents are kept")]


def test_a_different_model_is_a_clear_error(tmp_path, store, embedder):
    store.bind_embedder("sentence-transformers/other-model", 768, "f" * 64)
    with pytest.raises(ModelMismatchError) as info:
        Indexer(store, embedder)
    message = str(info.value)
    assert "other-model" in message and embedder.identity.name in message
    assert "--reembed" in message
    with pytest.raises(ModelMismatchError):
        Retriever(store, embedder)


# -- update: the watcher's entry point ----------------------------------------------------------


def test_update_handles_a_folder_move_as_moves(tmp_path, store, counting_embedder):
    root = tmp_path / "docs"
    write_tree(root)
    indexer = Indexer(store, counting_embedder)
    indexer.index([root])
    before = counting_embedder.passages
    (root / "recipes").rename(root / "cooking")
    report, left = indexer.update([str(root / "recipes"), str(root / "cooking")])
    assert left == []
    assert (report.moved, report.added, report.deleted) == (1, 0, 0)
    assert counting_embedder.passages == before
    assert store.document(str(root / "cooking" / "lentil-soup.txt")) is not None
    assert store.document(str(root / "recipes" / "lentil-soup.txt")) is None


def test_update_interrupted_returns_what_is_left(tmp_path, store, embedder):
    root = tmp_path / "docs"
    root.mkdir()
    indexer = Indexer(store, embedder)
    indexer.index([root])
    paths = []
    for i in range(6):
        path = root / f"note-{i}.md"
        path.write_text(f"# Note {i}\n\nNote {i} is about river number {i}.\n")
        paths.append(str(path))
    (root / "old.md").write_text("# Old\n\nAn old note.\n")
    indexer.update([str(root / "old.md")])
    (root / "old.md").unlink()

    asked = 0

    def after_two() -> bool:
        nonlocal asked
        asked += 1
        return asked >= 2

    report, left = indexer.update([*paths, str(root / "old.md")], interrupt=after_two)
    assert report.added == 2
    assert left[:4] == paths[2:]
    assert str(root / "old.md") in left  # a deletion waits: it may be a move still to come
    assert store.document(str(root / "old.md")) is not None
    report, left = indexer.update(left)
    assert (report.added, report.deleted, left) == (4, 1, [])

    with Store.open(tmp_path / "fresh.db") as fresh:
        Indexer(fresh, embedder).index([root])
        assert snapshot(store) == snapshot(fresh)


def test_update_keeps_documents_of_a_missing_root(tmp_path, store, embedder):
    root = tmp_path / "docs"
    write_tree(root)
    indexer = Indexer(store, embedder)
    indexer.index([root])
    count = store.stats().indexed
    shutil.move(str(root), str(tmp_path / "unmounted"))
    report, _ = indexer.update([str(root / "notes.md"), str(tmp_path / "outside.md")])
    assert report.problems == [(str(root), "folder is missing; its documents are kept")]
    assert store.stats().indexed == count


def test_vectors_collected_by_another_process_meanwhile_are_embedded_again(
    tmp_path, store, embedder
):
    """A watcher and an index run share one database: one may collect the orphaned vectors
    the other has just decided to reuse. The run re-embeds them instead of failing."""
    root = tmp_path / "docs"
    root.mkdir()
    text = "# Kept\n\nA paragraph whose vector is orphaned and then collected.\n"
    (root / "a.md").write_text(text)
    indexer = Indexer(store, embedder)
    indexer.index([root])
    (root / "a.md").unlink()
    indexer.update([str(root / "a.md")])  # deleted; its vector stays until garbage collection

    other = Store.open(tmp_path / "index.db")

    class CollectsWhileEmbedding(CountingEmbedder):
        def embed_passages(self, texts):  # type: ignore[no-untyped-def]
            other.collect_garbage()  # the other process, at the worst moment
            return super().embed_passages(texts)

    racing = Indexer(store, CollectsWhileEmbedding(embedder))
    (root / "b.md").write_text(text)  # same text: its vector would be reused
    (root / "c.md").write_text("# New\n\nSomething that needs embedding.\n")
    report, left = racing.update([str(root / "b.md"), str(root / "c.md")])
    other.close()
    assert (report.added, report.failed, left) == (2, 0, [])
    with Store.open(tmp_path / "fresh.db") as fresh:
        Indexer(fresh, embedder).index([root])
        assert snapshot(store) == snapshot(fresh)
    assert store.fts_search('"orphaned"', 1)


def test_update_interrupted_in_one_root_returns_the_other_roots_paths(tmp_path, store, embedder):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    indexer = Indexer(store, embedder)
    indexer.index([first, second])
    paths = []
    for folder in (first, second):
        for i in range(3):
            path = folder / f"note-{i}.md"
            path.write_text(f"# Note {i}\n\nAbout {folder.name} number {i}.\n")
            paths.append(str(path))
    report, left = indexer.update(paths, interrupt=lambda: True)
    assert report.added == 1
    assert left == paths[1:]  # nothing dropped, the second root's paths included
    report, left = indexer.update(left)
    assert (report.added, left) == (5, [])


@pytest.mark.parametrize(("size", "most"), [(1, 9), (20 * 1024 * 1024, 2)])
def test_files_are_prepared_ahead_up_to_a_count_and_a_byte_budget(size: int, most: int) -> None:
    """A few small files wait prepared, but only one large one: a run of 50 MB files must not
    hold eight files' passages in memory at once."""
    import threading
    import time

    from localrag.indexer import _prefetch

    prepared: list[str] = []
    lock = threading.Lock()

    def prepare(entry):  # type: ignore[no-untyped-def]
        with lock:
            prepared.append(entry.path)
        return entry.path

    entries = [indexer_module.FileEntry(f"/f{i}", size, 0) for i in range(20)]
    results = _prefetch(entries, prepare)  # type: ignore[arg-type]
    assert next(results) == "/f0"
    # The helper runs ahead as far as it may (the one taken, those waiting, one in its hand)...
    deadline = time.monotonic() + 30
    while len(prepared) < most + 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # ...and no further
    with lock:
        assert len(prepared) == most + 1
    assert list(results) == [f"/f{i}" for i in range(1, 20)]  # in order, none lost


def test_a_passage_size_too_small_to_chunk_is_refused_before_indexing(tmp_path, store, embedder):
    with pytest.raises(ConfigError, match="chunk_tokens must be at least 8"):
        Indexer(store, embedder, IndexSettings(chunk_tokens=4))
    small = Indexer(store, embedder, IndexSettings(chunk_tokens=8))
    assert small.chunk_tokens == 8
    huge = Indexer(store, embedder, IndexSettings(chunk_tokens=100_000))
    assert huge.chunk_tokens == embedder.max_tokens  # never past what the embedder takes
