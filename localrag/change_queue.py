"""Paths with pending changes, coalesced and debounced, waiting for the indexer.

File-system events arrive in bursts: an editor's save is a write, a rename and a few
attribute changes; `git checkout` is thousands of writes. Each path is kept once however many
events name it, and is handed out only when it has been quiet for `debounce` seconds (or has
been changing for `max_delay` seconds, so a file that is appended to forever still gets
indexed). Settled paths come out newest first: an edit saved during a long burst is next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class _Pending:
    first_event: float
    last_event: float


class ChangeQueue:
    """Thread-safe: the observer thread adds, one worker takes."""

    def __init__(
        self,
        debounce: float = 0.25,
        max_delay: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.debounce = debounce
        self.max_delay = max(max_delay, debounce)
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._changed = threading.Condition()
        self._woken = False
        self._busy = False  # paths taken and not yet finished

    def __len__(self) -> int:
        with self._changed:
            return len(self._pending)

    def add(self, path: str) -> None:
        now = self._clock()
        with self._changed:
            entry = self._pending.get(path)
            if entry is not None:
                entry.last_event = now
                return
            self._pending[path] = _Pending(now, now)
            # A new path settles no sooner than any already waiting, so the worker (which
            # sleeps until the soonest of those) only needs waking when the queue was empty.
            if len(self._pending) == 1:
                self._changed.notify_all()

    def finish(self, left: Iterable[str] = ()) -> None:
        """The worker is done with what it took; `left` are paths it did not get to.

        Those count as settled long ago, so newer changes come first. A path that has had a
        new event since it was taken is already back, with that time.
        """
        with self._changed:
            for path in left:
                self._pending.setdefault(path, _Pending(0.0, 0.0))
            self._busy = False
            self._changed.notify_all()

    def is_idle(self) -> bool:
        with self._changed:
            return not self._pending and not self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending or being worked on; False if time ran out."""
        deadline = self._clock() + timeout
        with self._changed:
            while self._pending or self._busy:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def has_settled(self) -> bool:
        with self._changed:
            return self._next_wait(self._clock()) == 0.0

    def take_settled(self) -> list[str]:
        """Remove and return every settled path, most recently changed first.

        When any are returned the queue counts as busy until `finish`.
        """
        now = self._clock()
        with self._changed:
            ready = [(p, e) for p, e in self._pending.items() if self._settled(e, now)]
            for path, _ in ready:
                del self._pending[path]
            self._busy = self._busy or bool(ready)
        ready.sort(key=lambda item: item[1].last_event, reverse=True)
        return [path for path, _ in ready]

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Block until some path has settled (True), `wake` is called or time is up (False)."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._changed:
            while True:
                if self._woken:
                    self._woken = False
                    return False
                now = self._clock()
                wait = self._next_wait(now)
                if wait == 0.0:
                    return True
                if deadline is not None:
                    if now >= deadline:
                        return False
                    wait = min(wait, deadline - now) if wait is not None else deadline - now
                self._changed.wait(wait)

    def wake(self) -> None:
        """Make a waiting `wait_settled` return (used to stop the worker)."""
        with self._changed:
            self._woken = True
            self._changed.notify_all()

    def _settled(self, entry: _Pending, now: float) -> bool:
        return now - entry.last_event >= self.debounce or now - entry.first_event >= self.max_delay

    def _next_wait(self, now: float) -> float | None:
        """Seconds until the next path settles: 0.0 if one has, None if nothing is pending."""
        if not self._pending:
            return None
        soonest = min(
            min(e.last_event + self.debounce, e.first_event + self.max_delay)
            for e in self._pending.values()
        )
        return max(0.0, soonest - now)
