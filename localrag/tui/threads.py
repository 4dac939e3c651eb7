"""Worker threads talking to the app's event loop without ever hanging at shutdown.

The TUI runs opening the index, loading a model, answering and folder changes in threads.
They must hand results to the UI thread, and sometimes wait for its answer. Textual's
`App.call_from_thread` waits without a limit: if the app closes meanwhile, the worker and so
the process hang. `UiBridge` waits in short slices and raises `Closing` once shutdown began.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from textual.app import App

# How often a waiting worker looks whether the app is shutting down.
POLL_S = 0.1


class Closing(Exception):
    """The app is shutting down: a worker stops where it is."""


class UiBridge:
    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self.shutting_down = threading.Event()

    def call(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `callback` (a function or a coroutine function) on the app's thread, wait for
        its result and return it; raises Closing if the app is or starts shutting down."""
        loop = self.app._loop
        if self.shutting_down.is_set() or loop is None:
            raise Closing

        async def call() -> Any:
            with self.app._context():  # what App.call_from_thread does: widgets find their app
                result = callback(*args, **kwargs)
                if asyncio.iscoroutine(result):
                    return await result
                return result

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        while True:
            try:
                return future.result(timeout=POLL_S)
            except FutureTimeout:
                if self.shutting_down.is_set():
                    future.cancel()
                    raise Closing from None

    def wait(self, event: threading.Event) -> None:
        """Wait for `event`; raises Closing if the app starts shutting down first."""
        while not event.wait(POLL_S):
            if self.shutting_down.is_set():
                raise Closing
