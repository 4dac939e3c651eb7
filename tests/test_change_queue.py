"""The watcher's queue: coalescing, debouncing and ordering, on a clock the test controls."""

from __future__ import annotations

import threading

from localrag.change_queue import ChangeQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(debounce: float = 0.5, max_delay: float = 5.0) -> tuple[ChangeQueue, Clock]:
    clock = Clock()
    return ChangeQueue(debounce=debounce, max_delay=max_delay, clock=clock), clock


def test_many_events_for_one_path_are_one_entry_handed_out_once_quiet() -> None:
    q, clock = make()
    for _ in range(50):
        q.add("/d/a.md")
        clock.now += 0.1
    assert len(q) == 1
    assert q.take_settled() == []  # still being written
    clock.now += 0.5
    assert q.take_settled() == ["/d/a.md"]
    assert len(q) == 0


def test_a_file_written_without_pause_is_still_indexed_after_max_delay() -> None:
    q, clock = make(debounce=0.5, max_delay=2.0)
    q.add("/d/log.txt")
    for _ in range(7):
        clock.now += 0.25
        q.add("/d/log.txt")
    assert q.take_settled() == []
    clock.now += 0.25  # 2 s since the first event, 0.25 s since the last
    assert q.take_settled() == ["/d/log.txt"]


def test_newest_first_and_unfinished_work_goes_behind_new_changes() -> None:
    q, clock = make()
    for name in ("a", "b", "c"):
        q.add(f"/d/{name}")
        clock.now += 0.1
    clock.now += 1
    taken = q.take_settled()
    assert taken == ["/d/c", "/d/b", "/d/a"]
    q.add("/d/new")  # saved while the batch runs
    clock.now += 1
    q.finish(left=["/d/a", "/d/b"])
    assert q.take_settled() == ["/d/new", "/d/a", "/d/b"]


def test_a_path_changed_again_while_being_indexed_comes_back() -> None:
    q, clock = make()
    q.add("/d/a")
    clock.now += 1
    assert q.take_settled() == ["/d/a"]
    assert not q.is_idle()  # taken, not finished
    q.add("/d/a")  # edited during its own indexing
    q.finish(left=["/d/a"])  # and it was not done either: one entry, with the new time
    assert len(q) == 1
    assert q.take_settled() == []  # the new event restarts the debounce
    clock.now += 1
    assert q.take_settled() == ["/d/a"]
    q.finish()
    assert q.is_idle()


def test_wait_settled_wakes_for_new_work_and_for_stop() -> None:
    q = ChangeQueue(debounce=0.01)
    woke = threading.Event()

    def worker() -> None:
        if q.wait_settled(timeout=30):
            woke.set()

    thread = threading.Thread(target=worker)
    thread.start()
    q.add("/d/a")
    thread.join(30)
    assert woke.is_set()

    thread = threading.Thread(target=lambda: q.wait_settled(timeout=30) and woke.clear())
    q.take_settled()
    q.finish()
    thread.start()
    q.wake()
    thread.join(30)
    assert not thread.is_alive()
    assert woke.is_set()  # woken to stop, not because something settled


def test_wait_idle_covers_work_in_hand() -> None:
    q = ChangeQueue(debounce=0.0)
    assert q.wait_idle(0.01)
    q.add("/d/a")
    assert not q.wait_idle(0.01)
    q.take_settled()
    assert not q.wait_idle(0.01)  # being indexed
    q.finish()
    assert q.wait_idle(0.01)
