"""`localrag mcp`: the index as tools for local agents and editor assistants, over stdio.

`IndexTools` holds what makes a query cheap: one embedder loaded at start (kept warm), one
read-only `Store` (opened on first use, so a server started before the first `localrag index`
works once there is an index) and, loaded on the first `ask` that needs it, the language
model. `build_server` registers its four tools with the official MCP SDK's `MCPServer`:
`search`, `ask`, `status` and `passage`. Nothing here writes to the index, except
`BackgroundIndex`, one pass over its folders that the command starts only when asked
(`--index`), in a thread of its own while the server answers (`status` shows its progress).

The SDK runs a plain (not async) tool in a worker thread, a new one per call, so every call
holds one lock: the store and the model are used by one thread at a time. A `LocalragError`
(empty index, unknown passage, a query with no words) becomes an MCP tool error with the same
text; the server goes on serving. Nothing prints: on stdio, stdout is the protocol.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

# pydantic builds the tools' output schemas from these and needs typing_extensions' TypedDict
# on Python < 3.12.
from typing_extensions import TypedDict

from localrag.answer import Answerer, AnswerSettings, NoModel
from localrag.answer import Mode as AnswerMode
from localrag.embedder import embedder_after_move
from localrag.errors import LocalragError, ModelMismatchError
from localrag.paths import printable
from localrag.reranker import configured_reranker
from localrag.retrieval import (
    NO_WORDS_MESSAGE,
    Mode,
    Retriever,
    SearchResult,
    chunk_location,
    has_words,
)

if TYPE_CHECKING:
    from localrag.embedder import Embedder
    from localrag.indexer import EventHandler, IndexEvent, IndexReport
    from localrag.llm import LocalLLM
    from localrag.store import ChunkHit, Store

T = TypeVar("T")

MAX_RESULTS = 50  # an agent's context is the limit, not the index
MAX_AROUND = 10
# How long closing waits for the pass to stop: the SDK's client terminates a server 2 s after
# closing its stdin, and a pass cut off mid-file loses nothing committed anyway.
STOP_WAIT_S = 1.0

INSTRUCTIONS = """\
Searches the user's own documents in a private index on this machine (nothing leaves it).
`search` finds passages by meaning and by keyword; `passage` shows one with the text around it
(give the chunk_id of a search result or a source); `ask` answers a question citing numbered
sources; `status` says which folders are indexed and how much, and whether indexing is
still running (search meanwhile finds what is indexed so far). Paths are absolute."""


# -- what the tools return (their output schemas) -----------------------------------------------


class Location(TypedDict):
    path: str
    location: str  # "line 7", "lines 10-24", "p. 3", "pp. 3-4"
    line_start: int | None
    line_end: int | None
    page_start: int | None
    page_end: int | None
    heading: str


class SearchHit(Location):
    rank: int
    chunk_id: int  # the passage that matched best (for `passage`)
    chunk_ids: list[int]  # every stored passage the text joins, in file order
    score: float
    vector_score: float | None  # cosine similarity, when the vector side found it
    keyword_score: float | None  # BM25, when the keyword side found it
    text: str
    also_in: list[str]  # other files holding the identical passage


class SearchOutput(TypedDict):
    query: str
    mode: Mode
    results: list[SearchHit]


class AnswerSource(Location):
    number: int  # what [n] in the answer refers to
    chunk_id: int
    text: str
    also_in: list[str]


class AskOutput(TypedDict):
    question: str
    mode: AnswerMode
    answer: str
    sources: list[AnswerSource]
    cited: list[int]  # source numbers the answer cites
    invalid_citations: list[int]  # numbers the model made up (removed from the answer)
    hint: str | None  # why the answer is extractive, and what to do about it


class Folder(TypedDict):
    path: str
    present: bool  # False: moved, deleted or not mounted


IndexingState = Literal["off", "running", "done", "failed"]


class Indexing(TypedDict):
    state: IndexingState  # off: started without --index, nothing is written
    files_done: int
    files_total: int | None  # known once the folders are walked
    started_at: str | None  # ISO 8601, local time
    finished_at: str | None
    summary: str | None  # when done: what changed ("3 added, 1 updated, ...")
    error: str | None  # when failed: why


class StatusOutput(TypedDict):
    db: str
    db_bytes: int
    folders: list[Folder]
    documents: int
    indexed: int
    skipped: int
    failed: int
    chunks: int
    distinct_vectors: int
    embedder: str | None  # the model the index was built with
    reranker: str | None  # the cross-encoder that reorders search results, if any
    searchable: bool
    language_model: str
    indexing: Indexing  # the --index pass, which runs while the server answers


class NeighbourPassage(TypedDict):
    chunk_id: int
    ordinal: int  # position of the passage in its file
    location: str
    heading: str
    text: str
    target: bool  # the passage asked for (the others are its neighbours)


class PassageOutput(TypedDict):
    chunk_id: int
    path: str
    passages: list[NeighbourPassage]


# -- the tools, without MCP -----------------------------------------------------------------------


class IndexTools:
    """Search, answer and report over one index, read-only, with a warm embedder."""

    def __init__(
        self,
        db_path: Path,
        embedder: Embedder,
        *,
        model_name: str | None = None,
        use_model: bool = True,
        settings: AnswerSettings | None = None,
        indexing: BackgroundIndex | None = None,
    ) -> None:
        self.db_path = db_path
        self.embedder = embedder
        self.indexing = indexing
        self.model_name = model_name
        self.use_model = use_model
        self.settings = settings or AnswerSettings.from_config()
        # Loaded once, like the embedder: config.toml's `[answer] reranker`, or None.
        self.reranker = configured_reranker(None, self.settings)
        self._lock = threading.Lock()
        self._store: Store | None = None
        # The model the index recorded when it was first read (or last followed).
        self._index_model: dict[str, Any] | None = None
        self._llm: LocalLLM | None = None
        self._llm_tried = False
        # Why there is no model (the answers' hint), as `localrag ask` says it.
        self._no_model = None if use_model else NoModel("not asked")

    def call(self, step: Callable[..., T], *args: Any) -> T:
        """Run one tool, alone: the store and the model serve one thread at a time."""
        with self._lock:
            return step(*args)

    def close(self) -> None:
        if self.indexing is not None:
            self.indexing.stop()
        with self._lock:
            if self._llm is not None:
                self._llm.close()
            if self._store is not None:
                self._store.close()
            self._llm = self._store = None

    # -- the tools ------------------------------------------------------------------------------

    def search(
        self, query: str, k: int = 5, mode: Mode = "hybrid", path: str | None = None
    ) -> SearchOutput:
        if not has_words(query):
            raise LocalragError(NO_WORDS_MESSAGE)
        results = self._retriever().search(query, k, path_filter=path or None, mode=mode)
        return {"query": query, "mode": mode, "results": [_hit(r) for r in results]}

    def ask(self, question: str, path: str | None = None) -> AskOutput:
        if not has_words(question):
            raise LocalragError(NO_WORDS_MESSAGE)
        store = self.store()
        self._retriever()  # an empty index, or one moved to another embedder: first
        llm = self.language_model()
        answerer = Answerer(
            store,
            self.embedder,
            llm,
            self.settings,
            no_model=self._no_model,
            reranker=self.reranker,
        )
        answer = answerer.ask(question, path_filter=path or None)
        text = answer.read()
        return {
            "question": answer.question,
            "mode": answer.mode,
            "answer": text,
            "sources": [
                {
                    **_location(s.result.chunk),
                    "number": s.number,
                    "chunk_id": s.result.chunk.chunk_id,
                    "text": s.passage.text,
                    "also_in": [printable(p) for p in s.result.also_in],
                }
                for s in answer.sources
            ],
            "cited": [s.number for s in answer.cited],
            "invalid_citations": list(answer.invalid),
            "hint": answer.hint,
        }

    def _retriever(self) -> Retriever:
        """A Retriever is cheap: a fresh one per call sees the index as it is now. When
        `index --reembed` moved it to another embedding model since it was first read, the
        queries follow it (and say so plainly when that model is not installed here)."""
        store = self.store()
        try:
            return Retriever(store, self.embedder, reranker=self.reranker)
        except ModelMismatchError as exc:
            current = store.model_identity()
            self.embedder = embedder_after_move(self._index_model, current, exc)
            self._index_model = current
            return Retriever(store, self.embedder, reranker=self.reranker)

    def status(self) -> StatusOutput:
        stats = self.store().stats()
        model = stats.model
        return {
            "db": printable(str(self.db_path)),
            "db_bytes": stats.db_bytes,
            "folders": [{"path": printable(r), "present": os.path.isdir(r)} for r in stats.roots],
            "documents": stats.documents,
            "indexed": stats.indexed,
            "skipped": stats.skipped,
            "failed": stats.errors,
            "chunks": stats.chunks,
            "distinct_vectors": stats.embeddings,
            "embedder": model["name"] if model else None,
            "reranker": self.reranker.name if self.reranker else None,
            "searchable": model is not None and stats.chunks > 0,
            "language_model": self._model_state(),
            "indexing": self.indexing.state() if self.indexing else NOT_INDEXING,
        }

    def passage(self, chunk_id: int, around: int = 1) -> PassageOutput:
        hits = self.store().chunk_neighbours(chunk_id, before=around, after=around)
        if not hits:
            raise LocalragError(
                f"no passage with chunk_id {chunk_id}: its file changed or left the index "
                "since it was found; search again"
            )
        return {
            "chunk_id": chunk_id,
            "path": printable(hits[0].path),
            "passages": [
                {
                    "chunk_id": h.chunk_id,
                    "ordinal": h.ordinal,
                    "location": chunk_location(h),
                    "heading": h.heading,
                    "text": h.text,
                    "target": h.chunk_id == chunk_id,
                }
                for h in hits
            ],
        }

    # -- what they share ------------------------------------------------------------------------

    def store(self) -> Store:
        """The index, read-only; opened on first use and kept (it sees later commits)."""
        from localrag.store import Store

        if self._store is None:
            self._store = Store.open(self.db_path, read_only=True)
            self._index_model = self._store.model_identity()
        return self._store

    def language_model(self) -> LocalLLM | None:
        """The model, loaded on the first call; None when answers are extractive (no model
        wanted, none installed, or it failed to load: `_no_model` says which)."""
        from localrag.llm import load_llm

        if self.use_model and not self._llm_tried:
            self._llm_tried = True  # one try: a broken model is not reloaded on every question
            try:
                self._llm = load_llm(self.model_name)
            except Exception as exc:  # llama.cpp raises plain errors too; the server goes on
                self._no_model = NoModel.failed(exc)
            else:
                self._no_model = None if self._llm is not None else NoModel("not installed")
        return self._llm

    def _model_state(self) -> str:
        if self._llm is not None:
            return f"loaded: {self._llm.info.path.name}"
        if self._no_model is None:
            return "not loaded yet (the first ask loads it)"
        if self._no_model.reason == "failed":
            return f"failed to load ({self._no_model.problem}): answers are the best passages"
        if self._no_model.reason == "not asked":
            return "none: started with --no-model, answers are the best passages"
        return "none installed: answers are the best passages"


def _location(chunk: ChunkHit) -> Location:
    return {
        "path": printable(chunk.path),
        "location": chunk_location(chunk),
        "line_start": chunk.line_start,
        "line_end": chunk.line_end,
        "page_start": chunk.page_start,
        "page_end": chunk.page_end,
        "heading": chunk.heading,
    }


def _hit(r: SearchResult) -> SearchHit:
    return {
        **_location(r.chunk),
        "rank": r.rank,
        "chunk_id": r.chunk.chunk_id,
        "chunk_ids": list(r.run),
        "score": round(r.score, 6),
        "vector_score": r.vector_score,
        "keyword_score": r.keyword_score,
        "text": r.chunk.text,
        "also_in": [printable(p) for p in r.also_in],
    }


def index_once(
    db_path: Path, embedder: Embedder, on_event: EventHandler | None = None
) -> IndexReport:
    """One incremental pass over the index's folders that exist (`--index`): the only write."""
    from localrag.indexer import Indexer
    from localrag.store import Store

    with Store.open(db_path, create=False) as store:  # a mistyped --db makes no new file
        folders = [Path(r.path) for r in store.roots() if os.path.isdir(r.path)]
        if not folders:
            raise LocalragError(
                f"nothing to index: {db_path} has no folders (that exist); "
                "add one with `localrag index FOLDER`"
            )
        return Indexer(store, embedder, on_event=on_event).index(folders)


def report_summary(report: IndexReport) -> str:
    return (
        f"{report.added} added, {report.updated} updated, {report.moved} moved, "
        f"{report.deleted} deleted, {report.unchanged} unchanged, {report.failed} failed "
        f"in {report.seconds:.1f}s"
    )


NOT_INDEXING: Indexing = {
    "state": "off",
    "files_done": 0,
    "files_total": None,
    "started_at": None,
    "finished_at": None,
    "summary": None,
    "error": None,
}


class _Stopped(Exception):
    """Raised from the pass's progress handler: the server is closing."""


class BackgroundIndex:
    """`--index`: one pass over the index's folders in a thread of its own, so the server
    answers `initialize` at once (a first index can take minutes, longer than a client waits
    for a server to start).

    Meanwhile the tools answer from what is committed: the pass commits file by file through
    its own writable Store, and the tools' read-only Store reads beside it (WAL). The embedder
    is shared, as the TUI shares it with its watcher: its onnxruntime session and tokenizers
    serve concurrent calls, and it is loaded before the thread starts (no lazy start to race).
    A failed pass is kept for `status` and told to `on_finish`; the server goes on.
    """

    def __init__(
        self,
        db_path: Path,
        embedder: Embedder,
        on_finish: Callable[[str], None] | None = None,
    ) -> None:
        self.db_path = db_path
        self.embedder = embedder
        self._on_finish = on_finish or (lambda line: None)
        self._lock = threading.Lock()  # `_state` is written here and read by `status`
        self._state: Indexing = {**NOT_INDEXING, "state": "running"}
        self._stopping = threading.Event()
        # A daemon: a pass that does not stop in STOP_WAIT_S must not keep the process alive.
        self._thread = threading.Thread(target=self._run, name="localrag-index", daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:  # once
            self._update(started_at=_now())
            self._thread.start()

    def stop(self) -> None:
        """Ask the pass to stop at its next step, and wait a little for it."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(STOP_WAIT_S)

    def running(self) -> bool:
        return self._thread.is_alive()

    def state(self) -> Indexing:
        with self._lock:
            return {**self._state}

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state = {**self._state, **changes}  # type: ignore[typeddict-item]

    def _run(self) -> None:
        try:
            report = index_once(self.db_path, self.embedder, on_event=self._progress)
        except _Stopped:
            self._update(state="failed", finished_at=_now(), error="stopped: the server closed")
        except Exception as exc:  # whatever it is, the server outlives it and says why
            error = str(exc) if isinstance(exc, LocalragError) else f"{type(exc).__name__}: {exc}"
            self._update(state="failed", finished_at=_now(), error=error)
            self._on_finish(f"Indexing failed: {error}")
        else:
            summary = report_summary(report)
            self._update(state="done", finished_at=_now(), summary=summary)
            self._on_finish(f"Indexed: {summary}.")

    def _progress(self, event: IndexEvent) -> None:
        if self._stopping.is_set():
            # Between steps: every file committed stays, the rest waits for the next pass.
            raise _Stopped
        if event.kind == "scanned":
            self._update(files_total=event.files_total)
        elif event.kind == "file":
            self._update(files_done=event.files_done)


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


# -- the MCP server -------------------------------------------------------------------------------

# Every tool only reads, and only this machine's index.
READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)

Query = Annotated[str, Field(description="What to look for, in plain words.")]
PathFilter = Annotated[
    str | None,
    Field(description="Only files whose path contains this text, or matches this glob (*.md)."),
]


def build_server(tools: IndexTools) -> MCPServer[Any]:
    """The MCP server over `tools`; `server.run("stdio")` serves it (and starts the --index
    pass, if any)."""

    @asynccontextmanager
    async def serving(_: MCPServer[Any]) -> AsyncIterator[None]:
        # Started here, once the SDK has moved stdout aside for the protocol: whatever a
        # parser prints during the pass cannot reach the client.
        if tools.indexing is not None:
            tools.indexing.start()
        yield

    # WARNING: the SDK logs every failed tool call at INFO, with its text, on stderr.
    server: MCPServer[Any] = MCPServer(
        name="localrag",
        instructions=INSTRUCTIONS,
        version=version("localrag"),
        log_level="WARNING",
        lifespan=serving,
    )

    def run(step: Callable[..., T], *args: Any) -> T:
        try:
            return tools.call(step, *args)
        except LocalragError as exc:
            raise ToolError(str(exc)) from exc

    @server.tool(annotations=READ_ONLY)
    def search(
        query: Query,
        k: Annotated[int, Field(ge=1, le=MAX_RESULTS, description="How many passages.")] = 5,
        mode: Annotated[
            Mode,
            Field(description="hybrid: meaning and keywords; vector: meaning; keyword: words."),
        ] = "hybrid",
        path: PathFilter = None,
    ) -> SearchOutput:
        """Search the user's indexed documents; the best passages first, each with its file,
        location (lines or pages), heading, text and chunk_id (for `passage`)."""
        return run(tools.search, query, k, mode, path)

    @server.tool(annotations=READ_ONLY)
    def ask(question: Query, path: PathFilter = None) -> AskOutput:
        """Answer a question from the user's documents, citing numbered sources [n]. Without
        a local language model the answer is the best passages themselves (mode extractive,
        and `hint` says why); mode not_found means nothing relevant was found."""
        return run(tools.ask, question, path)

    @server.tool(annotations=READ_ONLY)
    def status() -> StatusOutput:
        """What the index holds: folders, documents, passages (chunks), failures, the
        embedding model it was built with, whether a language model answers, and whether
        indexing (--index) is running, done or failed."""
        return run(tools.status)

    @server.tool(annotations=READ_ONLY)
    def passage(
        chunk_id: Annotated[int, Field(description="A search result's or source's chunk_id.")],
        around: Annotated[
            int, Field(ge=0, le=MAX_AROUND, description="Passages to show on each side.")
        ] = 1,
    ) -> PassageOutput:
        """A passage with its neighbours in the same file, in order: more of the text
        around a search result or a source."""
        return run(tools.passage, chunk_id, around)

    return server
