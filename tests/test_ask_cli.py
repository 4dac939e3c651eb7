"""`localrag ask` as a user runs it: with no model, with an imported GGUF, as JSON, in a chat."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from localrag.cli import cli
from tests.helpers.gguf import write_gguf
from tests.helpers.handbook import write_handbook


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def handbook(tmp_path: Path, models_env: Path) -> Path:
    folder = write_handbook(tmp_path / "handbook")
    assert run("index", str(folder)).exit_code == 0
    return folder


@pytest.fixture
def installed_model(tmp_path: Path, models_env: Path, tiny_gguf, monkeypatch) -> str:  # type: ignore[no-untyped-def]
    """A models folder holding the embedder and one imported chat model (the default)."""
    models = tmp_path / "models"
    shutil.copytree(models_env / "embedders", models / "embedders", symlinks=True)
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(models))
    result = run("models", "import", str(tiny_gguf["q4_k_m"]), "--name", "tiny")
    assert result.exit_code == 0, result.output
    return "tiny"


@pytest.fixture
def own_models(tmp_path: Path, models_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder of this test's own (the embedder linked in), to install into or break."""
    models = tmp_path / "own-models"
    shutil.copytree(models_env / "embedders", models / "embedders", symlinks=True)
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(models))
    return models


@pytest.fixture
def registered_model(own_models: Path, tmp_path: Path) -> str:
    """A chat GGUF with a valid header, installed as the default (never loaded by these tests)."""
    result = run("models", "import", str(write_gguf(tmp_path / "header-only.gguf")))
    assert result.exit_code == 0, result.output
    return "header-only"


def test_without_a_model_ask_shows_passages_and_how_to_add_one(handbook: Path) -> None:
    result = run("ask", "How long can new parents stay at home?")
    assert result.exit_code == 0, result.output
    assert "[1] handbook/hr/leave.md (line 3)" in result.output
    assert "twenty weeks" in result.output
    assert "localrag models pull" in result.output
    assert "Sources" in result.output


def test_ask_streams_a_generated_answer_then_its_sources(
    handbook: Path, installed_model: str
) -> None:
    result = run("ask", "How long can new parents stay at home?", "--max-tokens", "16", "-v")
    assert result.exit_code == 0, result.output
    assert "Sources" in result.output
    assert "handbook/hr/leave.md  line 3" in result.output
    assert "models pull" not in result.output  # a model answered
    assert "prompt tokens" in result.output and "tokens/s" in result.output


def test_ask_json_has_the_answer_and_numbered_sources(handbook: Path, installed_model: str) -> None:
    result = run("ask", "How long can new parents stay at home?", "--json", "--max-tokens", "8")
    payload = json.loads(result.stdout)
    assert payload["mode"] == "generated"
    first = payload["sources"][0]
    assert first["number"] == 1 and first["path"].endswith("hr/leave.md")
    assert first["line_start"] == 3 and "twenty weeks" in first["text"]
    assert payload["stats"]["prompt_tokens"] > 0
    assert isinstance(payload["invalid_citations"], list)


def test_no_model_flag_and_off_topic_questions(handbook: Path, installed_model: str) -> None:
    extractive = json.loads(run("ask", "Where do staff park?", "--no-model", "--json").stdout)
    assert extractive["mode"] == "extractive"
    off_topic = json.loads(run("ask", "Who won the 1998 world cup?", "--json").stdout)
    assert off_topic["mode"] == "not_found" and off_topic["sources"] == []


def test_collection_questions_from_the_command_line(handbook: Path) -> None:
    result = run("ask", "Which files mention tapes?", "--json")
    payload = json.loads(result.stdout)
    assert payload["mode"] == "collection"
    assert payload["collection"]["count"] == 1
    assert payload["collection"]["files"][0]["path"].endswith("security/backups.md")


def test_chat_keeps_the_conversation(handbook: Path) -> None:
    result = run(
        "ask",
        "--chat",
        "How do I reach the office network from home?",
        input="and how long does it stay connected?\n/new\nWhere do staff park their cars?\n\n",
    )
    assert result.exit_code == 0, result.output
    first, follow_up, new, parking, _end = result.output.split("› ")
    assert "it/vpn.md" in first
    assert "it/vpn.md" in follow_up  # "it" was understood as the VPN from the first question
    assert new.startswith("New conversation.")
    assert "facilities/parking.md" in parking
    assert result.output.count("localrag models pull") == 1  # the hint is given once


def test_a_bad_model_file_is_named_in_the_error(handbook: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 10)
    result = CliRunner().invoke(cli, ["ask", "parking?", "--model", str(bad)])
    assert result.exit_code == 1
    assert "broken.gguf" in result.output and "truncated" in result.output


def test_an_unknown_model_name_lists_the_installed_ones(
    handbook: Path, installed_model: str
) -> None:
    result = CliRunner().invoke(cli, ["ask", "parking?", "--model", "nonesuch"])
    assert result.exit_code == 1
    assert "nonesuch" in result.output and "tiny" in result.output


def test_asking_never_touches_the_network(handbook: Path, installed_model: str) -> None:
    from tests.helpers.embedder import block_network

    with block_network() as attempts:
        generated = run("ask", "How long can new parents stay at home?", "--max-tokens", "8")
        collection = run("ask", "Which files mention tapes?")
    assert generated.exit_code == 0 and collection.exit_code == 0
    assert attempts == []


def test_no_model_flag_says_no_model_was_asked_for_not_that_none_is_installed(
    handbook: Path, registered_model: str
) -> None:
    result = run("ask", "Where do visitors park?", "--no-model")
    assert result.exit_code == 0, result.output
    assert "facilities/parking.md" in result.stdout
    assert "No language model is installed" not in result.output  # one is: it was not asked for
    assert "no language model was asked for" in result.stderr
    assert "--no-model" in result.stderr  # and how to have one answer
    payload = json.loads(run("ask", "Where do visitors park?", "--no-model", "--json").stdout)
    assert payload["mode"] == "extractive" and "was asked for" in payload["hint"]


def _one_model_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "could not be loaded" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_corrupt_models_json_falls_back_to_passages_and_says_why(
    handbook: Path, own_models: Path
) -> None:
    (own_models / "models.json").write_text("{this is not json")
    result = run("ask", "Where do visitors park?")
    assert result.exit_code == 0, result.output
    assert "facilities/parking.md" in result.stdout  # the passages, as the TUI shows them
    line = _one_model_line(result.stderr)
    assert "models.json is corrupt" in line
    assert "No language model is installed" not in result.output
    payload = json.loads(run("ask", "Where do visitors park?", "--json").stdout)
    assert payload["mode"] == "extractive" and "models.json is corrupt" in payload["hint"]


def test_without_llama_cpp_ask_falls_back_to_passages_and_says_why(
    handbook: Path, registered_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not producible for real in the dev venv: a None entry makes `import llama_cpp` fail.
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    monkeypatch.setitem(sys.modules, "llama_cpp.llama", None)
    result = run("ask", "Where do visitors park?")
    assert result.exit_code == 0, result.output
    assert "facilities/parking.md" in result.stdout
    line = _one_model_line(result.stderr)
    assert "needs llama-cpp-python" in line and "pip install" in line


def test_a_question_with_no_words_is_a_usage_error(handbook: Path) -> None:
    for question in ("", "?!..."):
        result = CliRunner().invoke(cli, ["ask", question])
        assert result.exit_code == 2, (question, result.output)
        assert result.stdout == ""
        assert "Usage:" in result.stderr


def test_the_model_is_loaded_only_when_an_answer_needs_it(handbook: Path, own_models: Path) -> None:
    """An off-topic question or a collection question is answered without the model: with a
    broken default model, only a question the documents answer runs into it."""
    (own_models / "models.json").write_text("{this is not json")
    for question in ("Who won the 1966 football world cup final?", "which files mention parking?"):
        result = run("ask", question)
        assert result.exit_code == 0, result.output
        assert "models.json is corrupt" not in result.output, question
    result = run("ask", "Where do visitors park?")
    assert "models.json is corrupt" in _one_model_line(result.stderr)
