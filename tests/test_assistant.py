"""The session core the TUI drives: models, questions, folders and saved turns, without a screen."""

from __future__ import annotations

from pathlib import Path

import pytest

from localrag.assistant import Assistant
from localrag.errors import ConfigError, ModelError
from localrag.indexer import Indexer
from localrag.models.registry import ModelRegistry
from localrag.store import Store
from tests.helpers.handbook import write_handbook
from tests.helpers.tui import scripted_loader


@pytest.fixture
def assistant(tmp_path: Path, embedder):  # type: ignore[no-untyped-def]
    folder = write_handbook(tmp_path / "handbook")
    db = tmp_path / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([folder])
    session = Assistant(db, embedder=embedder)
    session.open()
    yield session
    session.close()


def test_models_load_by_registered_name_or_not_at_all(assistant, tmp_path: Path, tiny_gguf) -> None:  # type: ignore[no-untyped-def]
    assert assistant.load_model(None) is None  # nothing installed: extractive mode
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00")
    with pytest.raises(ModelError, match=r"broken\.gguf"):
        assistant.load_model(str(broken))
    assert assistant.llm is None and assistant.model_name is None
    registry = ModelRegistry()
    entry = registry.import_file(tiny_gguf["q8_0"], name="tiny-chat")
    assert assistant.load_model(None) == "tiny-chat"  # the only model is the default
    assert assistant.llm is not None
    assistant.load_model(str(registry.path_of(entry)))  # the registered file: its name
    assert assistant.model_name == "tiny-chat"
    assistant.load_model(str(tiny_gguf["q8_0"]))  # an unregistered file: its file name
    assert assistant.model_name == "tiny-qwen2-chat-q8_0"


def test_search_only_never_calls_the_model(assistant, tiny_gguf) -> None:  # type: ignore[no-untyped-def]
    assistant._llm_loader = scripted_loader(tiny_gguf["q4_k_m"], "unused")
    assistant.load_model(None)
    answer = assistant.ask("How often are backup tapes rotated?", None, search_only=True)
    answer.read()
    assert answer.mode == "extractive" and answer.hint is None
    assert answer.sources[0].path.endswith("security/backups.md")
    assert assistant.llm.prompts == []  # type: ignore[union-attr]


def test_folders_added_and_removed(assistant, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="no such folder"):
        assistant.add_folder(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        assistant.add_folder(tmp_path / "file.txt")
    status = assistant.index_status()
    assert status.searchable and status.indexed == 5
    handbook = status.folders[0].path
    assert assistant.remove_folder(handbook)
    after = assistant.index_status()
    assert after.folders == [] and after.chunks == 0 and after.documents == 0


def test_turns_are_saved_into_one_conversation(assistant) -> None:  # type: ignore[no-untyped-def]
    first = assistant.ask("Where do visitors park?", None)
    first.read()
    conversation_id = assistant.save_turn(None, first, stopped=False)
    second = assistant.ask("How are taxis paid back?", None)
    second.read()
    assert assistant.save_turn(conversation_id, second, stopped=True) == conversation_id
    (summary,) = assistant.conversations()
    assert summary.turns == 2 and summary.title == "Where do visitors park?"
    _, turns = assistant.load_conversation(conversation_id)
    assert [t.stopped for t in turns] == [False, True]
    assert assistant.delete_conversation(conversation_id)
    assert assistant.conversations() == []
