"""SVG snapshots of the main screens: what a person sees, at 80×24 and wider, dark and light.

Regenerate after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from localrag.indexer import Indexer
from localrag.store import Store
from localrag.tui.screens.source import SourceScreen
from tests.helpers.handbook import write_handbook
from tests.helpers.tui import ask, make_app, wait_for, wait_ready


@pytest.fixture
def handbook_db(tmp_path: Path, embedder) -> Path:  # type: ignore[no-untyped-def]
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([write_handbook(tmp_path / "handbook")])
    return db


async def _settle(pilot: Pilot[Any]) -> None:
    """No blinking cursor, no toasts: the picture must not depend on timing."""
    app = pilot.app
    for box in app.query(Input):
        box.cursor_blink = False
    app.clear_notifications()
    await pilot.pause()


def _answered(question: str, *, source: bool = False):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Pilot[Any]) -> None:
        app = await wait_ready(pilot)
        await ask(pilot, question)
        if source:
            app.conversation_view.focus()
            await pilot.press("1")
            await wait_for(pilot, lambda: isinstance(app.screen, SourceScreen))
        await _settle(pilot)

    return run_before


def test_answer_with_sources_wide_dark(snap_compare, handbook_db: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    app = make_app(handbook_db, embedder, lambda name: None)
    run_before = _answered("Where do visitors park?")
    assert snap_compare(app, terminal_size=(120, 32), run_before=run_before)


def test_answer_at_80x24_light(snap_compare, handbook_db: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    app = make_app(handbook_db, embedder, lambda name: None, theme="textual-light")
    run_before = _answered("How often are backup tapes rotated?")
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_source_in_context_at_80x24(snap_compare, handbook_db: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    app = make_app(handbook_db, embedder, lambda name: None)
    run_before = _answered("How often are backup tapes rotated?", source=True)
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_empty_knowledge_base_welcome(snap_compare, tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    app = make_app(tmp_path / "new.db", embedder, lambda name: None)

    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_ready(pilot)
        await _settle(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
