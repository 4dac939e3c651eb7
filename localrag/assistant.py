"""One knowledge base as an interactive session uses it: the index and its watcher, a language
model, questions and saved conversations. The TUI drives this from worker threads; nothing here
draws anything, so every step can be tested without a screen.

Threads: questions and conversation saving use one Store connection under `_ask_lock`; status,
listings, source context and the small writes of folder and conversation management use a
second one (`reader`) under `_read_lock`, so the status bar never waits for the model (a
follow-up's rewrite runs the model inside `ask`). The watcher has its
own connection and thread. The embedder is shared: fastembed's session and tokenizer serve
concurrent calls (measured: a query embeds in ~10 ms while a batch of 64 passages embeds).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localrag.errors import ConfigError, LocalragError, ModelMismatchError

if TYPE_CHECKING:
    from localrag.answer import Answer, Answerer, AnswerSettings, Conversation, NoModel
    from localrag.conversations import ConversationSummary, SavedTurn
    from localrag.embedder import Embedder
    from localrag.indexer import IndexEvent, IndexReport
    from localrag.llm import LocalLLM
    from localrag.reranker import Reranker
    from localrag.store import ChunkHit, Store
    from localrag.watcher import Watcher, WatchEvent

LLMLoader = Callable[[str | None], "LocalLLM | None"]


@dataclass(frozen=True)
class Folder:
    path: str
    exists: bool


@dataclass(frozen=True)
class IndexStatus:
    """What the status bar shows about the index."""

    folders: list[Folder]
    documents: int
    indexed: int
    chunks: int
    skipped: int
    errors: int
    searchable: bool  # something was indexed, so questions can be answered

    @property
    def missing(self) -> list[str]:
        return [f.path for f in self.folders if not f.exists]

    @property
    def present(self) -> list[Path]:
        return [Path(f.path) for f in self.folders if f.exists]


class Assistant:
    """Everything a session does with one knowledge base, without the UI."""

    def __init__(
        self,
        db_path: Path,
        *,
        embedder_name: str | Path | None = None,
        embedder: Embedder | None = None,
        llm_loader: LLMLoader | None = None,
        llm_overrides: dict[str, Any] | None = None,
        settings: AnswerSettings | None = None,
    ) -> None:
        self.db_path = Path(db_path).expanduser()
        self._embedder_name = embedder_name
        self.embedder = embedder
        self._llm_loader = llm_loader
        self._llm_overrides = {k: v for k, v in (llm_overrides or {}).items() if v is not None}
        self._settings = settings
        self.llm: LocalLLM | None = None
        # config.toml's `[answer] reranker`, loaded with the embedder (None: no reranker).
        self.reranker: Reranker | None = None
        self.model_name: str | None = None
        # Why `llm` is None (None: nothing was loaded or chosen yet), for answers' hints.
        self.no_model: NoModel | None = None
        self._store: Store | None = None
        # The model the index recorded when it was opened (or last followed).
        self._index_model: dict[str, Any] | None = None
        self._reader: Store | None = None
        self._ask_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._watcher: Watcher | None = None
        self._on_watch_event: Callable[[WatchEvent], None] | None = None
        self._polling = False

    # -- opening ----------------------------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the database and load the embedder: the slow part of starting."""
        from localrag.answer import AnswerSettings
        from localrag.embedder import embedder_for_index
        from localrag.reranker import configured_reranker
        from localrag.store import Store

        if self._settings is None:
            self._settings = AnswerSettings.from_config()
        self.reranker = configured_reranker(None, self._settings)
        self._store = Store.open(self.db_path)
        self._reader = Store.open(self.db_path)
        self._index_model = self._store.model_identity()
        if self.embedder is None:
            self.embedder = embedder_for_index(self._index_model, self._embedder_name)

    @property
    def store(self) -> Store:
        if self._store is None:
            raise LocalragError("the knowledge base is not open yet")
        return self._store

    @property
    def reader(self) -> Store:
        if self._reader is None:
            raise LocalragError("the knowledge base is not open yet")
        return self._reader

    # -- the language model -----------------------------------------------------------------------

    def load_model(self, name: str | None = None) -> str | None:
        """Load `name` (or the default model) in place of the current one.

        Returns the model's name, or None when no model is installed (extractive mode).
        A broken file raises ModelError and leaves no model loaded; `no_model` then says why,
        in the words `localrag ask` uses.
        """
        from localrag.answer import NoModel

        with self._model_lock:
            self.unload_model()
            loader = self._llm_loader or self._load_installed
            try:
                llm = loader(name)
            except Exception as exc:  # llama.cpp raises plain errors for files it cannot load
                self.no_model = NoModel.failed(exc)
                raise
            self.llm = llm
            self.no_model = NoModel("not installed") if llm is None else None
            self.model_name = None if llm is None else _model_label(name, llm)
            return self.model_name

    def choose_no_model(self) -> None:
        """Extractive mode by choice (`tui --no-model`, "No model" in the picker)."""
        from localrag.answer import NoModel

        with self._model_lock:
            self.unload_model()
            self.no_model = NoModel("not asked")

    def unload_model(self) -> None:
        llm, self.llm, self.model_name = self.llm, None, None
        if llm is not None:
            llm.close()

    def _load_installed(self, name: str | None) -> LocalLLM | None:
        from localrag.llm import load_llm

        return load_llm(name, **self._llm_overrides)

    # -- questions --------------------------------------------------------------------------------

    def ask(
        self, question: str, conversation: Conversation | None, *, search_only: bool = False
    ) -> Answer:
        """Retrieve and start an answer; iterate the result to stream it (outside any lock)."""
        if self.embedder is None:
            raise LocalragError("the embedding model is not loaded yet")
        with self._ask_lock:
            # A fresh Answerer per question sees folders added since the last one.
            try:
                answerer = self._answerer(self.embedder)
            except ModelMismatchError as exc:
                answerer = self._answerer(self._follow_index_model(exc))
            return answerer.ask(question, conversation, generate=not search_only)

    def _answerer(self, embedder: Embedder) -> Answerer:
        from localrag.answer import Answerer

        return Answerer(
            self.store,
            embedder,
            self.llm,
            self._settings,
            no_model=self.no_model,
            reranker=self.reranker,
        )

    def _follow_index_model(self, refused: ModelMismatchError) -> Embedder:
        """`index --reembed` in another process moved the index to another embedding model
        since it was opened: ask with that model from now on, as the watcher indexes with it."""
        from localrag.embedder import embedder_after_move

        current = self.store.model_identity()
        self.embedder = embedder_after_move(self._index_model, current, refused)
        self._index_model = current
        return self.embedder

    def save_turn(self, conversation_id: int | None, answer: Answer, *, stopped: bool) -> int:
        """Keep a finished turn; starts a saved conversation on its first turn. Returns its id."""
        from localrag.conversations import save_turn, saved_turn, start_conversation

        with self._ask_lock:
            if conversation_id is None:
                conversation_id = start_conversation(self.store, answer.question)
            save_turn(self.store, conversation_id, saved_turn(answer, stopped=stopped))
        return conversation_id

    def conversations(self) -> list[ConversationSummary]:
        from localrag.conversations import list_conversations

        with self._read_lock:
            return list_conversations(self.reader)

    def load_conversation(
        self, conversation_id: int
    ) -> tuple[ConversationSummary, list[SavedTurn]]:
        from localrag.conversations import load_conversation

        with self._read_lock:
            return load_conversation(self.reader, conversation_id)

    def delete_conversation(self, conversation_id: int) -> bool:
        from localrag.conversations import delete_conversation

        with self._read_lock:
            return delete_conversation(self.reader, conversation_id)

    def source_context(self, chunk_id: int, around: int = 1) -> list[ChunkHit]:
        """The passage and its neighbours in the file as indexed now (empty if it is gone)."""
        with self._read_lock:
            return self.reader.chunk_neighbours(chunk_id, before=around, after=around)

    # -- the index --------------------------------------------------------------------------------

    def index_status(self) -> IndexStatus:
        with self._read_lock:
            stats = self.reader.stats()
        return IndexStatus(
            # A root may be one file (`localrag index FILE`): present when it exists.
            folders=[Folder(r, os.path.exists(r)) for r in stats.roots],
            documents=stats.documents,
            indexed=stats.indexed,
            chunks=stats.chunks,
            skipped=stats.skipped,
            errors=stats.errors,
            searchable=stats.model is not None and stats.chunks > 0,
        )

    def problems(self) -> list[tuple[str, str, str]]:
        """(path, status, reason) of every file that was skipped or failed."""
        with self._read_lock:
            return self.reader.problems()

    def add_folder(self, folder: str | Path) -> str:
        """Add a folder to the knowledge base; the watcher (restarted) indexes it."""
        path = Path(folder).expanduser()
        if not path.exists():
            raise ConfigError(f"no such folder: {path}")
        if not path.is_dir():
            raise ConfigError(f"not a folder: {path}")
        with self._read_lock:
            root = self.reader.add_root(str(path.resolve()))
        self.restart_watching()
        return root.path

    def remove_folder(self, folder: str) -> bool:
        """Forget a folder and everything indexed from it (the files themselves are untouched)."""
        self.stop_watching()
        with self._read_lock:
            removed = self.reader.forget_root(folder)
        self.restart_watching()
        return removed

    # -- watching ---------------------------------------------------------------------------------

    def start_watching(
        self, on_event: Callable[[WatchEvent], None], *, polling: bool = False
    ) -> list[str]:
        """Watch every folder of the knowledge base that exists; returns the missing ones.

        The watcher first catches up with what changed while nothing was watching, so this
        is also how a re-index runs.
        """
        from localrag.watcher import Watcher

        self._on_watch_event, self._polling = on_event, polling
        status = self.index_status()
        if status.present and self.embedder is not None:
            self._watcher = Watcher(
                self.db_path, status.present, self.embedder, on_event=on_event, polling=polling
            )
            self._watcher.start()
        return status.missing

    def stop_watching(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    def restart_watching(self) -> list[str]:
        """Stop the watcher and start it again over the current folders (a re-index)."""
        self.stop_watching()
        if self._on_watch_event is None:
            return []
        return self.start_watching(self._on_watch_event, polling=self._polling)

    def index_now(self, on_event: Callable[[IndexEvent], None] | None = None) -> IndexReport:
        """One incremental pass over every folder that exists (when nothing is watching)."""
        from localrag.indexer import Indexer
        from localrag.store import Store

        if self.embedder is None:
            raise LocalragError("the embedding model is not loaded yet")
        present = self.index_status().present
        with Store.open(self.db_path) as store:  # the indexer writes from this thread
            return Indexer(store, self.embedder, on_event=on_event).index(present)

    @property
    def watching(self) -> bool:
        return self._watcher is not None

    def close(self) -> None:
        self.stop_watching()
        with self._model_lock:
            self.unload_model()
        for store in (self._store, self._reader):
            if store is not None:
                store.close()
        self._store = self._reader = None


def _model_label(name: str | None, llm: LocalLLM) -> str:
    """The registered name when there is one, else the file's name."""
    from localrag.models.registry import ModelRegistry

    registry = ModelRegistry()
    if name and registry.find(name) is not None:
        return name
    path = Path(llm.info.path).resolve()
    for entry in registry.entries():
        if registry.path_of(entry).resolve() == path:
            return entry.name
    return path.stem
