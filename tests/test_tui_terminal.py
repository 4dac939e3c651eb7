"""The terminal app run for real: `python tui.py` in a tmux pane, driven by keystrokes.

Pilot tests (test_tui.py) drive the app inside its own event loop; these run the real command
in a real terminal, so they catch what only a terminal shows: the first screen, widgets that
cover each other, keys that never reach the app, tracebacks on exit. The tmux server has its
own socket, so nothing here touches a user's tmux. No timing is asserted: the time to the first
screen is printed (`pytest -s`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.handbook import write_handbook

# Skipped before any fixture runs (building the embedder takes seconds).
pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed: the real-terminal tests need it"
)

ROOT = Path(__file__).resolve().parent.parent
WIDTH, HEIGHT = 100, 30
FIRST_SCREEN = ("Ask about your documents", "palette")  # the input's placeholder, the footer
STATUS_BAR = ("handbook", "extractive mode — no model")
FOOTER_HINTS = ("^n New chat", "^t Search only", "f2 Model", "f3 Folders")


class Terminal:
    """One detached tmux session on a private server, running one command."""

    def __init__(self, env: dict[str, str], rc_file: Path) -> None:
        self.rc_file = rc_file
        self.socket = f"localrag-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.name = "app"
        self.env = env
        self.screen = ""

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # -f /dev/null: no user configuration; the server inherits self.env.
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=10,
        )

    def start(self, argv: list[str]) -> None:
        # The variables are also on the command line, in case a server already had the socket.
        keep = ("LOCALRAG_HOME", "LOCALRAG_MODELS_DIR", "HF_HUB_OFFLINE", "TERM", "LANG")
        app = shlex.join(["env", *(f"{k}={self.env[k]}" for k in keep), *argv])
        # sh, whatever the user's shell is, records the exit status for exit_status().
        command = shlex.join(["sh", "-c", f"{app}; echo $? > {shlex.quote(str(self.rc_file))}"])
        self.tmux(
            "new-session", "-d", "-s", self.name, "-x", str(WIDTH), "-y", str(HEIGHT),
            "-c", str(ROOT), command,
            ";", "set-option", "-t", self.name, "remain-on-exit", "on",
        )  # fmt: skip

    def capture(self) -> str:
        result = self.tmux("capture-pane", "-p", "-t", self.name, check=False)
        if result.returncode == 0:
            self.screen = result.stdout
        return self.screen

    def wait_for(self, condition: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        """Poll the pane until `condition(screen)`; fail showing the last screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if condition(screen):
                return screen
            if self.exit_status() is not None:
                raise AssertionError(f"the app exited while waiting for {what}:\n{screen}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(0.05)

    def wait_for_text(self, *texts: str, timeout: float = 30) -> str:
        return self.wait_for(lambda s: all(t in s for t in texts), repr(texts), timeout)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.name, "-l", text)

    def press(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.name, *keys)

    def exit_status(self) -> int | None:
        """The command's exit status once it has ended, else None.

        The shell around the command writes it to a file: tmux itself sometimes leaves the
        pane dead with no status (the child not yet reaped), so `#{pane_dead_status}` is not
        enough. remain-on-exit keeps the pane, so its screen after exit can still be read.
        """
        try:
            text = self.rc_file.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text else None

    def close(self) -> None:
        """Stop this private server and remove its socket (tmux leaves the file behind)."""
        found = self.tmux("display-message", "-p", "#{socket_path}", check=False)
        self.tmux("kill-server", check=False)
        if found.returncode == 0 and found.stdout.strip():
            Path(found.stdout.strip()).unlink(missing_ok=True)


@pytest.fixture
def tmux_env(tmp_path: Path, models_env: Path) -> dict[str, str]:
    """The environment a user with an imported embedder runs the app in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
    env.update(
        LOCALRAG_HOME=os.environ["LOCALRAG_HOME"],
        LOCALRAG_MODELS_DIR=str(models_env),
        HF_HUB_OFFLINE="1",
        TERM="xterm-256color",
        LANG="C.UTF-8",
    )
    env.pop("LC_ALL", None)
    return env


@pytest.fixture
def indexed_handbook(tmp_path: Path, tmux_env: dict[str, str]) -> tuple[Path, Path]:
    """(folder, database): the handbook indexed by `localrag index`, as a user would."""
    folder = write_handbook(tmp_path / "handbook")
    db = tmp_path / "index.db"
    subprocess.run(
        [sys.executable, "-m", "localrag", "index", str(folder), "--db", str(db)],
        env=tmux_env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return folder, db


@pytest.fixture
def terminal(tmux_env: dict[str, str], tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmux_env, tmp_path / "exit-status")
    try:
        yield term
    finally:
        term.close()


def start_app(terminal: Terminal, db: Path, *options: str) -> float:
    """Launch `python tui.py`; returns seconds until the first screen showed."""
    started = time.monotonic()
    terminal.start([sys.executable, "tui.py", "--db", str(db), "--no-model", *options])
    terminal.wait_for_text(*FIRST_SCREEN)
    elapsed = time.monotonic() - started
    print(f"\nfirst screen after {elapsed * 1000:.0f} ms (tmux {WIDTH}x{HEIGHT})")
    return elapsed


def answered(screen: str) -> bool:
    """An extractive answer is complete: its turn's last line says how many passages it shows."""
    return re.search(r"^█\s*\d+ passages?\b", screen, re.MULTILINE) is not None


def finished(screen: str) -> bool:
    """Answered, and the app is idle again: the footer's "esc Stop" has gone."""
    return answered(screen) and "esc Stop" not in screen


def quit_app(terminal: Terminal) -> None:
    """ctrl+q ends the process cleanly, with nothing printed after the app's screen."""
    terminal.press("C-q")
    deadline = time.monotonic() + 5
    while (status := terminal.exit_status()) is None:
        assert time.monotonic() < deadline, f"still running 5 s after ctrl+q:\n{terminal.screen}"
        time.sleep(0.05)
    left = terminal.capture()
    assert status == 0, f"exit status {status}; the terminal after exit:\n{left}"
    assert "Traceback" not in left and "Exception" not in left, left


def test_question_answer_and_quit_in_a_real_terminal(
    indexed_handbook: tuple[Path, Path], terminal: Terminal
) -> None:
    _, db = indexed_handbook
    start_app(terminal, db, "--no-watch")
    # The status bar: which knowledge base is open, and that no model answers.
    terminal.wait_for_text(*STATUS_BAR, timeout=15)

    terminal.type("Where do visitors park?")
    terminal.wait_for_text("Where do visitors park?")  # keys reach the focused input
    terminal.press("Enter")
    screen = terminal.wait_for(finished, "the answer")
    assert "› Where do visitors park?" in screen
    assert "level one is for" in screen and "visitors" in screen  # the passage
    assert "handbook/facilities/parking.md" in screen  # its source, root-relative
    assert "Sources · 1 cited" in screen  # the sources pane lists it
    assert "Ask about your documents" in screen  # the input was cleared for the next one
    assert all(t in screen for t in STATUS_BAR), screen  # and the status bar stays
    for hint in FOOTER_HINTS:
        assert hint in screen, f"footer hint {hint!r} missing:\n{screen}"
    quit_app(terminal)


def test_watching_picks_up_a_new_file_while_the_app_runs(
    indexed_handbook: tuple[Path, Path], terminal: Terminal
) -> None:
    folder, db = indexed_handbook
    start_app(terminal, db)
    (folder / "facilities" / "canteen.md").write_text(
        "# Canteen\n\nThe canteen serves lunch from noon until two on weekdays.\n"
    )
    # Ask until the watcher has indexed the file; ctrl+n starts over between attempts.
    deadline = time.monotonic() + 30
    while True:
        terminal.type("When is lunch served in the canteen?")
        terminal.press("Enter")
        screen = terminal.wait_for(finished, "the answer")
        if "facilities/canteen.md" in screen:
            break
        assert time.monotonic() < deadline, f"the new file was never found:\n{screen}"
        terminal.press("C-n")
        terminal.wait_for(lambda s: not answered(s), "a new conversation")
        time.sleep(0.5)
    assert "serves lunch from noon" in screen
    terminal.wait_for_text("handbook · 6 files", "watching", timeout=15)  # the status bar
    quit_app(terminal)
