"""Saved conversations: finished answers turned into stored turns, and stored turns back.

A turn keeps a snapshot of its sources (passage text included) as versioned JSON rather than
references to chunks: files change and chunks are deleted, and a reopened conversation must
still show what each answer was based on, and still resolve follow-up questions. The SQL lives
in localrag.store; the JSON format lives here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localrag.answer import Answer, Conversation, Source, Turn
from localrag.errors import LocalragError
from localrag.prompt import Passage
from localrag.retrieval import SearchResult
from localrag.store import ChunkHit, ConversationRow, TurnRow

if TYPE_CHECKING:
    from localrag.store import Store

SOURCES_VERSION = 1
TITLE_CHARS = 60
UNTITLED = "Untitled conversation"


# A saved conversation as a list shows it: id, title, created/updated times, turn count.
ConversationSummary = ConversationRow


@dataclass(frozen=True)
class SavedTurn:
    """One question and its answer, with the sources it had, as stored and reloaded."""

    question: str
    answer: str
    mode: str
    search_query: str
    sources: list[Source]
    cited: list[int]  # source numbers the answer cites
    stopped: bool = False  # the user stopped the answer before it was complete
    created_at: float = 0.0


def saved_turn(answer: Answer, *, stopped: bool = False) -> SavedTurn:
    """The turn to store for an answer whose stream has ended (read, or stopped by the user)."""
    return SavedTurn(
        question=answer.question,
        answer=answer.text,
        mode=answer.mode,
        search_query=answer.search_query,
        sources=list(answer.sources),
        cited=[s.number for s in answer.cited],
        stopped=stopped,
        created_at=time.time(),
    )


def title_for(question: str) -> str:
    """A one-line title from a question: its first line, cut at a word to fit a list row."""
    first = next((line for line in question.splitlines() if line.strip()), "")
    text = " ".join(first.split())
    if not text:
        return UNTITLED
    if len(text) <= TITLE_CHARS:
        return text
    room = text[: TITLE_CHARS - 1]  # leave room for the ellipsis
    # Ending inside a word, drop that word; a single word longer than the room is cut inside.
    if text[len(room)] != " " and " " in room:
        room = room.rsplit(" ", 1)[0]
    return room.rstrip(" ,;:.-") + "…"


# -- storing and loading ----------------------------------------------------------------------


def start_conversation(store: Store, first_question: str) -> int:
    """A new, empty conversation titled after its first question; returns its id."""
    return store.create_conversation(title_for(first_question))


def save_turn(store: Store, conversation_id: int, turn: SavedTurn) -> None:
    """Append a turn (raises StoreError when the conversation was deleted meanwhile)."""
    store.append_turn(
        conversation_id,
        question=turn.question,
        answer=turn.answer,
        mode=turn.mode,
        search_query=turn.search_query,
        sources_json=encode_sources(turn.sources),
        cited_json=json.dumps([int(n) for n in turn.cited]),
        stopped=turn.stopped,
        now=turn.created_at or None,
    )


def list_conversations(store: Store, limit: int = 200) -> list[ConversationSummary]:
    """Saved conversations, most recently used first."""
    return store.conversation_rows(limit)


def load_conversation(
    store: Store, conversation_id: int
) -> tuple[ConversationSummary, list[SavedTurn]]:
    """A saved conversation and its turns in order."""
    with store.snapshot():  # the summary and the turns from the same committed state
        row = store.conversation_row(conversation_id)
        turns = store.turn_rows(conversation_id)
    if row is None:
        raise LocalragError(
            f"there is no saved conversation with id {conversation_id} (it may have been deleted)"
        )
    return row, [_turn(t) for t in turns]


def delete_conversation(store: Store, conversation_id: int) -> bool:
    """Delete a conversation and its turns; False when there was none with this id."""
    return store.delete_conversation(conversation_id)


def to_conversation(turns: list[SavedTurn]) -> Conversation:
    """The live conversation for reloaded turns, so follow-up questions resolve after reopening."""
    return Conversation(
        [Turn(t.question, t.answer, t.search_query, list(t.sources)) for t in turns]
    )


def _turn(row: TurnRow) -> SavedTurn:
    return SavedTurn(
        question=row.question,
        answer=row.answer,
        mode=row.mode,
        search_query=row.search_query,
        sources=decode_sources(row.sources),
        cited=_decode_cited(row.cited),
        stopped=row.stopped,
        created_at=row.created_at,
    )


# -- the JSON snapshot of sources -------------------------------------------------------------
# {"v": 1, "sources": [{"number", "rank", "score", "vector_score", "keyword_score", "also_in",
#   "chunk": {ChunkHit's fields}, "passage": {"path", "location", "heading", "text"}}]}


def encode_sources(sources: list[Source]) -> str:
    """Sources as versioned JSON, text included (numpy scalars become plain numbers)."""
    return json.dumps(
        {"v": SOURCES_VERSION, "sources": [_encode_source(s) for s in sources]},
        ensure_ascii=False,
    )


def decode_sources(raw: str) -> list[Source]:
    """Sources from `encode_sources`; optional fields may be missing.

    A value that cannot be read (corrupt JSON, a missing required field, a format from a newer
    localrag) gives no sources instead of an error: the turn's question and answer still load,
    and one damaged row must not stop the app from reopening the whole conversation.
    """
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != SOURCES_VERSION:
            return []
        return [_decode_source(item) for item in data["sources"]]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []


def _encode_source(source: Source) -> dict[str, Any]:
    result, chunk, passage = source.result, source.result.chunk, source.passage
    return {
        "number": int(source.number),
        "rank": int(result.rank),
        "score": float(result.score),
        "vector_score": _float_or_none(result.vector_score),
        "keyword_score": _float_or_none(result.keyword_score),
        "also_in": list(result.also_in),
        "chunk": {
            "chunk_id": int(chunk.chunk_id),
            "document_id": int(chunk.document_id),
            "path": chunk.path,
            "ordinal": int(chunk.ordinal),
            "text": chunk.text,
            "heading": chunk.heading,
            "line_start": _int_or_none(chunk.line_start),
            "line_end": _int_or_none(chunk.line_end),
            "page_start": _int_or_none(chunk.page_start),
            "page_end": _int_or_none(chunk.page_end),
            "char_start": int(chunk.char_start),
            "char_end": int(chunk.char_end),
            "embedding_id": int(chunk.embedding_id),
        },
        "passage": {
            "path": passage.path,
            "location": passage.location,
            "heading": passage.heading,
            "text": passage.text,
        },
    }


def _decode_source(item: dict[str, Any]) -> Source:
    """Required: number, chunk.path, chunk.text; everything else has a neutral default."""
    c = item["chunk"]
    text = str(c["text"])
    chunk = ChunkHit(
        chunk_id=int(c.get("chunk_id", 0)),
        document_id=int(c.get("document_id", 0)),
        path=str(c["path"]),
        ordinal=int(c.get("ordinal", 0)),
        text=text,
        heading=str(c.get("heading", "")),
        line_start=_int_or_none(c.get("line_start")),
        line_end=_int_or_none(c.get("line_end")),
        page_start=_int_or_none(c.get("page_start")),
        page_end=_int_or_none(c.get("page_end")),
        char_start=int(c.get("char_start", 0)),
        char_end=int(c.get("char_end", len(text))),
        embedding_id=int(c.get("embedding_id", 0)),
    )
    number = int(item["number"])
    result = SearchResult(
        rank=int(item.get("rank", number)),
        score=float(item.get("score", 0.0)),
        chunk=chunk,
        vector_score=_float_or_none(item.get("vector_score")),
        keyword_score=_float_or_none(item.get("keyword_score")),
        also_in=[str(p) for p in item.get("also_in") or []],
    )
    p = item.get("passage") or {}
    passage = Passage(
        path=str(p.get("path", chunk.path)),
        location=str(p.get("location", result.location)),
        heading=str(p.get("heading", chunk.heading)),
        text=str(p.get("text", text)),
    )
    return Source(number, result, passage)


def _decode_cited(raw: str) -> list[int]:
    """Cited source numbers; unreadable JSON gives none, like sources."""
    try:
        data = json.loads(raw)
        return [int(n) for n in data] if isinstance(data, list) else []
    except (ValueError, TypeError):
        return []


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
