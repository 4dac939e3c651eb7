"""Does a word found in a single passage come first? With and without hybrid search's exact lane.

    python bench/exact_terms.py INDEX.db [--embedder NAME]

INDEX.db is an index of a real corpus (e.g. `localrag index bench/corpora/postgresql-15 --db
INDEX.db`). It is copied, and one note is added to the copy: a passage of ordinary text from
the corpus with an invented word in its middle. Each query then runs with every stage and
without the exact lane; the table gives the rank of the passage holding the word (top 10).
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import describe  # noqa: E402
from localrag.embedder import load_embedder  # noqa: E402
from localrag.indexer import Indexer  # noqa: E402
from localrag.retrieval import ALL_STAGES, Retriever, Stages  # noqa: E402
from localrag.store import Store  # noqa: E402

WORD = "zqxjvortexmarker"
QUERIES = (WORD, f"where did I write {WORD}?", f"vacuum {WORD}")


def _note_text(store: Store) -> str:
    """About 3,000 characters of the corpus's own prose, with the invented word halfway."""
    longest = max(
        (hit for hit in store.chunk_hits(list(range(1, 200))).values()),
        key=lambda hit: len(hit.text),
    )
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", longest.text)).split())
    middle = len(text) // 2
    return f"{text[:middle]} See also {WORD}. {text[middle:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("--embedder", default=None)
    args = parser.parse_args()
    embedder = load_embedder(args.embedder)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "index.db"
        shutil.copy(args.index, copy)
        notes = Path(scratch) / "notes"
        notes.mkdir()
        with Store.open(copy) as store:
            (notes / "note.txt").write_text(_note_text(store))
            Indexer(store, embedder).index([notes])
            print(f"# {describe()}")
            print(f"# {store.chunk_count()} passages; rank of the passage holding {WORD!r}")
            print(f"{'query':40} {'all stages':>12} {'no exact lane':>14}")
            for query in QUERIES:
                ranks = []
                for stages in (ALL_STAGES, Stages(exact_lane=False)):
                    results = Retriever(store, embedder, stages).search(query, 10)
                    found = [r.rank for r in results if WORD in r.chunk.text]
                    ranks.append(str(found[0]) if found else "> 10")
                print(f"{query:40} {ranks[0]:>12} {ranks[1]:>14}")


if __name__ == "__main__":
    main()
