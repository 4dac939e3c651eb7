"""The answer pipeline on a real index, without a language model and with a real tiny GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from localrag.answer import NO_MODEL_HINT, NOT_FOUND_TEXT, Answerer, Conversation
from localrag.indexer import Indexer
from localrag.store import Store

HANDBOOK = {
    "hr/leave.md": "# Parental leave\n\nNew parents may take up to twenty weeks away from work "
    "with full pay after the birth or adoption of a child. Tell your manager eight weeks "
    "before the leave starts.",
    "it/vpn.md": "# Remote access\n\nConnect to the office network from home with the "
    "WireGuard client; install the profile sent by the help desk. The VPN disconnects "
    "after twelve hours.",
    "finance/travel.md": "# Reimbursement\n\nSubmit receipts for taxis, trains and hotels "
    "within thirty days to be paid back. Flights need approval from finance first.",
    "facilities/parking.md": "# Car park\n\nStaff cars go on levels two and three; level one "
    "is for visitors and deliveries. Bicycles are stored in the basement.",
    "security/backups.md": "# Backups\n\nBackup tapes are rotated every quarter. The "
    "operations lead checks the rotation log and signs it. Tapes are kept offsite for seven "
    "years.",
}


def write_handbook(folder: Path, extra: dict[str, str] | None = None) -> Path:
    for rel, text in {**HANDBOOK, **(extra or {})}.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


@pytest.fixture(scope="module")
def handbook_db(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("handbook")
    folder = write_handbook(work / "handbook")
    db = work / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([folder])
    return db


@pytest.fixture
def store(handbook_db: Path):  # type: ignore[no-untyped-def]
    with Store.open(handbook_db, create=False) as s:
        yield s


# -- without a language model -------------------------------------------------------------------


def test_extractive_mode_shows_passages_with_sources_and_a_hint(store, embedder) -> None:  # type: ignore[no-untyped-def]
    answer = Answerer(store, embedder).ask("How long can new parents stay at home?")
    text = answer.read()
    assert answer.mode == "extractive"
    assert answer.hint == NO_MODEL_HINT
    assert answer.sources[0].path.endswith("hr/leave.md")
    assert answer.sources[0].location == "line 3"  # the heading is in the chunk's section
    assert "[1] handbook/hr/leave.md (line 3)" in text
    assert "twenty weeks" in text
    assert [s.number for s in answer.cited] == [s.number for s in answer.sources]


def test_nothing_relevant_says_so(store, embedder) -> None:  # type: ignore[no-untyped-def]
    answer = Answerer(store, embedder).ask("Who won the football world cup in 1998?")
    assert answer.read() == NOT_FOUND_TEXT
    assert answer.mode == "not_found"
    assert answer.sources == []


def test_collection_questions_are_answered_from_the_index(store, embedder) -> None:  # type: ignore[no-untyped-def]
    answer = Answerer(store, embedder).ask("Which files mention tapes?")
    text = answer.read()
    assert answer.mode == "collection"
    assert answer.collection is not None and answer.collection.count == 1
    assert "backups.md" in text
    assert [s.path.rsplit("/", 1)[-1] for s in answer.sources] == ["backups.md"]


def test_follow_up_is_searched_together_with_the_previous_question(store, embedder) -> None:  # type: ignore[no-untyped-def]
    answerer = Answerer(store, embedder)
    follow_up = "and how long does it stay connected?"
    alone = answerer.ask(follow_up)
    alone.read()
    conversation = Conversation()
    answerer.ask("How do I reach the office network from home?", conversation).read()
    answer = answerer.ask(follow_up, conversation)
    answer.read()
    assert answer.sources[0].path.endswith("it/vpn.md")
    assert "office network" in answer.search_query
    # The follow-up alone is about nothing in particular: the conversation made the difference.
    assert alone.mode == "not_found" or not alone.sources[0].path.endswith("it/vpn.md")
    assert [t.question for t in conversation.turns][-1] == follow_up
    assert len(conversation.turns) == 2


def test_a_new_topic_in_a_conversation_still_finds_its_own_sources(store, embedder) -> None:  # type: ignore[no-untyped-def]
    answerer = Answerer(store, embedder)
    conversation = Conversation()
    answerer.ask("How do I reach the office network from home?", conversation).read()
    answer = answerer.ask("Where do staff park their cars?", conversation)
    answer.read()
    assert answer.sources[0].path.endswith("facilities/parking.md")
