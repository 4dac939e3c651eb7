"""The localrag terminal app: ask questions, read the cited sources, watch the index live.

Everything slow runs in thread workers: opening the index and loading the embedder, loading
the model, retrieval and generation, status queries. The watcher runs in its own thread and
reports through `post_message`, which never blocks it. Startup paints the screen first and
loads in the background, so the input is usable at once; a question asked before the model
is ready waits for it.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input

from localrag.assistant import Assistant, IndexStatus
from localrag.errors import LocalragError
from localrag.tui.threads import Closing, UiBridge
from localrag.tui.widgets.conversation import WELCOME, ConversationView, TurnData, TurnView
from localrag.tui.widgets.sources import SourcesPane
from localrag.tui.widgets.status import Activity, StatusBar, WatchState

if TYPE_CHECKING:
    from localrag.answer import Answer, Conversation, Source
    from localrag.indexer import IndexEvent
    from localrag.store import ChunkHit
    from localrag.tui.screens.folders import FolderChange
    from localrag.watcher import WatchEvent

NARROW = 100  # below this many columns the sources pane goes under the conversation
STATUS_EVERY = 0.5  # seconds between status queries while files are being indexed


class MainScreen(Screen[None]):
    """The app's own screen: tab goes question → answers → sources, and round again."""

    @property
    def focus_chain(self) -> list[Widget]:
        # Textual orders focus by position, which puts the question box (docked under the
        # answers) between the answers and the sources: tab from the answers went back to it.
        chain = super().focus_chain
        return [w for w in chain if w.id == "question"] + [w for w in chain if w.id != "question"]


class LocalragApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "localrag"

    BINDINGS = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+n", "new_conversation", "New chat"),
        Binding("ctrl+o", "open_conversation", "Open chat"),
        Binding("ctrl+t", "toggle_search_only", "Search only"),
        Binding("ctrl+y", "copy_answer", "Copy"),
        Binding("f2", "switch_model", "Model"),
        Binding("f3", "folders", "Folders"),
        Binding("f4", "show_problems", "Errors", show=False),
        Binding("ctrl+r", "reindex", "Re-index", show=False),
        Binding("ctrl+s", "focus_sources", "Sources", show=False),
        Binding("ctrl+l", "focus_question", "Question", show=False),
    ]

    generating: reactive[bool] = reactive(False, bindings=True)
    search_only: reactive[bool] = reactive(False)

    class WatchUpdate(Message):
        def __init__(self, event: WatchEvent) -> None:
            super().__init__()
            self.event = event

    class IndexChanged(Message):
        def __init__(self, status: IndexStatus) -> None:
            super().__init__()
            self.status = status

    def __init__(
        self,
        assistant: Assistant,
        *,
        use_model: bool = True,
        model_name: str | None = None,
        watch: bool = True,
        polling: bool = False,
        theme: str | None = None,
    ) -> None:
        super().__init__()
        self.assistant = assistant
        self.use_model = use_model
        self.model_name = model_name
        self.keep_index_live = watch
        self.polling = polling
        if theme:
            self.theme = theme
        self.conversation: Conversation | None = None
        self.conversation_id: int | None = None
        self.index_status: IndexStatus | None = None
        self.activity = Activity("starting" if watch else "not watching")
        self.notices: list[str] = []
        self.model_state = "loading"  # loading | ready | none | failed
        self._kb_opened = threading.Event()
        self._model_settled = threading.Event()
        self._stop_answer = threading.Event()
        self._bridge = UiBridge(self)
        self._shutting_down = self._bridge.shutting_down
        self._open_error: str | None = None
        self._status_refreshed = 0.0  # monotonic time of the last index status query

    # -- layout -----------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[Any]:
        return MainScreen(id="_default")

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="chat"):
                yield ConversationView(id="conversation")
                yield Input(placeholder="Ask about your documents…", id="question")
            yield SourcesPane(id="sources")
        yield StatusBar(id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#question", Input).focus()
        self._show_model_state()
        self._start_up()

    def on_resize(self) -> None:
        self.query_one("#main").set_class(self.size.width < NARROW, "-narrow")

    @property
    def conversation_view(self) -> ConversationView:
        return self.query_one("#conversation", ConversationView)

    @property
    def sources_pane(self) -> SourcesPane:
        return self.query_one("#sources", SourcesPane)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    # -- start-up ---------------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="startup")
    def _start_up(self) -> None:
        try:
            try:
                self.assistant.open()
                status = self.assistant.index_status()
            except Exception as exc:  # whatever it is, say so on screen: no traceback
                self._open_error = _describe(exc)
                self._ui(self._open_failed, self._open_error)
                return
            finally:
                self._kb_opened.set()
            self._ui(self._show_index, status)
            if self.keep_index_live:
                missing = self.assistant.start_watching(self._on_watch_event, polling=self.polling)
                self._ui(self._folders_missing, missing)
            self._load_model(self.model_name if self.use_model else None, self.use_model)
        except Closing:
            pass
        finally:
            self._kb_opened.set()
            self._model_settled.set()

    def _open_failed(self, message: str) -> None:
        self.conversation_view.set_welcome(f"localrag cannot start: {message}", problem=True)
        self.status_bar.show_model("")
        self.model_state = "none"
        self.notify(message, title="Cannot open the knowledge base", severity="error", timeout=30)

    def _show_index(self, status: IndexStatus) -> None:
        self.index_status = status
        self.status_bar.show_index(status, self.activity)
        if not status.folders:
            self.conversation_view.set_welcome(
                "This knowledge base has no folders yet. Press f3 to add one "
                "(or start with `localrag tui ~/Documents`); it is indexed in the background "
                "and kept up to date while localrag runs.",
                problem=True,
            )

    def _folders_missing(self, missing: list[str]) -> None:
        if not self.assistant.watching:  # no folder there to watch
            self._set_activity(Activity("not watching"))
        for path in missing:
            self.notify(
                f"{path} is not there (unmounted or moved?). Its passages stay searchable; "
                "remove it with f3 if it is gone for good.",
                title="Folder missing",
                severity="warning",
                timeout=15,
            )

    # -- the model --------------------------------------------------------------------------------

    def _load_model(self, name: str | None, use_model: bool, *, picked: bool = False) -> None:
        """Worker thread: load a model (or none) and show the outcome.

        `picked`: chosen in the picker (f2), so "no model" is confirmed; at start-up
        `--no-model` needs no toast, the status bar says it.
        """
        self._model_settled.clear()
        self._ui(self._set_model_state, "loading", name)
        state = "failed"
        try:
            if use_model:
                loaded = self.assistant.load_model(name)
            else:
                self.assistant.choose_no_model()
                loaded = None
            state = "ready" if loaded else "none"
            # Why there is no model, in the words `localrag ask` prints (NoModel.hint).
            why = self.assistant.no_model
            if why is not None and (picked or why.reason != "not asked"):
                self._ui(self.notify, why.hint, title="Extractive mode", timeout=10)
        except Exception as exc:  # llama.cpp raises plain errors for files it cannot load
            from localrag.answer import NoModel

            failed = self.assistant.no_model  # set by load_model, with the problem
            if failed is None or failed.reason != "failed":
                failed = NoModel.failed(exc)
            self._ui(
                self.notify,
                failed.hint,
                title="The model did not load",
                severity="error",
                timeout=20,
            )
        finally:
            self._model_settled.set()
            self._ui(self._set_model_state, state)

    def _set_model_state(self, state: str, loading: str | None = None) -> None:
        """On the app's thread, so the state and the status bar never disagree."""
        self.model_state = state
        self._show_model_state(loading)

    def _show_model_state(self, loading: str | None = None) -> None:
        state = self.model_state
        if state == "loading":
            text = f"loading {loading or 'the model'}…"
        elif state == "ready":
            text = f"model: {self.assistant.model_name}"
        elif state == "failed":
            text = "extractive mode (model failed)"
        else:
            text = "extractive mode — no model"
        if self.search_only:
            text = "search only · " + text
        self.status_bar.show_model(text)

    def watch_search_only(self) -> None:
        self._show_model_state(self.assistant.model_name)

    # -- asking -----------------------------------------------------------------------------------

    @on(Input.Submitted, "#question")
    async def _question(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question:
            return
        if self.generating:
            self.notify("An answer is still being written: esc stops it.", severity="warning")
            return
        event.input.clear()
        turn = await self.conversation_view.add_turn(TurnData(question))
        turn.set_meta("searching your documents…")
        self.generating = True
        self._stop_answer.clear()
        self._answer(question, turn, self.search_only)

    @work(thread=True, exit_on_error=False, group="answer")
    def _answer(self, question: str, turn: TurnView, search_only: bool) -> None:
        try:
            self._run_answer(question, turn, search_only)
        except Closing:
            pass
        except Exception as exc:  # a bug must not take the session down: show it, keep going
            message = _describe(exc)
            try:
                self._ui(turn.fail, message)
                self._ui(self.notify, message, title="No answer", severity="error")
            except Closing:
                pass
        finally:
            with contextlib.suppress(Closing):
                self._ui(self._answer_done)

    def _run_answer(self, question: str, turn: TurnView, search_only: bool) -> None:
        if not self._kb_opened.is_set():
            self._ui(turn.set_meta, "opening the knowledge base…")
            self._wait(self._kb_opened)
        if self._open_error:
            raise LocalragError(self._open_error)
        if not search_only and not self._model_settled.is_set():
            self._ui(turn.set_meta, "waiting for the model to load…")
            self._wait(self._model_settled)
        if self._stop_answer.is_set():  # esc while waiting: nothing was asked yet
            self._ui(turn.fail, "stopped before answering")
            return
        status = self.assistant.index_status()
        if not status.searchable:
            raise LocalragError(
                "nothing is indexed yet: add a folder with f3"
                if not status.folders
                else "nothing is indexed yet: wait for indexing to finish"
            )
        if self.conversation is None:
            from localrag.answer import Conversation

            self.conversation = Conversation()
        answer = self.assistant.ask(question, self.conversation, search_only=search_only)
        self._ui(turn.begin, answer.sources, answer.mode, answer.search_query)
        self._ui(self._show_turn_sources, turn)
        stopped = self._stream(answer, turn)
        self._ui(
            turn.finish,
            answer.text,
            [s.number for s in answer.cited],
            stopped=stopped,
            stats=answer.stats if answer.mode == "generated" else None,
            passages_only=answer.passages_only,
        )
        self._ui(self._show_turn_sources, turn)
        try:
            self.conversation_id = self.assistant.save_turn(
                self.conversation_id, answer, stopped=stopped
            )
        except Exception as exc:  # the answer stands; only keeping it failed
            message = f"This answer was not saved: {_describe(exc)}"
            self._ui(self.notify, message, title="Not saved", severity="warning")

    def _stream(self, answer: Answer, turn: TurnView) -> bool:
        """Feed the answer to the turn as it is written; True when the user stopped it."""
        pieces = answer.__iter__()  # a generator: closing it stops the model
        try:
            for piece in pieces:
                if self._stop_answer.is_set():
                    return True
                if answer.mode == "generated":
                    self._ui(turn.append, piece)
            return self._stop_answer.is_set() and answer.mode == "generated"
        finally:
            pieces.close()  # stops generation and records the (partial) answer

    def _answer_done(self) -> None:
        self.generating = False

    def _show_turn_sources(self, turn: TurnView) -> None:
        if self.conversation_view.selected is turn:
            self.sources_pane.show(turn.data)

    def action_stop(self) -> None:
        if self.generating:
            self._stop_answer.set()
            self.notify("Stopping the answer.", timeout=2)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.generating
        return True

    # -- selecting turns and sources --------------------------------------------------------------

    @on(ConversationView.Selected)
    def _turn_selected(self, event: ConversationView.Selected) -> None:
        self.sources_pane.show(event.turn.data if event.turn else None)

    @on(ConversationView.CitationChosen)
    def _citation_chosen(self, event: ConversationView.CitationChosen) -> None:
        source = self.sources_pane.highlight(event.number)
        if source is None:
            self.notify(f"This answer has no source [{event.number}].", severity="warning")
            return
        self.open_source_screen(source, event.turn.data.search_query)

    @on(SourcesPane.Opened)
    def _source_opened(self, event: SourcesPane.Opened) -> None:
        self.open_source_screen(event.source, event.query)

    def open_source_screen(self, source: Source, query: str) -> None:
        from localrag.tui.screens.source import SourceScreen

        # A result joining neighbours reaches at most len(run) - 1 passages from its best one:
        # this shows all of it and at least one passage of context on each side.
        context = self.source_context(source.result.chunk.chunk_id, len(source.result.run))
        self.push_screen(
            SourceScreen(
                source,
                query,
                context,
                fetch_context=self.source_context,
                open_file=self.open_source,
            )
        )

    def source_context(self, chunk_id: int, around: int) -> list[ChunkHit]:
        try:
            return self.assistant.source_context(chunk_id, around)
        except LocalragError:
            return []

    def open_source(self, path: str, line: int | None) -> None:
        """Show a source file in $EDITOR at its line (or a document in the system viewer)."""
        from localrag.tui.editor import editor_setting, open_command

        try:
            command = open_command(path, line, editor_setting())
        except ValueError as exc:
            self.notify(str(exc), title="No editor", severity="warning")
            return
        from textual.app import SuspendNotSupported

        try:
            try:
                with self.suspend():
                    result = subprocess.run(command, check=False)
            except SuspendNotSupported:  # no terminal to hand over (tests, web)
                result = subprocess.run(command, check=False, capture_output=True)
        except OSError as exc:
            self.notify(f"{command[0]}: {exc.strerror}", title="Cannot open", severity="error")
            return
        if result.returncode:
            self.notify(f"{command[0]} exited with {result.returncode}", severity="warning")

    # -- commands ---------------------------------------------------------------------------------

    async def _stop_answering(self) -> None:
        """Stop the answer being written, if any, and wait until its worker has let go."""
        if self.generating:
            self._stop_answer.set()
            await self.workers.wait_for_complete([w for w in self.workers if w.group == "answer"])

    async def action_new_conversation(self) -> None:
        await self._stop_answering()
        self.conversation = None
        self.conversation_id = None
        await self.conversation_view.clear()
        self.query_one("#question", Input).focus()
        self.notify("New conversation.", timeout=2)

    def action_open_conversation(self) -> None:
        from localrag.tui.screens.pickers import ConversationsScreen

        if not self._kb_opened.is_set() or self._open_error:
            self.notify("The knowledge base is not open.", severity="warning")
            return
        self.push_screen(
            ConversationsScreen(self.assistant.conversations(), self.delete_conversation),
            self._reopen_conversation,
        )

    async def _reopen_conversation(self, conversation_id: int | None) -> None:
        if conversation_id is None:
            return
        from localrag.conversations import to_conversation

        await self._stop_answering()
        try:
            summary, saved = self.assistant.load_conversation(conversation_id)
        except LocalragError as exc:
            self.notify(str(exc), severity="error")
            return
        view = self.conversation_view
        await view.clear()
        for item in saved:
            data = TurnData(
                item.question,
                item.answer,
                item.mode,
                item.search_query,
                list(item.sources),
                list(item.cited),
                item.stopped,
            )
            turn = await view.add_turn(data)
            turn.show_saved()
        self.conversation = to_conversation(saved)
        self.conversation_id = conversation_id
        self.notify(f"Reopened “{summary.title}”.", timeout=3)

    def delete_conversation(self, conversation_id: int) -> bool:
        deleted = self.assistant.delete_conversation(conversation_id)
        if deleted and conversation_id == self.conversation_id:
            self.conversation_id = None  # keep the view; its next turn starts a new record
        return deleted

    def action_toggle_search_only(self) -> None:
        self.search_only = not self.search_only
        state = "on: questions show passages, the model is not used" if self.search_only else "off"
        self.notify(f"Search-only mode {state}.", timeout=3)

    def action_copy_answer(self) -> None:
        turn = self.conversation_view.selected
        if turn is None or not turn.data.text:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.copy_to_clipboard(turn.data.as_text())
        self.notify("Answer and sources copied.", timeout=2)

    def action_switch_model(self) -> None:
        from localrag.models.registry import ModelRegistry
        from localrag.tui.screens.pickers import ModelScreen

        if self.generating:
            self.notify("Stop the answer first (esc).", severity="warning")
            return
        try:
            entries = ModelRegistry().entries()
        except LocalragError as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(ModelScreen(entries, self.assistant.model_name), self._model_chosen)

    def _model_chosen(self, choice: str | None) -> None:
        from localrag.tui.screens.pickers import NO_MODEL

        if choice is None:
            return
        self._switch_model(None if choice == NO_MODEL else choice, choice != NO_MODEL)

    @work(thread=True, exit_on_error=False, group="model", exclusive=True)
    def _switch_model(self, name: str | None, use_model: bool) -> None:
        try:
            self._wait(self._kb_opened)
            self._load_model(name, use_model, picked=True)
        except Closing:
            pass

    def action_folders(self, focus_input: bool = False) -> None:
        from localrag.tui.screens.folders import FoldersScreen

        folders = self.index_status.folders if self.index_status else []
        self.push_screen(FoldersScreen(folders, focus_input=focus_input), self._folder_changed)

    def _folder_changed(self, change: FolderChange | None) -> None:
        if change is None:
            return
        if change.action == "add":
            self.add_folder(change.path)
        else:
            self.remove_folder(change.path)

    @work(thread=True, exit_on_error=False, group="folders", exclusive=True)
    def add_folder(self, path: str) -> None:
        try:
            root = self.assistant.add_folder(path)
            self._ui(self.notify, f"Indexing {root} in the background.", title="Folder added")
            self._refresh_status()
        except LocalragError as exc:
            self._ui(self.notify, str(exc), title="Folder not added", severity="error")
        except Closing:
            pass

    @work(thread=True, exit_on_error=False, group="folders", exclusive=True)
    def remove_folder(self, path: str) -> None:
        try:
            removed = self.assistant.remove_folder(path)
            message = f"{path} removed; its files were not touched." if removed else "not found"
            self._ui(self.notify, message, title="Folder removed")
            self._refresh_status()
        except LocalragError as exc:
            self._ui(self.notify, str(exc), title="Folder not removed", severity="error")
        except Closing:
            pass

    @work(thread=True, exit_on_error=False, group="folders", exclusive=True)
    def action_reindex(self) -> None:
        try:
            self._wait(self._kb_opened)
            if self._open_error:
                return
            if self.assistant.watching or self.keep_index_live:
                # The watcher starts with a full incremental pass: restarting it re-indexes.
                self._ui(self.notify, "Re-indexing: changed files are picked up.", timeout=3)
                missing = self.assistant.restart_watching()
                if missing:
                    self._ui(self._folders_missing, missing)
                return
            report = self.assistant.index_now(self._on_index_event)
            self.post_message(self.WatchUpdate(_watch_event("reconciled")))
            summary = f"{report.changed} changed, {report.failed} failed"
            self._ui(self.notify, f"Re-indexed: {summary}.", timeout=4)
        except LocalragError as exc:
            self._ui(self.notify, str(exc), title="Re-index failed", severity="error")
        except Closing:
            pass

    def _on_index_event(self, event: IndexEvent) -> None:
        """A one-off re-index reports like the watcher's start-up pass does."""
        self.post_message(self.WatchUpdate(_watch_event("reconcile", index=event)))

    def action_show_problems(self) -> None:
        from localrag.tui.screens.problems import ProblemsScreen

        problems = (
            self.assistant.problems() if self._kb_opened.is_set() and not self._open_error else []
        )
        self.push_screen(ProblemsScreen(problems, self.notices))

    def action_focus_sources(self) -> None:
        self.sources_pane.option_list.focus()

    def action_focus_question(self) -> None:
        self.query_one("#question", Input).focus()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield SystemCommand("New conversation", "Start over (ctrl+n)", self.action_new_conversation)
        yield SystemCommand(
            "Open conversation",
            "Reopen a saved conversation (ctrl+o)",
            self.action_open_conversation,
        )
        yield SystemCommand(
            "Switch model", "Choose the language model (f2)", self.action_switch_model
        )
        yield SystemCommand(
            "Add folder", "Watch and index another folder", lambda: self.action_folders(True)
        )
        yield SystemCommand("Remove folder", "Forget a watched folder (f3)", self.action_folders)
        yield SystemCommand(
            "Re-index", "Catch up with changed files now (ctrl+r)", self.action_reindex
        )
        yield SystemCommand(
            "Show indexing errors",
            "Files that could not be indexed (f4)",
            self.action_show_problems,
        )
        mode = "off" if self.search_only else "on"
        yield SystemCommand(
            f"Search-only mode {mode}",
            "Show passages without generating (ctrl+t)",
            self.action_toggle_search_only,
        )
        yield SystemCommand(
            "Copy answer", "Answer and sources to the clipboard (ctrl+y)", self.action_copy_answer
        )
        if self.generating:
            yield SystemCommand("Stop answer", "Stop generating (esc)", self.action_stop)
        yield from super().get_system_commands(screen)

    # -- the index, live --------------------------------------------------------------------------

    def _on_watch_event(self, event: WatchEvent) -> None:
        """Watcher thread: hand over without waiting."""
        self.post_message(self.WatchUpdate(event))

    @on(WatchUpdate)
    def _watch_update(self, message: WatchUpdate) -> None:
        event = message.event
        kind = event.kind
        if kind in ("reconcile", "index") and event.index is not None:
            index = event.index
            self._set_activity(
                Activity("indexing", index.files_done, index.files_total, event.queue_depth)
            )
        elif kind == "batch":
            self._set_activity(Activity("indexing", 0, event.paths, event.queue_depth))
        elif kind in ("watching", "idle", "reconciled", "batch-done"):
            watching = self.assistant.watching
            state: WatchState = "watching" if watching else "not watching"
            self._set_activity(Activity(state, queue=event.queue_depth))
        elif kind == "stopped":
            self._set_activity(Activity("stopped"))
        elif kind == "notice" and event.message:
            self.notices.append(event.message)
            self.notify(event.message, title="Watcher", severity="warning", timeout=8)
        file_done = kind == "index" and event.index is not None and event.index.kind == "file"
        if kind in ("reconciled", "batch-done", "watching", "stopped"):
            self._refresh_status()
        elif file_done and time.monotonic() - self._status_refreshed > STATUS_EVERY:
            # Counts while a big batch runs, at most twice a second (not a query per file).
            self._refresh_status()

    def _print_error_renderables(self) -> None:
        """Textual prints an unhandled error's traceback, with local variables (document text
        among them), over the user's terminal when the app ends: keep it in a private file
        instead, and let the command say in one line what happened and where that file is."""
        if self._exit_renderables:
            from rich.console import Console

            from localrag.private_files import create_private_file

            log = crash_log_path()
            log.parent.mkdir(parents=True, exist_ok=True)
            create_private_file(log)
            with open(log, "w", encoding="utf-8") as out:
                for renderable in self._exit_renderables:
                    Console(file=out, width=120, color_system=None).print(renderable)
        self._exit_renderables.clear()

    def _set_activity(self, activity: Activity) -> None:
        self.activity = activity
        self.status_bar.show_index(self.index_status, activity)

    @work(thread=True, exit_on_error=False, group="status", exclusive=True)
    def _refresh_status(self) -> None:
        self._status_refreshed = time.monotonic()
        try:
            status = self.assistant.index_status()
        except LocalragError:
            return
        self.post_message(self.IndexChanged(status))

    @on(IndexChanged)
    def _index_changed(self, message: IndexChanged) -> None:
        was_empty = self.index_status is None or not self.index_status.folders
        self._show_index(message.status)
        if was_empty and message.status.folders:
            self.conversation_view.set_welcome(WELCOME)

    # -- threads ----------------------------------------------------------------------------------

    def _ui(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """From a worker: run `callback` on the app's thread and wait (threads.UiBridge)."""
        return self._bridge.call(callback, *args, **kwargs)

    def _wait(self, event: threading.Event) -> None:
        self._bridge.wait(event)

    async def action_quit(self) -> None:
        self._shutting_down.set()
        self._stop_answer.set()
        self.exit()

    def on_unmount(self) -> None:
        self._shutting_down.set()
        self._stop_answer.set()
        self.assistant.close()


def _watch_event(kind: str, **fields: Any) -> WatchEvent:
    from localrag.watcher import WatchEvent

    return WatchEvent(kind, **fields)


def _describe(exc: BaseException) -> str:
    """Our errors are written for the user; anything else is named, so it can be reported."""
    return str(exc) if isinstance(exc, LocalragError) else f"{type(exc).__name__}: {exc}"


def crash_log_path() -> Path:
    """Where the details of the terminal app's last unexpected stop are kept (owner-only)."""
    from localrag.config import home_dir

    return home_dir() / "tui-crash.log"
