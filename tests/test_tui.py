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
from tests.handbook import write_handbook
from tests.tui_helpers import ask, make_app, run, scripted_loader, wait_for, wait_ready

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
    app = make_app(db, embedder, scripted_loader(tiny_gguf["q4_k_m"], LEAVE_ANSWER))

    async def scenario() -> None:
        async with app.run_test(size=(120, 36)) as pilot:
            await wait_ready(pilot)
            assert app.model_state == "ready"
            assert "model:" in app.status_bar.model_text
            await ask(pilot, "How long is parental leave for new parents?")
            (turn,) = app.conversation_view.turns
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
