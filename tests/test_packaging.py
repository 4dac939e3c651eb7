"""What users install is the wheel: it must hold every file the package reads at run time."""

from __future__ import annotations

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


def test_the_wheel_holds_every_file_of_the_package(tmp_path: Path) -> None:
    """The TUI's stylesheet was once left out: `localrag tui` failed from an installed wheel."""
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
    with zipfile.ZipFile(wheel) as archive:
        packaged = {name for name in archive.namelist() if name.startswith("localrag/")}
    source = {
        path.relative_to(project).as_posix()
        for path in (project / "localrag").rglob("*")
        if path.is_file()
    }
    assert "localrag/tui/app.tcss" in source  # the file that was missing, still read by the app
    assert source - packaged == set()
