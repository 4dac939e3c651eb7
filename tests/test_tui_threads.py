"""UiBridge: a worker thread runs code on a real Textual app's thread, and never hangs when
the app shuts down while it waits."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from textual.app import App

from localrag.tui.threads import Closing, UiBridge


def _in_thread(target) -> tuple[threading.Thread, dict]:  # type: ignore[no-untyped-def]
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = target()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


async def _join(thread: threading.Thread, timeout: float = 5.0) -> None:
    """Let the app's loop run while the worker finishes."""
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not thread.is_alive(), "the worker hung"


def test_a_call_runs_on_the_app_thread_and_returns_its_value() -> None:
    asyncio.run(_runs_on_the_app_thread())


async def _runs_on_the_app_thread() -> None:
    app: App[None] = App()
    async with app.run_test():
        bridge = UiBridge(app)
        app_thread = threading.get_ident()

        async def later(x: int) -> int:
            await asyncio.sleep(0.01)
            return x * 2

        thread, plain = _in_thread(lambda: bridge.call(threading.get_ident))
        await _join(thread)
        assert plain["value"] == app_thread != thread.ident
        thread, awaited = _in_thread(lambda: bridge.call(later, 21))
        await _join(thread)
        assert awaited["value"] == 42


def test_a_worker_waiting_on_the_app_gives_up_when_it_shuts_down() -> None:
    asyncio.run(_gives_up_at_shutdown())


async def _gives_up_at_shutdown() -> None:
    app: App[None] = App()
    async with app.run_test():
        bridge = UiBridge(app)
        never = asyncio.Event()  # the UI never answers: a dialog left open, say
        thread, outcome = _in_thread(lambda: bridge.call(never.wait))
        await asyncio.sleep(0.3)
        assert thread.is_alive()
        bridge.shutting_down.set()
        await _join(thread, timeout=2.0)
        assert isinstance(outcome.get("error"), Closing)
        # After shutdown began, a call does not even start.
        thread, late = _in_thread(lambda: bridge.call(lambda: "ran"))
        await _join(thread)
        assert isinstance(late.get("error"), Closing)


def test_wait_returns_when_set_and_raises_at_shutdown() -> None:
    bridge = UiBridge(App())
    ready = threading.Event()
    threading.Timer(0.05, ready.set).start()
    bridge.wait(ready)  # returns: the event came
    bridge.shutting_down.set()
    with pytest.raises(Closing):
        bridge.wait(threading.Event())
