"""What users install is the wheel: it must hold every file the package reads at run time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _clean_copy(dest: Path) -> Path:
    """The project's files as a fresh clone has them: no build/ or egg-info left by earlier
    builds, which setuptools would quietly reuse (and so hide a missing package-data entry)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file() and not name.startswith(("bench/corpora/", "models/")):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def _build_wheel(tmp_path: Path) -> tuple[Path, Path]:
    """(the clean copy of the project, the wheel built from it)."""
    project = _clean_copy(tmp_path / "project")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(project),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = (tmp_path / "dist").glob("localrag-*.whl")
    return project, wheel


def test_the_wheel_holds_every_file_of_the_package(tmp_path: Path) -> None:
    """The TUI's stylesheet was once left out: `localrag tui` failed from an installed wheel."""
    project, wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.startswith("localrag/")}
    source = {
        path.relative_to(project).as_posix()
        for path in (project / "localrag").rglob("*")
        if path.is_file()
    }
    assert "localrag/tui/app.tcss" in source  # the file that was missing, still read by the app
    assert source - packaged == set()


# Runs in a fresh interpreter with the installed wheel first on the path: the app starts,
# with its stylesheet, and shows its input (the real Textual app, driven by its Pilot).
_START_THE_APP = """
import asyncio, sys
import localrag
from localrag.assistant import Assistant
from localrag.tui.app import LocalragApp

async def main() -> None:
    assistant = Assistant(sys.argv[1])
    app = LocalragApp(assistant, use_model=False, watch=False)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            app.query_one("Input")
            print("started from", localrag.__file__)
    finally:
        assistant.close()

asyncio.run(main())
"""


def test_the_installed_wheel_indexes_searches_and_starts_the_app(
    tmp_path: Path, models_env: Path
) -> None:
    """Not the editable checkout: the wheel a user installs, run from where pip put it."""
    _, wheel = _build_wheel(tmp_path)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    db = str(tmp_path / "index.db")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    where = run("-c", "import localrag; print(localrag.__file__)").stdout.strip()
    assert Path(where).is_relative_to(site)  # the wheel's copy, not the checkout's
    run("-m", "localrag", "index", str(ROOT / "docs"), "--db", db, "-q")
    found = run(
        "-m",
        "localrag",
        "search",
        "how does vector search find its candidates?",
        "--db",
        db,
        "-k",
        "1",
    )
    assert "ARCHITECTURE.md" in found.stdout
    started = run("-c", _START_THE_APP, db)
    assert started.stdout.startswith(f"started from {site}")
