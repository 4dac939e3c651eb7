"""Saved conversations in the knowledge base, and the store's passage-neighbours query."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlean as sqlite3
import sqlite_vec

from localrag.answer import Answerer, Conversation, Source, Turn
from localrag.conversations import (
    ConversationSummary,
    SavedTurn,
    decode_sources,
    delete_conversation,
    list_conversations,
    load_conversation,
    save_turn,
    saved_turn,
    start_conversation,
    title_for,
    to_conversation,
)
from localrag.embedder import Embedder
from localrag.errors import LocalragError, StoreError
from localrag.indexer import Indexer
from localrag.prompt import Passage
from localrag.retrieval import SearchResult
from localrag.store import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, ChunkHit, Store
from tests.helpers.store import pending_document, vectors_for


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "kb.db") as s:
        yield s


def _source(
    number: int, vector_score: float | None = 0.61, keyword_score: float | None = None
) -> Source:
    chunk = ChunkHit(
        chunk_id=40 + number,
        document_id=7,
        path="/docs/manual.pdf",
        ordinal=number,
        text=f"Passage {number}: the café opens at 8 — «quoted»",
        heading="Hours > Weekdays",
        line_start=None,
        line_end=None,
        page_start=3,
        page_end=4,
        char_start=100 * number,
        char_end=100 * number + 50,
        embedding_id=900 + number,
    )
    result = SearchResult(
        rank=number,
        score=0.0325 / number,
        chunk=chunk,
        vector_score=vector_score,
        keyword_score=keyword_score,
        also_in=["/docs/copy.pdf"] if number == 1 else [],
    )
    passage = Passage("docs/manual.pdf", result.location, chunk.heading, chunk.text[:20])
    return Source(number, result, passage)


def _turn(question: str = "When does the café open?", **fields: object) -> SavedTurn:
    values: dict[str, object] = {
        "question": question,
        "answer": "At 8 [1].",
        "mode": "generated",
        "search_query": question,
        "sources": [_source(1), _source(2, vector_score=None, keyword_score=3.5)],
        "cited": [1],
        "stopped": False,
        "created_at": 1000.0,
    }
    values.update(fields)
    return SavedTurn(**values)  # type: ignore[arg-type]


# -- storing and loading ------------------------------------------------------------------------


def test_a_turn_with_full_sources_round_trips(store: Store) -> None:
    conversation_id = start_conversation(store, "When does the café open?")
    first = _turn(created_at=1000.0)
    # Scores straight from numpy are not JSON numbers; they must still be stored.
    numpy_scores = _source(3, vector_score=np.float32(0.75))  # type: ignore[arg-type]
    second = _turn(
        "and on Sundays?",
        answer="It is clo",
        mode="extractive",
        search_query="When does the café open? and on Sundays?",
        sources=[numpy_scores],
        cited=[],
        stopped=True,
        created_at=1001.5,
    )
    save_turn(store, conversation_id, first)
    save_turn(store, conversation_id, second)

    summary, turns = load_conversation(store, conversation_id)
    assert turns == [first, second]
    assert turns[0].sources[1].result.vector_score is None
    assert turns[0].sources[1].result.keyword_score == 3.5
    assert turns[0].sources[0].result.also_in == ["/docs/copy.pdf"]
    assert turns[0].sources[0].location == "pp. 3-4"
    assert turns[1].stopped is True
    assert turns[1].sources[0].result.vector_score == pytest.approx(0.75)
    assert summary.title == "When does the café open?"
    assert summary.turns == 2
    assert summary.updated_at == 1001.5


def test_conversations_are_listed_most_recently_used_first_with_turn_counts(
    store: Store,
) -> None:
    old = store.create_conversation("old", now=100.0)
    middle = store.create_conversation("middle", now=200.0)
    new = store.create_conversation("new", now=300.0)
    assert [c.id for c in list_conversations(store)] == [new, middle, old]

    save_turn(store, old, _turn(created_at=400.0))
    save_turn(store, old, _turn(created_at=401.0))
    save_turn(store, middle, _turn(created_at=350.0))
    listed = list_conversations(store)
    assert listed == [
        ConversationSummary(old, "old", 100.0, 401.0, 2),
        ConversationSummary(middle, "middle", 200.0, 350.0, 1),
        ConversationSummary(new, "new", 300.0, 300.0, 0),
    ]
    assert [c.id for c in list_conversations(store, limit=2)] == [old, middle]


def test_turns_keep_their_order_and_get_consecutive_ordinals(store: Store) -> None:
    conversation_id = store.create_conversation("t", now=1.0)
    questions = [f"question {i}" for i in range(5)]
    for i, question in enumerate(questions):
        save_turn(store, conversation_id, _turn(question, created_at=10.0 - i))  # clock skew
    rows = store.turn_rows(conversation_id)
    assert [r.ordinal for r in rows] == [0, 1, 2, 3, 4]
    _, turns = load_conversation(store, conversation_id)
    assert [t.question for t in turns] == questions


def test_the_newest_turn_bumps_updated_at_but_not_created_at(store: Store) -> None:
    conversation_id = store.create_conversation("t", now=50.0)
    assert store.append_turn(
        conversation_id,
        question="q",
        answer="a",
        mode="generated",
        search_query="q",
        sources_json='{"v": 1, "sources": []}',
        cited_json="[]",
        stopped=False,
        now=75.0,
    )
    row = store.conversation_row(conversation_id)
    assert row is not None and (row.created_at, row.updated_at, row.turns) == (50.0, 75.0, 1)


def test_deleting_a_conversation_deletes_its_turns_only(store: Store) -> None:
    doomed = start_conversation(store, "doomed")
    kept = start_conversation(store, "kept")
    save_turn(store, doomed, _turn())
    save_turn(store, doomed, _turn())
    save_turn(store, kept, _turn())

    assert delete_conversation(store, doomed) is True
    count = "SELECT count(*) FROM turns WHERE conversation_id = ?"
    assert store.db.execute(count, (doomed,)).fetchone()[0] == 0
    assert store.db.execute(count, (kept,)).fetchone()[0] == 1
    assert [c.id for c in list_conversations(store)] == [kept]
    assert delete_conversation(store, doomed) is False
    with pytest.raises(LocalragError, match=f"no saved conversation with id {doomed}"):
        load_conversation(store, doomed)


def test_unknown_conversation_ids_are_errors_and_write_nothing(store: Store) -> None:
    with pytest.raises(StoreError, match="no saved conversation with id 999"):
        save_turn(store, 999, _turn())
    assert store.db.execute("SELECT count(*) FROM turns").fetchone()[0] == 0
    assert not store.db.in_transaction  # the failed write was rolled back, not left open
    with pytest.raises(LocalragError, match="no saved conversation with id 999"):
        load_conversation(store, 999)
    assert store.conversation_row(999) is None
    assert store.rename_conversation(999, "x") is False


def test_rename_changes_the_title_only(store: Store) -> None:
    conversation_id = store.create_conversation("before", now=5.0)
    assert store.rename_conversation(conversation_id, "after") is True
    assert store.conversation_row(conversation_id) == store.conversation_rows()[0]
    row = store.conversation_row(conversation_id)
    assert row is not None and (row.title, row.updated_at) == ("after", 5.0)


def test_to_conversation_gives_follow_ups_their_history() -> None:
    turns = [_turn("first?", answer="one"), _turn("second?", answer="two", search_query="s2")]
    conversation = to_conversation(turns)
    assert isinstance(conversation, Conversation)
    assert conversation.history(4) == [("first?", "one"), ("second?", "two")]
    assert conversation.turns[1] == Turn("second?", "two", "s2", turns[1].sources)
    conversation.clear()  # the live conversation's list is its own, not the saved turn's
    assert len(turns) == 2


# -- titles -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "title"),
    [
        ("How long is parental leave?", "How long is parental leave?"),
        ("  What\tdoes   the\u00a0VPN do?  ", "What does the VPN do?"),
        ("\n\nFirst line here\nsecond line ignored", "First line here"),
        (
            "Which of the backup tapes are rotated every quarter and who signs the log afterwards?",
            "Which of the backup tapes are rotated every quarter and who…",
        ),
        (  # the limit falls inside "whoever": the whole word goes
            "Which of the backup tapes are rotated every quarter and whoever signs the log?",
            "Which of the backup tapes are rotated every quarter and…",
        ),
        ("x" * 80, "x" * 59 + "…"),
        ("a" * 60, "a" * 60),
        ("   \n  ", "Untitled conversation"),
    ],
)
def test_title_for(question: str, title: str) -> None:
    assert title_for(question) == title
    assert len(title_for(question)) <= 60


def test_title_cut_drops_trailing_punctuation_before_the_ellipsis() -> None:
    title = title_for("Tell me about the reimbursement rules, the approval chain, and exceptions")
    assert title == "Tell me about the reimbursement rules, the approval chain…"


# -- corrupt or partial stored JSON -------------------------------------------------------------


def test_a_corrupt_sources_value_loads_as_a_turn_without_sources(store: Store) -> None:
    conversation_id = start_conversation(store, "q")
    save_turn(store, conversation_id, _turn("broken"))
    save_turn(store, conversation_id, _turn("fine"))
    broken_id = store.turn_rows(conversation_id)[0].id
    store.db.execute(
        "UPDATE turns SET sources = '{\"v\": 1, \"sources\": [{trunc', cited = 'nope' WHERE id = ?",
        (broken_id,),
    )
    _, turns = load_conversation(store, conversation_id)
    assert turns[0].question == "broken" and turns[0].answer == "At 8 [1]."
    assert turns[0].sources == [] and turns[0].cited == []
    assert turns[1] == _turn("fine")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "null",
        "[1, 2]",
        '{"v": 99, "sources": []}',  # from a newer localrag
        '{"v": 1}',
        '{"v": 1, "sources": [{"number": 1}]}',  # no chunk
        '{"v": 1, "sources": [{"number": "one", "chunk": {"path": "/a", "text": "t"}}]}',
        '{"v": 1, "sources": [null]}',
    ],
)
def test_unreadable_sources_decode_to_none(raw: str) -> None:
    assert decode_sources(raw) == []


def test_missing_optional_fields_get_neutral_defaults() -> None:
    raw = json.dumps({"v": 1, "sources": [{"number": 2, "chunk": {"path": "/a.md", "text": "t"}}]})
    [source] = decode_sources(raw)
    assert source.number == 2
    assert source.path == "/a.md"
    assert source.result.rank == 2
    assert source.result.vector_score is None and source.result.also_in == []
    assert source.result.chunk.char_end == 1
    assert source.passage == Passage("/a.md", "chars 0-1", "", "t")


# -- passages around a passage ------------------------------------------------------------------


def test_chunk_neighbours_stay_inside_the_document_and_in_order(store: Store) -> None:
    store.bind_embedder("test-model", 8, "0" * 64)
    root = store.add_root("/docs")
    texts = ["a0", "a1", "a2", "a3"]
    # Another file's chunks sit right next to a.txt's ids and ordinals: they must not leak in.
    store.replace_document(
        pending_document("/docs/0.txt", root.id, ["z0", "z1"]), vectors_for(["z0", "z1"])
    )
    store.replace_document(pending_document("/docs/a.txt", root.id, texts), vectors_for(texts))
    store.replace_document(
        pending_document("/docs/b.txt", root.id, ["b0", "b1"]), vectors_for(["b0", "b1"])
    )
    ids = {text: chunk_id for chunk_id, text in store.db.execute("SELECT id, text FROM chunks")}

    def texts_around(text: str, before: int = 1, after: int = 1) -> list[str]:
        return [h.text for h in store.chunk_neighbours(ids[text], before, after)]

    assert texts_around("a0") == ["a0", "a1"]
    assert texts_around("a1") == ["a0", "a1", "a2"]
    assert texts_around("a3") == ["a2", "a3"]
    assert texts_around("a2", before=2, after=0) == ["a0", "a1", "a2"]
    assert texts_around("a1", before=0, after=5) == ["a1", "a2", "a3"]
    assert texts_around("a2", before=0, after=0) == ["a2"]

    [middle] = [h for h in store.chunk_neighbours(ids["a1"]) if h.text == "a1"]
    assert middle == store.chunk_hits([ids["a1"]])[ids["a1"]]
    assert (middle.path, middle.ordinal, middle.line_start, middle.heading) == (
        "/docs/a.txt",
        1,
        2,
        "H",
    )

    store.delete_documents(["/docs/a.txt"])
    assert store.chunk_neighbours(ids["a1"]) == []
    assert texts_around("b0") == ["b0", "b1"]


# -- an older database ----------------------------------------------------------------------------


def test_a_version_1_database_with_documents_is_migrated_and_keeps_them(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(str(path), isolation_level=None)
    db.enable_load_extension(True)
    sqlite_vec.load(db)
    db.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[0]}\nPRAGMA user_version = 1;\nCOMMIT;")
    vector = np.ones(8, dtype=np.float32).tobytes()
    db.executescript(
        "CREATE VIRTUAL TABLE embedding_bits USING vec0(embedding bit[8]);"
        "INSERT INTO meta(key, value) VALUES "
        '(\'embedder\', \'{"name": "m", "dim": 8, "fingerprint": "f"}\');'
        "INSERT INTO roots(id, path, added_at) VALUES (1, '/docs', 0);"
        "INSERT INTO documents(id, path, root_id, size, mtime_ns, status, chunk_count, "
        "indexed_at) VALUES (1, '/docs/old.txt', 1, 10, 1, 'indexed', 2, 0);"
    )
    db.execute("INSERT INTO embeddings(id, text_hash, vector) VALUES (1, 'h', ?)", (vector,))
    db.execute(
        "INSERT INTO embedding_bits(rowid, embedding) VALUES (1, vec_quantize_binary(?))",
        (vector,),
    )
    for ordinal, text in enumerate(["ancient penguin", "second passage"]):
        db.execute(
            "INSERT INTO chunks(id, document_id, ordinal, text, char_start, char_end, "
            "token_count, embedding_id) VALUES (?, 1, ?, ?, 0, 5, 2, 1)",
            (ordinal + 1, ordinal, text),
        )
    db.close()

    with Store.open(path, create=False) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        assert store.db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
        assert {"conversations", "turns", "documents", "chunks"} <= tables
        old = store.document("/docs/old.txt")
        assert old is not None and old.chunk_count == 2
        assert [i for i, _ in store.fts_search('"penguin"', 5)] == [1]
        assert store.knn_candidates(np.ones(8, dtype=np.float32), 1) == [1]
        assert [h.text for h in store.chunk_neighbours(1)] == ["ancient penguin", "second passage"]
        assert store.model_identity() == {"name": "m", "dim": 8, "fingerprint": "f"}
        conversation_id = start_conversation(store, "after the upgrade")
        save_turn(store, conversation_id, _turn())
        assert store.integrity_check() == "ok"
    with Store.open(path, create=False) as store:  # no second migration on reopening
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert load_conversation(store, conversation_id)[1] == [_turn()]


# -- with a real answer ---------------------------------------------------------------------------

HANDBOOK = {
    "it/vpn.md": "# Remote access\n\nConnect to the office network from home with the "
    "WireGuard client; install the profile sent by the help desk. The VPN disconnects "
    "after twelve hours.",
    "facilities/parking.md": "# Car park\n\nStaff cars go on levels two and three; level one "
    "is for visitors and deliveries. Bicycles are stored in the basement.",
    "security/backups.md": "# Backups\n\nBackup tapes are rotated every quarter. The "
    "operations lead checks the rotation log and signs it.",
}


def test_a_real_extractive_answer_round_trips_and_its_follow_ups_work(
    tmp_path: Path,
    embedder: Embedder,
) -> None:
    folder = tmp_path / "handbook"
    for rel, text in HANDBOOK.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    with Store.open(tmp_path / "index.db") as store:
        Indexer(store, embedder).index([folder])
        answerer = Answerer(store, embedder)
        question = "How do I reach the office network from home?"
        answer = answerer.ask(question)
        answer.read()
        assert answer.mode == "extractive" and answer.sources

        turn = saved_turn(answer)
        assert turn.answer == answer.text and "WireGuard" in turn.answer
        assert turn.cited == [s.number for s in answer.sources]
        assert turn.sources == answer.sources
        conversation_id = start_conversation(store, question)
        save_turn(store, conversation_id, turn)

        # The file goes away: the saved answer still shows what it was based on.
        store.delete_documents([str(folder / "it" / "vpn.md")])
        assert store.chunk_neighbours(answer.sources[0].result.chunk.chunk_id) == []

    with Store.open(tmp_path / "index.db", create=False) as store:
        summary, turns = load_conversation(store, conversation_id)
        assert summary.title == question and summary.turns == 1
        assert turns == [turn]
        assert turns[0].sources[0].result.chunk.text.startswith("Connect to the office network")

        # Reopened, the conversation still resolves a follow-up against its first question.
        conversation = to_conversation(turns)
        follow_up = Answerer(store, embedder).ask("and where do staff park?", conversation)
        follow_up.read()
        assert question in follow_up.search_query
        assert len(conversation.turns) == 2
