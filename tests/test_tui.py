"""The real Textual app, driven by its Pilot, over a real index and a real tiny GGUF model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from textual.widgets import Input

from localrag.indexer import Indexer
from localrag.store import Store
from localrag.tui.screens.source import SourceScreen
from tests.helpers.handbook import write_handbook
from tests.helpers.tui import ask, make_app, run, scripted_loader, wait_for, wait_ready

LEAVE_ANSWER = "New parents get **twenty weeks** of leave [1]."


@pytest.fixture
def handbook(tmp_path: Path, embedder) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """(folder, database): the handbook, indexed."""
    folder = write_handbook(tmp_path / "handbook")
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([folder])
    return folder, db


def test_question_streams_a_cited_answer_and_its_sources(handbook, embedder, tiny_gguf) -> None:  # type: ignore[no-untyped-def]
    _, db = handbook
    app = make_app(db, embedder, scripted_loader(tiny_gguf["q4_k_m"], LEAVE_ANSWER, slow=True))

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            assert app.model_state == "ready"
            assert "model:" in app.status_bar.model_text
            await ask(pilot, "How long is parental leave for new parents?", wait=False)
            (turn,) = app.conversation_view.turns
            # Part of the answer is on screen while the rest is still being written.
            await wait_for(pilot, lambda: 0 < len(turn.markdown.source) < len(LEAVE_ANSWER))
            assert app.generating and "writing" in turn.meta_text
            await wait_for(pilot, lambda: not app.generating)
            assert turn.data.error is None, turn.data.error
            assert turn.data.mode == "generated"
            assert turn.data.text == LEAVE_ANSWER
            assert turn.data.cited == [1]
            # The citation is a link to its source, and the sources pane lists that source.
            assert "(source:1)" in turn.markdown.source
            sources = app.sources_pane.sources
            assert [s.number for s in sources] == [1]
            assert sources[0].path.endswith("hr/leave.md")
            assert "1 of" in turn.meta_text and "cited" in turn.meta_text

    run(scenario())


def test_selecting_a_source_shows_it_in_context_and_opens_the_editor(
    handbook, embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    _, db = handbook
    log = tmp_path / "editor.log"
    editor = tmp_path / "fake-editor"
    editor.write_text(f'#!/bin/sh\necho "$@" > {log}\n')
    editor.chmod(0o755)
    monkeypatch.setenv("EDITOR", f"{editor} --wait")
    monkeypatch.delenv("VISUAL", raising=False)
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await ask(pilot, "How often are backup tapes rotated?")
            app.conversation_view.focus()
            await pilot.press("1")
            await wait_for(pilot, lambda: isinstance(app.screen, SourceScreen))
            screen = app.screen
            assert isinstance(screen, SourceScreen)
            assert screen.source.path.endswith("security/backups.md")
            assert "rotated every quarter" in screen.cited_text
            await pilot.press("e")
            await wait_for(pilot, lambda: log.exists())
            await pilot.press("escape")
            assert not isinstance(app.screen, SourceScreen)

    run(scenario())
    # An unknown editor gets the file (no line syntax it might misread).
    backups = os.path.realpath(handbook[0] / "security/backups.md")
    assert log.read_text().split() == ["--wait", backups]


def test_extractive_mode_without_a_model(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    _, db = handbook
    app = make_app(db, embedder, lambda name: None)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            assert app.model_state == "none"
            assert app.status_bar.model_text == "extractive mode — no model"
            await ask(pilot, "Where do visitors park?")
            (turn,) = app.conversation_view.turns
            assert turn.data.mode == "extractive"
            assert "visitors" in turn.markdown.source
            assert app.sources_pane.sources[0].path.endswith("facilities/parking.md")

    run(scenario())


def test_the_input_stays_usable_while_the_app_loads(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    _, db = handbook
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            # First screen: the question box has focus before anything has loaded.
            assert isinstance(app.focused, Input)
            await ask(pilot, "How are taxis paid back?")
            (turn,) = app.conversation_view.turns
            assert turn.data.sources and turn.data.sources[0].path.endswith("travel.md")

    run(scenario())


def test_missing_folder_is_reported_not_fatal(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    folder, db = handbook
    shutil.move(folder, folder.with_name("elsewhere"))
    app = make_app(db, embedder, use_model=False, watch=True)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await wait_for(pilot, lambda: "1 missing" in app.status_bar.index_text)
            titles = [n.title for n in app._notifications]
            assert "Folder missing" in titles
            # Its passages still answer.
            await ask(pilot, "Where do visitors park?")
            assert app.conversation_view.turns[0].data.mode == "extractive"

    run(scenario())


LONG_ANSWER = " ".join(["Backup tapes are rotated every quarter [1]."] * 12)


def test_generation_stops_mid_stream_and_the_app_stays_usable(
    handbook, embedder, tiny_gguf
) -> None:  # type: ignore[no-untyped-def]
    _, db = handbook
    # Two model calls: the long answer, then the second one (a question that stands on its
    # own is searched as it is, not rewritten by the model).
    script = (LONG_ANSWER, "Tapes go offsite [1].")
    loader = scripted_loader(tiny_gguf["q4_k_m"], *script, slow=True)
    app = make_app(db, embedder, loader)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await ask(pilot, "How often are backup tapes rotated?", wait=False)
            (turn,) = app.conversation_view.turns
            await wait_for(pilot, lambda: len(turn.data.text) > 10)
            assert app.generating
            # While the model writes, the input takes typing.
            box = app.query_one("#question", Input)
            box.focus()
            await pilot.press("W", "h", "e", "r", "e")
            assert box.value == "Where"
            await pilot.press("escape")
            await wait_for(pilot, lambda: not app.generating)
            assert turn.data.stopped
            assert 0 < len(turn.data.text) < len(LONG_ANSWER)
            assert "stopped" in turn.meta_text
            assert app.assistant.llm._llm._lock.acquire(timeout=1)  # the stream let go
            app.assistant.llm._llm._lock.release()
            # The next question is answered normally, with the stopped turn as history.
            box.value = ""
            await ask(pilot, "Where are the tapes kept?")
            second = app.conversation_view.turns[1]
            assert second.data.text == "Tapes go offsite [1]."
            assert not second.data.stopped
            assert len(app.conversation.turns) == 2

    run(scenario())


def test_watched_file_change_updates_status_and_search(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    folder, db = handbook
    app = make_app(db, embedder, use_model=False, watch=True)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await wait_for(pilot, lambda: app.activity.state == "watching")
            before = app.index_status
            assert before is not None and before.indexed == 5
            assert "handbook · 5 files" in app.status_bar.index_text
            (folder / "it" / "printer.md").write_text(
                "# Printers\n\nThe plotter on floor four takes magenta toner cartridges only."
            )
            await wait_for(pilot, lambda: "6 files" in app.status_bar.index_text)
            assert app.index_status.chunks > before.chunks
            await pilot.press("ctrl+t")  # search-only: passages, no model
            assert app.search_only and "search only" in app.status_bar.model_text
            await ask(pilot, "magenta toner for the plotter")
            (turn,) = app.conversation_view.turns
            assert turn.data.sources[0].path.endswith("it/printer.md")

    run(scenario())


def test_conversations_are_saved_and_reopened(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    _, db = handbook

    async def first_session() -> None:
        app = make_app(db, embedder, use_model=False)
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await ask(pilot, "Where do visitors park?")
            await ask(pilot, "How are taxis paid back?")
            await pilot.press("ctrl+n")
            await pilot.pause()
            assert app.conversation_view.turns == []

    async def second_session() -> None:
        from localrag.tui.screens.pickers import ConversationsScreen

        app = make_app(db, embedder, use_model=False)
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
            screen = app.screen
            assert isinstance(screen, ConversationsScreen)
            assert [s.title for s in screen.summaries] == ["Where do visitors park?"]
            await pilot.press("enter")
            await wait_for(pilot, lambda: len(app.conversation_view.turns) == 2)
            first, second = app.conversation_view.turns
            assert first.data.question == "Where do visitors park?"
            assert second.data.sources[0].path.endswith("finance/travel.md")
            assert "taxis" in second.markdown.source
            # Follow-ups continue the reopened conversation, in the same saved record.
            assert app.conversation is not None and len(app.conversation.turns) == 2
            await ask(pilot, "And hotels?")
            assert len(app.assistant.conversations()) == 1
            assert app.assistant.conversations()[0].turns == 3

    run(first_session())
    run(second_session())


def test_copy_answer_puts_the_answer_and_its_sources_on_the_clipboard(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    _, db = handbook
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await pilot.press("ctrl+y")
            assert app.clipboard == ""  # nothing to copy yet, and no crash
            await ask(pilot, "Where do visitors park?")
            await pilot.press("ctrl+y")
            assert "visitors" in app.clipboard
            assert "Sources:\n[1] " in app.clipboard and "facilities/parking.md" in app.clipboard

    run(scenario())


def test_folders_are_added_and_removed_from_the_app(handbook, embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from localrag.tui.screens.folders import ConfirmScreen, FoldersScreen

    _, db = handbook
    extra = tmp_path / "recipes"
    extra.mkdir()
    (extra / "soup.md").write_text("# Lentil soup\n\nSimmer red lentils with a bay leaf.")
    app = make_app(db, embedder, use_model=False, watch=True)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await wait_for(pilot, lambda: app.activity.state == "watching")
            await pilot.press("f3")
            await wait_for(pilot, lambda: isinstance(app.screen, FoldersScreen))
            app.screen.query_one("#folder-input", Input).value = str(extra)
            app.screen.query_one("#folder-input", Input).focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: "6 files" in app.status_bar.index_text)
            assert "handbook +1" in app.status_bar.index_text
            # Remove the handbook: confirm, then its files leave the index.
            await pilot.press("f3")
            await wait_for(pilot, lambda: isinstance(app.screen, FoldersScreen))
            app.screen.query_one("#folder-list").focus()
            await pilot.press("home", "d")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_for(pilot, lambda: "1 file" in app.status_bar.index_text)
            assert app.status_bar.index_text.startswith("recipes")

    run(scenario())


def test_palette_offers_every_command(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    _, db = handbook
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for wanted in (
                "New conversation",
                "Open conversation",
                "Switch model",
                "Add folder",
                "Remove folder",
                "Re-index",
                "Show indexing errors",
                "Search-only mode on",
                "Copy answer",
                "Quit",
                "Theme",
            ):
                assert wanted in titles
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"search-only")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.search_only)

    run(scenario())


def test_friendly_errors_for_a_broken_model_and_an_empty_knowledge_base(
    embedder, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 20)
    db = tmp_path / "empty.db"
    from localrag.assistant import Assistant
    from localrag.tui.app import LocalragApp

    app = LocalragApp(Assistant(db, embedder=embedder), model_name=str(broken), watch=True)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_ready(pilot)
            assert app.model_state == "failed"
            assert app.status_bar.model_text == "extractive mode (model failed)"
            messages = [n.message for n in app._notifications]
            assert any("broken.gguf" in m for m in messages)
            welcome = app.conversation_view.query_one("#welcome")
            assert "no folders yet" in str(welcome.render())
            await ask(pilot, "anything there?")
            (turn,) = app.conversation_view.turns
            assert turn.data.error == "nothing is indexed yet: add a folder with f3"

    run(scenario())


def test_a_missing_embedding_model_is_explained(tmp_path: Path) -> None:
    from localrag.assistant import Assistant
    from localrag.tui.app import LocalragApp

    app = LocalragApp(
        Assistant(tmp_path / "kb.db", embedder_name=str(tmp_path / "no-such-embedder")),
        watch=False,
    )

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app._open_error is not None)
            await pilot.pause()
            assert "cannot start" in str(app.conversation_view.query_one("#welcome").render())
            await ask(pilot, "hello?")
            (turn,) = app.conversation_view.turns
            assert turn.data.error == app._open_error

    run(scenario())


def test_switching_models_from_the_picker(handbook, embedder, tiny_gguf) -> None:  # type: ignore[no-untyped-def]
    from localrag.models.registry import ModelRegistry
    from localrag.tui.screens.pickers import ModelScreen

    _, db = handbook
    ModelRegistry().import_file(tiny_gguf["q8_0"], name="tiny-chat")
    app = make_app(db, embedder)  # the real loader: the registry's default model

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            assert app.status_bar.model_text == "model: tiny-chat"
            await pilot.press("f2")
            await wait_for(pilot, lambda: isinstance(app.screen, ModelScreen))
            await pilot.press("down", "enter")  # the entry after the model: no model
            await wait_for(pilot, lambda: app.model_state == "none")
            assert app.assistant.llm is None
            assert app.status_bar.model_text == "extractive mode — no model"
            await pilot.press("f2")
            await wait_for(pilot, lambda: isinstance(app.screen, ModelScreen))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.model_state == "ready")
            assert app.status_bar.model_text == "model: tiny-chat"

    run(scenario())


def test_choosing_no_model_says_so_rather_than_that_none_is_installed(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    from localrag.answer import NO_MODEL_HINT, NoModel
    from localrag.tui.screens.pickers import ModelScreen

    _, db = handbook
    app = make_app(db, embedder, lambda name: None)  # nothing installed

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            # The words `localrag ask` uses, and true here: nothing is installed.
            assert NO_MODEL_HINT in [n.message for n in app._notifications]
            app.clear_notifications()
            await pilot.press("f2")
            await wait_for(pilot, lambda: isinstance(app.screen, ModelScreen))
            await pilot.press("enter")  # the only entry: no model (extractive mode)
            chosen = NoModel("not asked").hint
            await wait_for(pilot, lambda: chosen in [n.message for n in app._notifications])
            assert not any("installed" in n.message for n in app._notifications)
            await ask(pilot, "Where do visitors park?")
            (turn,) = app.conversation_view.turns
            assert turn.data.mode == "extractive"
            assert "no model chosen" in turn.meta_text

    run(scenario())


def test_a_corrupt_models_json_is_explained_as_ask_explains_it(
    handbook, embedder, models_root: Path
) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from localrag.cli import cli
    from localrag.models.registry import ModelRegistry

    _, db = handbook
    registry = ModelRegistry()
    shutil.copytree(models_root / "embedders", registry.dir / "embedders", symlinks=True)
    registry.manifest_path.write_text("{not json")
    app = make_app(db, embedder)  # the real loader, which reads models.json

    async def scenario() -> list[str]:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            assert app.model_state == "failed"
            await ask(pilot, "Where do visitors park?")
            (turn,) = app.conversation_view.turns
            assert turn.data.mode == "extractive" and "model failed" in turn.meta_text
            return [n.message for n in app._notifications if "models.json" in n.message]

    (said,) = run(scenario())
    assert said.startswith("The language model could not be loaded: ")
    result = CliRunner().invoke(cli, ["ask", "Where do visitors park?", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert said in result.stderr.splitlines()  # word for word, on one line


def test_indexing_errors_are_listed(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    from localrag.tui.screens.problems import ProblemsScreen

    folder, db = handbook
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    app = make_app(db, embedder, use_model=False, watch=True)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await wait_for(pilot, lambda: "1 error" in app.status_bar.index_text)
            await pilot.press("f4")
            await wait_for(pilot, lambda: isinstance(app.screen, ProblemsScreen))
            screen = app.screen
            assert isinstance(screen, ProblemsScreen)
            (path, status, reason) = screen.problems[0]
            assert path.endswith("scan.pdf") and status == "error" and reason
            assert screen.query_one("#problem-table").row_count == 1

    run(scenario())


def test_sources_pane_opens_a_source_with_its_neighbours(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "notes"
    folder.mkdir()
    sections = [
        f"## Section {i}\n\n" + f"Filler sentence number {i} about nothing. " * 30 for i in range(9)
    ]
    sections[4] = "## Boilers\n\nThe boiler is serviced every October by the caretaker."
    (folder / "house.md").write_text("# House\n\n" + "\n\n".join(sections))
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([folder])
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await ask(pilot, "When is the boiler serviced?")
            app.action_focus_sources()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, SourceScreen))
            screen = app.screen
            assert isinstance(screen, SourceScreen)
            assert "serviced every October" in screen.cited_text
            run = screen.source.result.run  # the passages the result joins, all marked
            cited = [hit for hit in screen.context if hit.chunk_id in run]
            assert [hit.chunk_id for hit in cited] == list(run)
            assert all(" ".join(hit.text.split()) in screen.cited_text for hit in cited)
            ordinals = [hit.ordinal for hit in screen.context]
            # ... with at least one neighbour on each side, shown as context
            assert min(ordinals) < cited[0].ordinal and max(ordinals) > cited[-1].ordinal
            before = len(screen.context)
            await pilot.press("plus")
            await pilot.pause()
            assert len(screen.context) > before

    run(scenario())


def test_keyboard_only_navigation(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets import OptionList

    from localrag.tui.widgets.conversation import ConversationView

    _, db = handbook
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_ready(pilot)
            await ask(pilot, "Where do visitors park?")
            await ask(pilot, "How are taxis paid back?")
            assert app.sources_pane.sources[0].path.endswith("travel.md")
            # Focus goes from the question to the answers, then the sources, and round.
            await pilot.press("tab")
            assert isinstance(app.focused, ConversationView)
            await pilot.press("up")  # the earlier answer, and its sources beside it
            first = app.conversation_view.turns[0]
            assert app.conversation_view.selected is first
            assert app.sources_pane.sources[0].path.endswith("parking.md")
            await pilot.press("tab")
            assert isinstance(app.focused, OptionList)
            await pilot.press("tab")
            assert isinstance(app.focused, Input)

    run(scenario())


def test_reindex_without_watching_picks_up_changes(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    folder, db = handbook
    app = make_app(db, embedder, use_model=False, watch=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            assert "5 files" in app.status_bar.index_text
            (folder / "hr" / "leave.md").unlink()
            (folder / "it" / "printer.md").write_text("# Printers\n\nMagenta toner only.")
            (folder / "it" / "wifi.md").write_text("# Wi-Fi\n\nThe guest network is open.")
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: "6 files" in app.status_bar.index_text)
            assert app.activity.state == "not watching"
            assert not app.assistant.watching

    run(scenario())


def test_a_saved_conversation_is_deleted_from_the_picker(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    from textual.widgets import OptionList

    from localrag.tui.screens.pickers import ConversationsScreen

    _, db = handbook
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await ask(pilot, "Where do visitors park?")
            assert app.conversation_id is not None
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, ConversationsScreen))
            await pilot.press("d")
            await pilot.pause()
            assert app.screen.query_one("#conversation-list", OptionList).option_count == 0
            assert app.assistant.conversations() == []
            # The answer stays on screen; its next turn starts a new saved conversation.
            assert app.conversation_id is None
            await pilot.press("escape")
            await ask(pilot, "How are taxis paid back?")
            (saved,) = app.assistant.conversations()
            assert saved.turns == 1 and saved.title == "How are taxis paid back?"

    run(scenario())


LONG_HEADING = (
    "Quarterly rotation of the offsite backup tapes, checked and signed by the operations "
    "lead and kept for the auditors"
)


def test_a_heading_too_long_for_the_source_screen_ends_with_an_ellipsis(
    tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    backups = f"# {LONG_HEADING}\n\nBackup tapes are rotated every quarter."
    folder = write_handbook(tmp_path / "handbook", {"security/backups.md": backups})
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([folder])
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_ready(pilot)
            await ask(pilot, "How often are backup tapes rotated?")
            app.conversation_view.focus()
            await pilot.press("1")
            await wait_for(pilot, lambda: isinstance(app.screen, SourceScreen))
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SourceScreen)
            assert screen.source.passage.heading == LONG_HEADING
            heading = screen.query_one("#source-heading")
            # One line, inside the dialog (not clipped by it), and marked as cut.
            assert heading.region.height == 1
            dialog = screen.query_one("#source-dialog")
            assert heading.region.right <= dialog.content_region.right
            shown = heading.render_line(0).text.rstrip()
            assert shown.endswith("…") and len(shown) < len(LONG_HEADING)
            assert LONG_HEADING.startswith(shown[:-1].rstrip())

    run(scenario())


def test_tab_goes_from_the_question_to_the_answers_to_the_sources(handbook, embedder) -> None:  # type: ignore[no-untyped-def]
    from localrag.tui.widgets.conversation import ConversationView

    _, db = handbook
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            await ask(pilot, "Where do visitors park?")
            question = app.query_one("#question", Input)
            sources = app.sources_pane.option_list
            # Tab from the answers reaches the sources (it went back to the question).
            app.conversation_view.focus()
            await pilot.press("tab")
            assert app.focused is sources
            # The whole cycle: question → answers → sources → question.
            question.focus()
            await pilot.press("tab")
            assert isinstance(app.focused, ConversationView)
            await pilot.press("tab")
            assert app.focused is sources
            await pilot.press("tab")
            assert app.focused is question
            # Shift+tab walks the same cycle backwards.
            await pilot.press("shift+tab")
            assert app.focused is sources
            await pilot.press("shift+tab")
            assert isinstance(app.focused, ConversationView)
            await pilot.press("shift+tab")
            assert app.focused is question

    run(scenario())


# Four passages on the same question: an extractive answer far taller than 80×24 shows.
MORE_BACKUPS = {
    f"security/site{i}.md": f"# Backups at site {i}\n\nBackup tapes are rotated every quarter "
    f"at site {i}. " + "The operations lead checks the rotation log and signs it. " * 4
    for i in range(3)
}


def test_the_view_follows_a_finished_answer_to_its_last_line_at_80x24(
    tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    folder = write_handbook(tmp_path / "handbook", MORE_BACKUPS)
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([folder])
    app = make_app(db, embedder, use_model=False)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_ready(pilot)
            await ask(pilot, "How often are backup tapes rotated?")
            view = app.conversation_view
            (turn,) = view.turns
            assert turn.data.mode == "extractive" and len(turn.data.sources) > 1
            await wait_for(pilot, lambda: view.max_scroll_y > 0)  # the answer does not fit
            # The answer's last line (its meta line, under the passages) comes into view.
            meta = turn.query_one(".meta")
            assert "passages" in turn.meta_text
            await wait_for(pilot, lambda: view.region.contains_region(meta.region), timeout=5)
            assert view.scroll_y == view.max_scroll_y

    run(scenario())
