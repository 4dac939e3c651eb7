"""No network and no telemetry at run time, proven on the real commands under strace.

conftest blocks Python's `socket.connect` in-process, but onnxruntime's telemetry (a 1DS
uploader written in C++) writes its store when the embedder loads and resolves its collector's
host name from threads Python never sees, about ten seconds later. So each command here runs as a
user runs it: a subprocess under `strace -f`, HOME in a fresh temp folder, and none of the
opt-out or CI variables in its environment. (onnxruntime turns its telemetry off by itself when it
sees CI=true; keeping that would hide a missing opt-out on a CI box.) `index` runs for 30 s and
more, `watch`, the terminal app and the MCP server for 15 s, long enough for the lookup seen
in issue 13.

What counts as reaching the network:
- connect, send, listen or accept on an IPv4/IPv6 socket, to any address, loopback included;
- a DNS lookup in any form: anything to port 53, a connect to nscd's or systemd-resolved's
  socket, or opening /etc/resolv.conf (glibc reads it before its first query, so a lookup
  attempt shows even on a machine with no network at all);
- a telemetry store: onnxruntime's `DeveloperTools` folder or `onnxruntime.db` made or opened
  anywhere, or anything under the temp HOME's .cache/Microsoft.
What does not: an IPv6 socket bound to ::1 that sends nothing (urllib3 probes IPv6 support that
way when fastembed imports it), Unix socket pairs and netlink.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.corpus import write_tree
from tests.helpers.handbook import write_handbook

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed"),
]

ROOT = Path(__file__).resolve().parent.parent
# The lookup came ~10 s after the embedder loaded; the issue asks for 30 s of indexing, which
# starts a few seconds after the process (imports, hashing the model).
INDEX_SECONDS = 36.0
LIVE_SECONDS = 15.0  # how long `watch` and the terminal app run
LIMIT = 90.0  # the longest wait for any one step

# onnxruntime's own list: any of these set to a truthy value switches its telemetry off.
CI_VARIABLES = (
    "CI TF_BUILD GITHUB_ACTIONS GITLAB_CI CIRCLECI TRAVIS JENKINS_URL CODEBUILD_BUILD_ID "
    "BUILDKITE TEAMCITY_VERSION APPVEYOR BITBUCKET_BUILD_NUMBER "
    "SYSTEM_TEAMFOUNDATIONCOLLECTIONURI ORT_RUNNING_UNIT_TESTS"
).split()

TRAFFIC = {"connect", "sendto", "sendmsg", "sendmmsg", "listen", "accept", "accept4"}
FILES = {"open", "openat", "mkdir", "mkdirat"}
SYSCALL = re.compile(r"^(?:\d+\s+)?(\w+)\(")


def _strace_command() -> list[str] | str:
    """The strace prefix this machine supports, or why it cannot trace (ptrace refused...)."""
    base = ["strace", "-f", "-qq", "-yy", "-s", "4096", "-e", "signal=none"]
    tried = ""
    for extra in (["--seccomp-bpf"], []):  # seccomp-bpf: only traced calls stop the process
        probe = [*base, *extra, "-e", "trace=%network", "-o", os.devnull, "true"]
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            return [*base, *extra, "-e", f"trace=%network,{','.join(sorted(FILES))}"]
        tried = done.stderr.strip()
    return tried or "strace failed"


@pytest.fixture(scope="module")
def strace() -> list[str]:
    found = _strace_command()
    if isinstance(found, str):
        pytest.skip(f"strace cannot trace here (ptrace not permitted?): {found}")
    return found


def user_env(home: Path, models_root: Path) -> dict[str, str]:
    """A user's environment: no opt-outs, no CI markers, no XDG folders, HOME of its own."""

    def ours(name: str) -> bool:
        return (
            name in CI_VARIABLES
            or name.startswith(("ORT_", "HF_", "XDG_", "TRANSFORMERS_", "FASTEMBED_"))
            or name.endswith("_OFFLINE")
            or "TELEMETRY" in name
            or name in ("DO_NOT_TRACK", "TOKENIZERS_PARALLELISM")
        )

    env = {k: v for k, v in os.environ.items() if not ours(k)}
    env.update(
        HOME=str(home),
        LOCALRAG_HOME=str(home / "localrag"),
        LOCALRAG_MODELS_DIR=str(models_root),
        PYTHONUNBUFFERED="1",
    )
    return env


def _reaches_out(call: str, line: str) -> bool:
    """Whether one traced call counts as reaching the network (see the module docstring)."""
    if "htons(53)" in line:
        return True  # DNS, whatever the socket
    inet = "AF_INET" in line or "<TCP" in line or "<UDP" in line
    if call in TRAFFIC:
        return inet or "nscd" in line or "systemd/resolve" in line
    if call == "bind":
        return "AF_INET" in line and not re.search(r'"(::1|127\.[\d.]+)"', line)
    if call in FILES:
        return re.search(r"/etc/resolv\.conf|DeveloperTools|onnxruntime\.db", line) is not None
    return False


def network_use(trace: str) -> list[str]:
    """The lines of an strace log that reach, or try to reach, the network."""
    found = []
    for line in trace.splitlines():
        match = SYSCALL.match(line)
        # A "<... resumed>" tail has no match: its call's arguments were on its first line.
        if match is not None and _reaches_out(match.group(1), line):
            found.append(line)
    return found


@dataclass
class Traced:
    """One command run under strace: how it ended, what it printed, what the trace showed."""

    home: Path
    log: Path
    returncode: int | None = None
    output: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def text(self) -> str:
        return "".join(self.output)

    def assert_offline(self) -> None:
        used = network_use(self.log.read_text(errors="replace"))
        stores = sorted(
            str(p.relative_to(self.home))
            for p in self.home.rglob("*")
            if "Microsoft" in p.parts or "onnxruntime" in p.name
        )
        assert not used and not stores, (
            f"reached for the network ({len(used)} calls) or kept telemetry "
            f"(files under HOME: {stores}):\n" + "\n".join(used[:20])
        )


class Run:
    """A command started under strace in its own process group, its output read as it comes."""

    def __init__(
        self,
        strace: list[str],
        argv: list[str],
        home: Path,
        env: dict[str, str],
        *,
        pty: bool = False,
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.traced = Traced(home=home, log=home.parent / f"{home.name}.strace")
        self.started = time.monotonic()
        command = [*strace, "-o", str(self.traced.log), *argv]
        self.master: int | None = None
        self.proc: subprocess.Popen[Any]
        if pty:
            # The terminal app needs a terminal: a pty of 100x30, its output read off the master.
            self.master, slave = os.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
            env = dict(env, TERM="xterm-256color", LANG="C.UTF-8")
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
            )
            os.close(slave)
            readers = [threading.Thread(target=self._read_pty, daemon=True)]
        else:
            self.proc = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            readers = [threading.Thread(target=self._read_pipe, daemon=True)]
        self._readers = readers
        for reader in readers:
            reader.start()

    def _read_pipe(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.traced.output.append(line)

    def _read_pty(self) -> None:
        assert self.master is not None
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the app and strace closed the terminal
                return
            if not chunk:
                return
            self.traced.output.append(chunk.decode("utf-8", errors="replace"))

    def screen_text(self) -> str:
        """What the app drew, without escape sequences (text on one line stays together)."""
        raw = self.traced.text()
        return re.sub(
            r"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][0-9A-Za-z]|.)", "", raw
        )

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + LIMIT
        while not condition():
            assert self.proc.poll() is None, f"exited while waiting for {what}:\n{self.tail()}"
            assert time.monotonic() < deadline, f"no {what} within {LIMIT}s:\n{self.tail()}"
            time.sleep(0.1)

    def alive_until(self, seconds: float) -> None:
        """Keep it running until `seconds` after its start; it must not end on its own."""
        while (left := self.started + seconds - time.monotonic()) > 0:
            assert self.proc.poll() is None, f"ended on its own:\n{self.tail()}"
            time.sleep(min(left, 0.2))

    def signal(self, sig: int) -> None:
        # strace started with -o FILE blocks fatal signals, so the group signal reaches the app.
        os.killpg(self.proc.pid, sig)

    def write(self, keys: str) -> None:
        assert self.master is not None
        os.write(self.master, keys.encode())

    def finish(self, timeout: float = LIMIT) -> Traced:
        try:
            self.traced.returncode = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            for reader in self._readers:
                reader.join(10)
            if self.master is not None:
                os.close(self.master)
        self.traced.seconds = time.monotonic() - self.started
        return self.traced

    def tail(self) -> str:
        return (self.screen_text() if self.master is not None else self.traced.text())[-3000:]


def localrag(*args: str) -> list[str]:
    return [sys.executable, "-m", "localrag", *args]


def write_corpus(folder: Path, documents: int) -> Path:
    """Real English text, Python's own documentation, mixed so that no two chunks repeat."""
    from pydoc_data.topics import topics

    paragraphs = [
        p.strip() for text in topics.values() for p in text.split("\n\n") if len(p.split()) >= 12
    ]
    rng = random.Random(13)
    folder.mkdir(parents=True)
    for i in range(documents):
        body = "\n\n".join(rng.sample(paragraphs, 12))
        (folder / f"notes-{i:04}.md").write_text(f"# Notes {i}\n\n{body}\n")
    return folder


@pytest.fixture(scope="module")
def indexed(
    strace: list[str], models_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Traced, Path]:
    """`localrag index` on a corpus too big to finish, stopped with ctrl+c after 36 s."""
    work = tmp_path_factory.mktemp("no-network")
    # ~36 chunks/s on two cores here: 1000 documents (~4,600 chunks) last minutes.
    corpus = write_corpus(work / "corpus", 1000)
    db = work / "index.db"
    home = work / "index-home"
    run = Run(
        strace, localrag("index", str(corpus), "--db", str(db)), home, user_env(home, models_root)
    )
    run.alive_until(INDEX_SECONDS)
    run.signal(signal.SIGINT)
    return run.finish(), db


def test_index_for_30_seconds(indexed: tuple[Traced, Path]) -> None:
    traced, _ = indexed
    assert traced.returncode == 130, traced.text()
    assert "Interrupted." in traced.text()
    assert traced.seconds >= 30
    traced.assert_offline()


def test_search(
    indexed: tuple[Traced, Path], strace: list[str], models_root: Path, tmp_path: Path
) -> None:
    _, db = indexed
    home = tmp_path / "home"
    query = "how does a for statement iterate over a sequence"
    run = Run(strace, localrag("search", query, "--db", str(db)), home, user_env(home, models_root))
    traced = run.finish()
    assert traced.returncode == 0, traced.text()
    assert "notes-" in traced.text()
    traced.assert_offline()


def test_search_with_a_reranker(
    indexed: tuple[Traced, Path],
    strace: list[str],
    models_root: Path,
    installed_reranker: Path,
    tmp_path: Path,
) -> None:
    """The cross-encoder is a second onnxruntime session, loaded from its folder alone."""
    _, db = indexed
    shutil.copytree(installed_reranker, models_root / "rerankers" / "strace-ce", dirs_exist_ok=True)
    home = tmp_path / "home"
    query = "how does a for statement iterate over a sequence"
    argv = localrag("search", query, "--db", str(db), "--reranker", "strace-ce", "--json")
    traced = Run(strace, argv, home, user_env(home, models_root)).finish()
    assert traced.returncode == 0, traced.text()
    assert "notes-" in traced.text()
    traced.assert_offline()


def test_ask_without_a_model(
    indexed: tuple[Traced, Path], strace: list[str], models_root: Path, tmp_path: Path
) -> None:
    _, db = indexed
    home = tmp_path / "home"
    question = "What does the with statement do?"
    run = Run(
        strace,
        localrag("ask", question, "--db", str(db), "--no-model"),
        home,
        user_env(home, models_root),
    )
    traced = run.finish()
    assert traced.returncode == 0, traced.text()
    assert "notes-" in traced.text()
    traced.assert_offline()


def test_watch_while_files_change(strace: list[str], models_root: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_tree(docs)
    home = tmp_path / "home"
    argv = localrag(
        "watch", str(docs), "--db", str(tmp_path / "index.db"), "--json", "--debounce", "0.1"
    )
    run = Run(strace, argv, home, user_env(home, models_root))
    run.wait_for(lambda: '"event": "idle"' in run.traced.text(), "first idle event")
    (docs / "swifts.md").write_text("# Swifts\n\nSwifts nest under the eaves every May.\n")
    run.wait_for(lambda: "swifts.md" in run.traced.text(), "the new file indexed")
    seen = run.traced.text().count("notes.md")  # the first scan named it already
    with (docs / "notes.md").open("a") as notes:
        notes.write("\n## Bees\n\nThe hive is inspected every Sunday in summer.\n")
    run.wait_for(lambda: run.traced.text().count("notes.md") > seen, "the changed file indexed")
    run.alive_until(LIVE_SECONDS)
    run.signal(signal.SIGINT)
    traced = run.finish()
    assert traced.returncode == 0, traced.text()
    assert '"event": "stopped"' in traced.text()
    traced.assert_offline()


def test_terminal_app(strace: list[str], models_root: Path, tmp_path: Path) -> None:
    folder = write_handbook(tmp_path / "handbook")
    home = tmp_path / "home"
    argv = [sys.executable, "tui.py", str(folder), "--db", str(tmp_path / "index.db"), "--no-model"]
    run = Run(strace, argv, home, user_env(home, models_root), pty=True)
    run.wait_for(lambda: "Ask about your documents" in run.screen_text(), "the first screen")
    run.write("How long is parental leave?\r")
    # The passage that answers, from hr/leave.md, and the line that ends an extractive answer.
    answered = re.compile(r"twenty weeks.*\d+ passages?\b", re.DOTALL)
    run.wait_for(lambda: answered.search(run.screen_text()) is not None, "an extractive answer")
    run.alive_until(LIVE_SECONDS)
    run.write("\x11")  # ctrl+q
    traced = run.finish(timeout=30)
    assert traced.returncode == 0, run.tail()
    traced.assert_offline()


def test_mcp_server(strace: list[str], embedder, models_root: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`localrag mcp` under strace, serving the SDK's own stdio client (which is not traced)."""
    from localrag.indexer import Indexer
    from localrag.store import Store
    from tests.helpers.mcp import McpClient

    folder = write_handbook(tmp_path / "handbook")
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([folder])
    home = tmp_path / "home"
    home.mkdir()
    traced = Traced(home=home, log=tmp_path / "mcp.strace")
    argv = [*strace, "-o", str(traced.log), *localrag("mcp", "--db", str(db), "--no-model")]
    started = time.monotonic()
    env = user_env(home, models_root)
    with McpClient(argv, env, tmp_path / "server.err", cwd=ROOT) as client:
        while time.monotonic() < started + LIVE_SECONDS:  # a client asking now and then
            found = client.data("search", {"query": "How long is parental leave?"})
            assert found["results"][0]["path"].endswith("leave.md")
            asked = client.data("ask", {"question": "Where do visitors park?"})
            assert asked["sources"][0]["path"].endswith("parking.md")
            time.sleep(1.0)
    traced.assert_offline()


def test_the_check_sees_a_lookup_and_a_store(strace: list[str], tmp_path: Path) -> None:
    """The parser and the store check, on a process that resolves a name and writes the store."""
    home = tmp_path / "home"
    code = (
        "import os, socket\n"
        "try:\n"
        "    socket.getaddrinfo('localrag-no-such-host.invalid', 443)\n"
        "except OSError:\n"
        "    pass\n"
        "store = os.path.expanduser('~/.cache/Microsoft/DeveloperTools/.onnxruntime')\n"
        "os.makedirs(store)\n"
        "open(os.path.join(store, 'onnxruntime.db'), 'w').close()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    run = Run(strace, [sys.executable, "-c", code], home, dict(env, HOME=str(home)))
    traced = run.finish()
    assert traced.returncode == 0, traced.text()
    used = network_use(traced.log.read_text())
    lookup = ("resolv.conf", "htons(53)", "nscd", "systemd/resolve")
    assert any(sign in line for line in used for sign in lookup), used
    assert any("DeveloperTools" in line for line in used), used
    with pytest.raises(AssertionError, match=r"onnxruntime\.db"):
        traced.assert_offline()
