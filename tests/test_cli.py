"""The `localrag` command as a user runs it: index, search, status, eval, models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from localrag.cli import cli
from localrag.store import Store
from tests.helpers.corpus import write_tree


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def indexed(tmp_path: Path, models_env: Path) -> Path:
    docs = tmp_path / "docs"
    write_tree(docs)
    code, out = run("index", str(docs))
    assert code == 0, out
    return docs


def test_index_then_search_prints_ranked_passages_with_locations(indexed):
    code, out = run("index", str(indexed))
    assert code == 0
    assert "5 unchanged" in out and "0 chunks embedded" in out

    code, out = run("search", "hotel costs per night", "-k", "2")
    assert code == 0
    assert out.startswith("1. ")
    assert "travel.html" in out and "line" in out
    assert "Hotel" in out


def test_search_json_is_machine_readable(indexed):
    code, out = run("search", "compost", "--json", "-k", "3")
    assert code == 0
    results = json.loads(out)
    assert results[0]["path"].endswith("notes.md")
    assert results[0]["line_start"] >= 1
    assert {"rank", "score", "location", "heading", "text", "page_start"} <= set(results[0])
    code, out = run("search", "compost", "--json", "--path", "recipes/")
    assert all("recipes/" in r["path"] for r in json.loads(out))


def test_a_query_with_no_words_is_a_usage_error(indexed):
    for query in ("", "???", " -- "):
        result = CliRunner().invoke(cli, ["search", query])
        assert result.exit_code == 2, (query, result.output)  # as click's own usage errors
        assert result.stdout == ""
        assert "Nothing to search for: the query has no words." in result.stderr
    code, out = run("search", "zzzqqqxxx unrelated nonsense", "--mode", "keyword")
    assert code == 0 and out.strip() == "No matching passages."


def test_status_reports_roots_counts_model_and_errors(indexed):
    (indexed / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    run("index")  # no paths: re-index the known roots
    code, out = run("status")
    assert code == 0
    assert str(indexed) in out.replace("\n", "") or "docs" in out
    assert "5 indexed" in out and "1 failed" in out
    assert "all-MiniLM-L6-v2" in out
    assert "broken.pdf" in out

    data = json.loads(run("status", "--json")[1])
    assert data["indexed"] == 5 and data["errors"] == 1
    assert data["problems"][0]["path"].endswith("broken.pdf")
    assert data["db_bytes"] > 0


@pytest.fixture
def own_models(tmp_path: Path, models_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder of this test's own, so installing a model touches no other test."""
    import shutil

    models = tmp_path / "own-models"
    shutil.copytree(models_root / "embedders", models / "embedders", symlinks=True)
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(models))
    return models


def test_status_names_the_language_model_ask_would_use(indexed, own_models, tmp_path):
    from tests.helpers.gguf import write_gguf

    code, out = run("status")
    assert code == 0
    assert "none: answers are extractive" in " ".join(out.split())
    assert json.loads(run("status", "--json")[1])["language_model"] is None

    chat = write_gguf(tmp_path / "helper.gguf")
    assert run("models", "import", str(chat))[0] == 0
    out = " ".join(run("status")[1].split())
    assert "helper (chat)" in out
    model = json.loads(run("status", "--json")[1])["language_model"]
    assert (model["name"], model["kind"], model["problem"]) == ("helper", "chat", None)
    assert model["path"] == str(own_models / "helper.gguf")

    base = write_gguf(tmp_path / "pretrained.gguf", chat_template=None, seed=3)
    assert run("models", "import", str(base))[0] == 0
    assert run("models", "default", "pretrained")[0] == 0
    out = " ".join(run("status")[1].split())
    assert "pretrained (base" in out and "helper" not in out
    assert json.loads(run("status", "--json")[1])["language_model"]["kind"] == "base"

    (own_models / "models.json").write_text("[broken")
    code, out = run("status")
    assert code == 0  # the index status still shows; the model line says what is wrong
    assert "answers are extractive" in " ".join(out.split()) and "is corrupt" in out
    model = json.loads(run("status", "--json")[1])["language_model"]
    assert model["name"] is None and "corrupt" in model["problem"]


def test_status_errors_says_when_no_file_was_skipped_or_failed(indexed):
    code, out = run("status", "--errors")
    assert code == 0
    assert "No files were skipped or failed." in out
    (indexed / "broken.pdf").write_bytes(b"%PDF-1.7 truncated")
    run("index")
    code, out = run("status", "--errors")
    assert "broken.pdf" in out and "No files were skipped" not in out


def test_index_accepts_a_single_file(tmp_path, models_env):
    docs = tmp_path / "docs"
    write_tree(docs)
    notes = docs / "notes.md"
    code, out = run("index", str(notes))
    assert code == 0, out
    assert "1 files: 1 added" in out  # the file alone, not its folder
    data = json.loads(run("status", "--json")[1])
    assert data["roots"] == [str(notes)] and data["indexed"] == 1
    results = json.loads(run("search", "compost", "--json")[1])
    assert {r["path"] for r in results} == {str(notes)}

    # `index` with no PATHS refreshes the file (and nothing beside it).
    with notes.open("a") as fh:
        fh.write("\nThe worm bin behind the shed takes coffee grounds too.\n")
    code, out = run("index")
    assert code == 0 and "1 files: 0 added, 1 updated" in out
    assert json.loads(run("search", "worm bin coffee grounds", "--json", "-k", "1")[1])

    # A file inside a folder that is indexed stays part of that folder.
    code, out = run("index", str(docs))
    assert code == 0, out
    assert json.loads(run("status", "--json")[1])["roots"] == [str(docs)]
    code, out = run("index", str(docs / "docs" / "backup.rst"))
    assert code == 0 and "1 files:" in out and "1 unchanged" in out
    assert json.loads(run("status", "--json")[1])["roots"] == [str(docs)]


def test_index_says_a_missing_path_does_not_exist(tmp_path, models_env):
    missing = tmp_path / "gone.md"
    code, out = run("index", str(missing))
    assert code == 1
    assert f"does not exist: {missing}" in out


def test_eval_retrieval_prints_hit_rates_and_mrr(indexed, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        "\n".join(
            json.dumps(q)
            for q in [
                {"q": "how much sun do tomatoes want", "file": "notes.md", "answer": "six hours"},
                {"q": "lentil soup spices", "file": "recipes/lentil-soup.txt", "answer": "cumin"},
                {"q": "when do backups run", "file": "backup.rst", "answer": "two in the morning"},
            ]
        )
    )
    code, out = run("eval", "retrieval", str(questions), "--json")
    assert code == 0
    rows = {r["mode"]: r for r in json.loads(out)}
    assert set(rows) == {"hybrid", "vector", "keyword"}
    assert rows["hybrid"]["hit@10"] == 1.0
    assert 0 < rows["hybrid"]["mrr"] <= 1
    code, out = run("eval", "retrieval", str(questions), "--mode", "hybrid")
    assert "hit@1" in out and "MRR" in out


def test_user_errors_are_one_line_not_tracebacks(tmp_path, models_env):
    code, out = run("search", "anything", "--db", str(tmp_path / "none.db"))
    assert code == 1
    assert "localrag index FOLDER" in out and "Traceback" not in out
    code, out = run("index", str(tmp_path / "missing-folder"))
    assert code == 1 and "does not exist" in out and "not a folder" not in out


def test_missing_embedder_explains_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(tmp_path / "empty-models"))
    docs = tmp_path / "docs"
    write_tree(docs)
    code, out = run("index", str(docs))
    assert code == 1
    assert "localrag models import-embedder" in out


def test_every_command_has_help():
    def walk(group: click.Group, prefix: str = "") -> None:
        for name, command in group.commands.items():
            assert command.help or command.short_help, f"{prefix}{name} has no help"
            for param in command.params:
                if isinstance(param, click.Option):
                    assert param.help, f"{prefix}{name} {param.opts} has no help"
            if isinstance(command, click.Group):
                walk(command, f"{prefix}{name} ")

    walk(cli)


def _cli_env(models_root: Path, db: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LOCALRAG_MODELS_DIR=str(models_root), LOCALRAG_DB=str(db), PYTHONUNBUFFERED="1")
    return env


def _many_files(root: Path, count: int) -> None:
    root.mkdir()
    for i in range(count):
        paragraphs = [
            f"Report {i}, part {p}: the committee reviewed budget line {i * 7 + p} and "
            f"approved changes to procurement rule {p} for region {i % 9}. " * 4
            for p in range(3)
        ]
        (root / f"report-{i:03}.md").write_text(f"# Report {i}\n\n" + "\n\n".join(paragraphs))


def _wait_for_documents(db: Path, at_least: int, proc: subprocess.Popen, limit: float) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if db.exists() and proc.poll() is None:
            with Store.open(db, create=False) as store:
                count = store.stats().indexed
            if count >= at_least:
                return count
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("indexing made no progress")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_killed_index_run_resumes_and_stays_consistent(tmp_path, models_root, embedder, how):
    docs = tmp_path / "docs"
    _many_files(docs, 40)
    db = tmp_path / "index.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "localrag", "index", str(docs), "--embed-batch", "16"],
        env=_cli_env(models_root, db),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    done_before = _wait_for_documents(db, 1, proc, limit=120)
    proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    if how == "interrupt":
        assert proc.returncode == 130, output
        assert "run the same command again" in output
    with Store.open(db, create=False) as store:
        assert store.integrity_check() == "ok"
        assert done_before <= store.stats().indexed < 40
        # The interrupted index already answers questions.
        assert store.fts_search('"committee"', 1)

    from localrag.indexer import Indexer
    from tests.conftest import CountingEmbedder

    counting = CountingEmbedder(embedder)
    with Store.open(db) as store:
        report = Indexer(store, counting).index([docs])
        assert report.unchanged >= done_before  # finished files were not redone
        resumed = _chunk_set(store)
    with Store.open(tmp_path / "fresh.db") as fresh:
        Indexer(fresh, embedder).index([docs])
        assert resumed == _chunk_set(fresh)
        assert counting.passages < fresh.stats().embeddings


def _chunk_set(store: Store) -> set[tuple[str, int, str]]:
    return {
        tuple(r)
        for r in store.db.execute(
            "SELECT d.path, c.ordinal, c.text FROM chunks c "
            "JOIN documents d ON d.id = c.document_id"
        )
    }


def test_models_list_shows_the_imported_embedder(models_env):
    code, out = run("models", "list")
    assert code == 0
    assert "all-MiniLM-L6-v2" in out and "384" in out


def test_search_mode_choices_are_the_retrievers_modes() -> None:
    """The options spell the modes out (no retrieval import at start-up): they must agree."""
    from typing import get_args

    from localrag.cli.base import SEARCH_MODES
    from localrag.retrieval import Mode

    assert get_args(Mode) == SEARCH_MODES


def test_a_passage_size_too_small_is_refused_by_the_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["index", str(tmp_path), "--db", str(tmp_path / "i.db"), "--chunk-tokens", "4"]
    )
    assert result.exit_code == 2
    assert "--chunk-tokens" in result.output and ">=8" in result.output
    assert not (tmp_path / "i.db").exists()


def test_an_unchanged_index_run_never_starts_the_model(tmp_path: Path, models_env: Path) -> None:
    """Nothing to embed, so onnxruntime is not even imported (a third of a second a run)."""
    import subprocess
    import sys

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Title\n\nSome words about compost.\n")
    db = str(tmp_path / "i.db")
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from localrag.cli import cli\n"
        f"result = CliRunner().invoke(cli, ['index', {str(docs)!r}, '--db', {db!r}, '-q'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(result.output.strip().splitlines()[-1])\n"
        "print('onnxruntime' in sys.modules)\n"
    )
    first = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.split("\n")[:2][1] == "True"  # a new file: the model ran
    again = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    summary, imported = again.stdout.strip().split("\n")[-2:]
    assert "1 unchanged" in summary and imported == "False"


def test_forget_removes_a_folder_and_its_text_but_not_its_files(
    tmp_path: Path, models_env: Path
) -> None:
    keep, drop = tmp_path / "keep", tmp_path / "drop"
    keep.mkdir()
    drop.mkdir()
    (keep / "a.md").write_text("# Garden\n\nThe compost heap is turned weekly.\n")
    (drop / "b.md").write_text("# Secret\n\nThe zqxjvortexmarker project is cancelled.\n")
    db = tmp_path / "i.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["index", str(keep), str(drop), "--db", str(db), "-q"]).exit_code == 0
    result = runner.invoke(cli, ["forget", str(drop), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "Forgot" in result.output and (drop / "b.md").exists()
    found = runner.invoke(cli, ["search", "zqxjvortexmarker", "--db", str(db), "--json"])
    assert all("zqxjvortexmarker" not in r["text"] for r in json.loads(found.output))
    assert b"zqxjvortexmarker" not in db.read_bytes()  # deleted, not left in free pages
    status = runner.invoke(cli, ["status", "--db", str(db), "--json"])
    assert json.loads(status.output)["roots"] == [str(keep.resolve())]
    unknown = runner.invoke(cli, ["forget", str(tmp_path / "other"), "--db", str(db)])
    assert unknown.exit_code == 1 and "is not in the index" in unknown.output


def test_a_refresh_keeps_a_missing_folder_and_says_how_to_forget_it(
    tmp_path: Path, models_env: Path
) -> None:
    here, gone = tmp_path / "here", tmp_path / "gone"
    here.mkdir()
    gone.mkdir()
    (here / "a.md").write_text("# Garden\n\nThe compost heap is turned weekly.\n")
    (gone / "b.md").write_text("# Drive\n\nBackup tapes are rotated every quarter.\n")
    db = tmp_path / "i.db"
    runner = CliRunner()
    assert runner.invoke(cli, ["index", str(here), str(gone), "--db", str(db), "-q"]).exit_code == 0
    (gone / "b.md").unlink()
    gone.rmdir()  # an unmounted drive looks the same
    result = runner.invoke(cli, ["index", "--db", str(db), "-q"])
    assert result.exit_code == 0, result.output
    assert "is missing; its passages are kept" in result.output and "forget" in result.output
    found = runner.invoke(cli, ["search", "backup tapes", "--db", str(db), "--json"])
    assert any("Backup tapes" in r["text"] for r in json.loads(found.output))
