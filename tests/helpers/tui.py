"""Building the real TUI over a real index for Pilot tests, and waiting on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input

from localrag.assistant import Assistant
from localrag.llm import LLMSettings, LocalLLM
from localrag.tui.app import LocalragApp
from tests.helpers.llm import ScriptedLLM


class SlowLLM(ScriptedLLM):
    """A scripted real model that pauses between pieces, so a test can stop it mid-answer."""

    def __init__(self, llm: LocalLLM, *answers: str, delay: float = 0.05) -> None:
        super().__init__(llm, *answers)
        self.delay = delay
        self.pieces_sent = 0

    def stream(self, prompt: Sequence[int], **kwargs: Any) -> Iterator[str]:
        for piece in super().stream(prompt, **kwargs):
            time.sleep(self.delay)
            self.pieces_sent += 1
            yield piece


def scripted_loader(gguf: Path, *answers: str, slow: bool = False) -> Callable[[str | None], Any]:
    """Loads a fresh tiny model each time (the app closes the one it had)."""

    def load(name: str | None) -> ScriptedLLM:
        llm = LocalLLM.load(gguf, LLMSettings(n_ctx=1024, max_tokens=48, temperature=0.0))
        return SlowLLM(llm, *answers) if slow else ScriptedLLM(llm, *answers)

    return load


def make_app(
    db: Path,
    embedder: Any,
    loader: Callable[[str | None], Any] | None = None,
    *,
    use_model: bool = True,
    watch: bool = False,
    polling: bool = False,
    model_name: str | None = None,
    theme: str | None = None,
) -> LocalragApp:
    assistant = Assistant(db, embedder=embedder, llm_loader=loader)
    return LocalragApp(
        assistant,
        use_model=use_model,
        model_name=model_name,
        watch=watch,
        polling=polling,
        theme=theme,
    )


async def wait_for(pilot: Pilot[Any], condition: Callable[[], object], timeout: float = 20) -> None:
    """Let the app run until `condition()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {condition}")
        await pilot.pause(0.05)


async def wait_ready(pilot: Pilot[Any]) -> LocalragApp:
    """Until the index is open and the model (or its absence) is settled."""
    app = pilot.app
    assert isinstance(app, LocalragApp)
    await wait_for(pilot, lambda: app.index_status is not None and app.model_state != "loading")
    return app


async def ask(pilot: Pilot[Any], question: str, *, wait: bool = True) -> None:
    app = pilot.app
    assert isinstance(app, LocalragApp)
    box = app.query_one("#question", Input)
    box.focus()
    box.value = question
    await pilot.press("enter")
    await pilot.pause()
    if wait:
        await wait_for(pilot, lambda: not app.generating)
        await pilot.pause()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
