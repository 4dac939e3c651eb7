"""`localrag tui` and `python tui.py`: the same command, its options and its refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from localrag.cli import cli

ROOT = Path(__file__).resolve().parent.parent


def test_tui_help_lists_its_options() -> None:
    result = CliRunner().invoke(cli, ["tui", "--help"])
    assert result.exit_code == 0
    for option in ("--db", "--model", "--no-model", "--no-watch", "--polling", "--theme"):
        assert option in result.output


def test_tui_refuses_a_folder_that_is_not_there(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tui", str(tmp_path / "missing"), "--db", "x.db"])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "not a folder" not in result.output
    assert not (tmp_path / "x.db").exists()
    (tmp_path / "notes.md").write_text("# Notes\n")
    result = CliRunner().invoke(cli, ["tui", str(tmp_path / "notes.md"), "--db", "x.db"])
    assert result.exit_code == 2 and "not a folder" in result.output


def test_tui_py_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tui.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: tui.py [OPTIONS] [FOLDERS]...")
    assert "--no-watch" in result.stdout


def test_tui_py_reports_a_broken_database_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("this is not a database")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tui.py"), str(tmp_path), "--db", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"Error: {bad} is not a usable localrag index: file is not a database"
    )


def test_an_unknown_theme_is_a_usage_error_naming_the_known_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tui", "--db", str(tmp_path / "x.db"), "--theme", "nope"])
    assert result.exit_code == 2
    assert "no theme 'nope'" in result.output and "textual-dark" in result.output
    assert "Traceback" not in result.output


def test_a_crash_of_the_app_leaves_one_line_and_a_private_log(
    tmp_path: Path, capfd, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Textual would print the traceback, locals included, over the terminal."""
    from localrag.assistant import Assistant
    from localrag.tui.app import LocalragApp, crash_log_path

    class BrokenApp(LocalragApp):
        CSS_PATH = "no-such-stylesheet.tcss"  # a start-up failure, as a wheel without its CSS

    monkeypatch.setenv("LOCALRAG_HOME", str(tmp_path / "home"))
    assistant = Assistant(tmp_path / "x.db")
    app = BrokenApp(assistant, use_model=False, watch=False)
    try:
        app.run(headless=True)
    finally:
        assistant.close()
    assert app.return_code == 1
    log = crash_log_path()
    assert "no-such-stylesheet.tcss" in log.read_text()
    assert log.stat().st_mode & 0o077 == 0
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out
