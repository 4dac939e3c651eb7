"""The README's first command works as written: its folder indexes, and its question is
answered by the top passage."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from localrag.indexer import Indexer
from localrag.retrieval import Retriever
from localrag.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _first_command() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)\n```", readme, re.S)
    assert block is not None
    return [shlex.split(step) for step in block.group(1).split("&&")]


def test_the_first_command_indexes_docs_and_finds_its_answer_first(
    tmp_path: Path, embedder
) -> None:  # type: ignore[no-untyped-def]
    steps = _first_command()
    (folder,) = next(s[2:] for s in steps if s[:2] == [".venv/bin/localrag", "index"])
    (question,) = next(s[2:] for s in steps if s[:2] == [".venv/bin/localrag", "ask"])
    with Store.open(tmp_path / "index.db") as store:
        report = Indexer(store, embedder).index([ROOT / folder])
        assert report.added >= 1 and not report.problems
        top = Retriever(store, embedder).search(question, 1)[0]
    assert top.path.endswith("docs/ARCHITECTURE.md")
    assert "Vector search" in top.chunk.heading  # the section that answers it
    assert "Hamming distance" in top.chunk.text and "rescores" in top.chunk.text
