"""Questions about the collection, answered from a real index rather than top-k passages."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from localrag import collection
from localrag.collection import (
    CollectionAnswer,
    CollectionQuery,
    CollectionRow,
    answer_collection_question,
    detect_collection_question,
)
from localrag.config import IndexSettings
from localrag.embedder import Embedder
from localrag.indexer import Indexer
from localrag.retrieval import Retriever
from localrag.store import Store
from tests.helpers.corpus import write_tree

Index = tuple[Store, Retriever, Path]

# More airship logs than an answer lists, so the count must come from the whole index.
AIRSHIP_LOGS = 13
LONG_LOG_SECTIONS = 4  # sections of the long log, each naming the zeppelin once


def _airship_log(n: int) -> str:
    return (
        f"# Flight log {n}\n\nThe zeppelin left the hangar at dawn with {n} passengers aboard "
        f"and crossed the lake in {20 + n} minutes at low altitude.\n"
    )


def _long_log() -> str:
    filler = (
        "The crew checked the gas cells, the ballast tanks, the rudder cables and the engine "
        "gondolas one by one, writing every reading into the ledger before the next watch. "
    )
    sections = [
        f"## Watch {i}\n\n{filler * 3}At the end of watch {i} the zeppelin turned north.\n"
        for i in range(1, LONG_LOG_SECTIONS + 1)
    ]
    return "# Long voyage\n\n" + "\n".join(sections)


SPECIAL_TXT = (
    'Edit pg_hba.conf to allow "trust" authentication for local sockets. '
    "The operator NEAR(alpha, beta) and a bare AND are FTS syntax, and O'Reilly wrote about it."
)

EXTRA_FILES = {
    **{f"airships/log-{n:02d}.md": _airship_log(n) for n in range(1, AIRSHIP_LOGS + 1)},
    "airships/long-voyage.md": _long_log(),
    "airships/history.md": "# History\n\nThe first rigid airship flew in 1900 over a lake "
    "in southern Germany.",
    "airships/drafts/route.md": "# Route draft\n\nA draft of the northern route over the hills.",
    "policy/drafts/remote-work.md": "# Remote work draft\n\nStaff may work from home twice a "
    "week when their team agrees.",
    "archive/2023/summary.txt": "Annual summary: the garden produced forty kilos of tomatoes.",
    "archive/2023/budget.txt": "Budget notes: seeds, compost and a new hose for the garden.",
    "config/special.txt": SPECIAL_TXT,
    "misc/dump.txt": "",  # replaced by binary bytes below: skipped
    "misc/broken.pdf": "",  # replaced by garbage below: failed
}


def _write_corpus(root: Path) -> None:
    write_tree(root)
    for name, text in EXTRA_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "misc/dump.txt").write_bytes(b"\x00\x01\x02binary\x00" * 64)
    (root / "misc/broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[Index]:
    """(store, retriever, root) over the corpus, indexed once for the module."""
    root = tmp_path_factory.mktemp("collection") / "library"
    _write_corpus(root)
    store = Store.open(root.parent / "index.db")
    # Small passages so the long log spans several of them.
    Indexer(store, embedder, IndexSettings(chunk_tokens=96)).index([root])
    yield store, Retriever(store, embedder), root.resolve()
    store.close()


def ask(index: Index, question: str) -> CollectionAnswer:
    store, retriever, _ = index
    query = detect_collection_question(question)
    assert query is not None, question
    return answer_collection_question(store, retriever, query)


def _names(rows: Iterable[CollectionRow]) -> list[str]:
    return [Path(row.path).name for row in rows]


# -- detection ------------------------------------------------------------------------------------

DETECTED = [
    # files mentioning X: "mention"-like verbs match the phrase, "about"-like ones the words
    ("which files mention zeppelin?", "files_mentioning", "zeppelin", "phrase"),
    ("What documents talk about garden tools?", "files_mentioning", "garden tools", "words"),
    ("where is pg_hba.conf mentioned?", "files_mentioning", "pg_hba.conf", "phrase"),
    ("find files containing NEAR(alpha, beta)", "files_mentioning", "NEAR(alpha, beta)", "phrase"),
    ("list files that mention the hangar", "files_mentioning", "hangar", "phrase"),
    ("Which of my notes discuss compost?", "files_mentioning", "compost", "words"),
    ('which documents mention "the end"?', "files_mentioning", "the end", "phrase"),
    ("which docs are about remote work", "files_mentioning", "remote work", "words"),
    ("in which files is the hangar mentioned?", "files_mentioning", "hangar", "phrase"),
    ("which documents does zeppelin appear in?", "files_mentioning", "zeppelin", "phrase"),
    ("where does ballast appear in my notes?", "files_mentioning", "ballast", "phrase"),
    ("do any files mention tomatoes?", "files_mentioning", "tomatoes", "phrase"),
    ("are there any documents about backups?", "files_mentioning", "backups", "words"),
    ("is compost mentioned anywhere?", "files_mentioning", "compost", "phrase"),
    ("what notes do you have on tomatoes?", "files_mentioning", "tomatoes", "words"),
    (
        "can you tell me which files mention lentils, please?",
        "files_mentioning",
        "lentils",
        "phrase",
    ),
    ("show me all documents that talk about travel", "files_mentioning", "travel", "words"),
    ("files mentioning “zeppelin”", "files_mentioning", "zeppelin", "phrase"),
    ("which papers discuss garden tools in them?", "files_mentioning", "garden tools", "words"),
    ("which file mentions the lake?", "files_mentioning", "lake", "phrase"),
    ("which docs contain the word dawn?", "files_mentioning", "dawn", "phrase"),
    ("search for files with the term hangar", "files_mentioning", "hangar", "phrase"),
    ("what documents contain information about taxes?", "files_mentioning", "taxes", "words"),
    ("list files that mention the recipes folder", "files_mentioning", "recipes folder", "phrase"),
    # how many documents about Y
    ("how many documents are about gardening?", "count_about", "gardening", "words"),
    ("How many files mention zeppelin", "count_about", "zeppelin", "phrase"),
    ("how many notes do I have about tomatoes?", "count_about", "tomatoes", "words"),
    ("how many of my files contain 'PX-4471'?", "count_about", "PX-4471", "phrase"),
    ("how many documents are there about the garden?", "count_about", "garden", "words"),
    # folder listings
    ("list what's in folder recipes", "folder_listing", "recipes", "phrase"),
    ("what files are in archive/2023/", "folder_listing", "archive/2023/", "phrase"),
    ("show the contents of folder docs", "folder_listing", "docs", "phrase"),
    ("what's in airships/?", "folder_listing", "airships/", "phrase"),
    ("what's in the drafts folder?", "folder_listing", "drafts", "phrase"),
    ("what is inside my notes directory", "folder_listing", "notes", "phrase"),
    ("list all files under archive/2023", "folder_listing", "archive/2023", "phrase"),
    ("how many files are in folder misc?", "folder_listing", "misc", "phrase"),
    ("what does the folder 'My Notes' contain?", "folder_listing", "My Notes", "phrase"),
    ("show me everything in ~/notes", "folder_listing", "~/notes", "phrase"),
    # overview
    ("what documents do you have?", "overview", "", "phrase"),
    ("What's in the index?", "overview", "", "phrase"),
    ("how many files are indexed?", "overview", "", "phrase"),
    ("which documents are in your knowledge base?", "overview", "", "phrase"),
    ("how many documents do you have", "overview", "", "phrase"),
    ("list all files", "overview", "", "phrase"),
    ("what kinds of documents do you have?", "overview", "", "phrase"),
    ("give me an overview of the collection", "overview", "", "phrase"),
]


@pytest.mark.parametrize(("question", "kind", "subject", "match"), DETECTED)
def test_detects_collection_questions(question: str, kind: str, subject: str, match: str):
    query = detect_collection_question(question)
    assert query is not None
    assert (query.kind, query.subject) == (kind, subject)
    if kind in ("files_mentioning", "count_about"):
        assert query.match == match
    assert query.question == question


# Ordinary questions, many about files or folders in the subject matter: a miss only costs a
# normal answer, a false catch replaces the answer with a file list.
ORDINARY = [
    "which file format does PostgreSQL use for WAL?",
    "how many connections can postgres handle?",
    "what is a partial index?",
    "where is the config file?",
    "which files does initdb create?",
    "which files should I back up?",
    "what files are in a base backup?",
    "what files are in the data directory?",
    "what's in a WAL record?",
    "how many files can a tablespace hold?",
    "how many WAL files are kept?",
    "list the steps to restore a backup",
    "show me how to create an index",
    "find the bug in this code",
    "which documents are required for a visa?",
    "what documents are needed to open a bank account?",
    "what does the pg_hba.conf file contain?",
    "what is in the postgresql.conf file?",
    "what's in the release notes for version 16?",
    "show the contents of pg_wal",
    "list the contents of a WAL record",
    "where is the log file located?",
    "where is the error mentioned in the logs",
    "where is it mentioned?",
    "how many documents does a transaction need?",
    "which documents mention",
    "which files mention ???",
    "what documents do I need to bring?",
    "how many files do I have open?",
    "which file contains the server configuration?",
    "which file stores the settings?",
    "how many pages does the manual have?",
    "which note is higher, C or D?",
    "how do I list files in a directory with python?",
    "what is stored in the index?",
    "which paper introduced transformers?",
    "what papers did Hinton write?",
    "where are the files stored?",
    "what files does postgres create on startup?",
    "",
    "   ",
]


@pytest.mark.parametrize("question", ORDINARY)
def test_ordinary_questions_are_left_alone(question: str):
    assert detect_collection_question(question) is None


# -- files mentioning X -----------------------------------------------------------------------


def test_files_mentioning_counts_every_file_beyond_the_display_cap(index):
    answer = ask(index, "Which files mention zeppelin?")
    everyone = AIRSHIP_LOGS + 1  # every log and the long voyage
    assert answer.kind == "files_mentioning"
    assert answer.count == everyone
    mentions = [r for r in answer.rows if r.relation == "mentions"]
    assert len(mentions) == collection.DISPLAY_LIMIT < everyone
    assert f"… and {everyone - collection.DISPLAY_LIMIT} more ({everyone} in all)" in answer.text
    assert answer.text.startswith(f'{everyone} files mention "zeppelin"')
    # Most matching passages first: the long voyage names it once per section.
    assert mentions[0].path.endswith("long-voyage.md")
    assert mentions[0].passages == LONG_LOG_SECTIONS
    assert all(r.passages == 1 for r in mentions[1:])
    first = mentions[0].source
    assert first is not None and "end of watch 1 the zeppelin" in first.chunk.text
    for row in mentions:
        assert row.location is not None and row.location.startswith("line")
        assert "zeppelin" in row.snippet.lower()
        assert row.source is not None and row.source.location == row.location
        assert "zeppelin" in row.source.chunk.text.lower()
    # Without the cap, every matching file is listed once.
    store, retriever, _ = index
    query = detect_collection_question("which files mention zeppelin")
    assert query is not None
    full = answer_collection_question(store, retriever, query, limit=100)
    listed = {Path(r.path).name for r in full.rows if r.relation == "mentions"}
    expected = {f"log-{n:02d}.md" for n in range(1, AIRSHIP_LOGS + 1)} | {"long-voyage.md"}
    assert listed == expected
    assert "more" not in full.text


def test_mentions_and_related_by_meaning_are_separate(index):
    answer = ask(index, "which files mention airship?")
    mentions = [r for r in answer.rows if r.relation == "mentions"]
    related = [r for r in answer.rows if r.relation == "related"]
    assert _names(mentions) == ["history.md"]
    assert answer.count == 1  # related files are not counted
    assert related, answer.text
    assert {Path(r.path).parent.name for r in related} == {"airships"}
    assert not {r.path for r in related} & {r.path for r in mentions}
    assert all(
        r.similarity is not None and r.similarity >= collection.RELATED_FLOOR for r in related
    )
    assert len(related) <= collection.RELATED_LIMIT
    text = answer.text
    assert text.index('1 file mentions "airship"') < text.index("Related by meaning")
    # Rows come in the order the text lists them; sources are numbered in that order too.
    assert [s.path for s in answer.sources] == [r.path for r in answer.rows]
    assert [s.rank for s in answer.sources] == list(range(1, len(answer.rows) + 1))


def test_no_match_says_so_and_lists_nothing(index):
    answer = ask(index, "which files mention quantum chromodynamics?")
    assert answer.count == 0
    assert not answer.matched
    assert answer.rows == []
    assert answer.text.startswith('No indexed file mentions "quantum chromodynamics"')


def test_without_a_retriever_keyword_matches_still_answer(index):
    store, _, _ = index
    query = detect_collection_question("which files mention airship?")
    assert query is not None
    answer = answer_collection_question(store, None, query)
    assert _names(answer.rows) == ["history.md"]
    assert "Related" not in answer.text


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ('which files mention "pg_hba.conf"?', {"special.txt"}),
        ("which files mention NEAR(alpha, beta)?", {"special.txt"}),
        ("which documents mention O'Reilly?", {"special.txt"}),
        ('which files mention "trust" authentication?', {"special.txt"}),
        ('which files mention ""unbalanced "quote*?', set()),
        ("which files mention AND OR NOT?", set()),
        ("which files mention heading:secret?", set()),
        ("which files mention '; DROP TABLE chunks; --?", set()),
    ],
)
def test_fts_syntax_in_the_subject_is_plain_text(index, question: str, expected: set[str]):
    answer = ask(index, question)
    assert {Path(r.path).name for r in answer.rows if r.relation == "mentions"} == expected
    assert answer.count == len(expected)
    store, _, _ = index
    assert store.integrity_check() == "ok"
    assert store.chunk_count() > 0


def test_fts_operators_inside_a_phrase_are_words(index):
    store, retriever, _ = index
    # "AND" here is the word in "a bare AND are", not an operator joining "bare" and "are".
    query = CollectionQuery("files_mentioning", "bare AND are", "phrase")
    answer = answer_collection_question(store, retriever, query)
    assert _names(r for r in answer.rows if r.relation == "mentions") == ["special.txt"]


# -- how many documents about Y ---------------------------------------------------------------


def test_count_about_counts_documents_and_states_the_rule(index):
    answer = ask(index, "how many documents are about gardening?")
    assert answer.kind == "count_about"
    assert answer.count == 3  # notes.md (heading "Garden notes") and both archive files
    assert answer.text.startswith('3 documents are about "gardening"')
    assert 'contains the word "gardening" (any word form, or numbered)' in answer.text
    assert set(_names(answer.rows)) >= {"notes.md", "budget.txt", "summary.txt"}


def test_count_about_several_words_needs_all_of_them_in_one_passage(index):
    answer = ask(index, "how many documents are about garden tomatoes?")
    # budget.txt mentions the garden but not tomatoes: not counted.
    assert answer.count == 2
    counted = {Path(r.path).name for r in answer.rows if r.relation == "mentions"}
    assert counted == {"notes.md", "summary.txt"}
    assert 'all of the words "garden", "tomatoes"' in answer.text


def test_count_mentions_counts_files_not_passages(index):
    answer = ask(index, "how many files mention zeppelin?")
    assert answer.count == AIRSHIP_LOGS + 1
    assert answer.text.startswith(f'{AIRSHIP_LOGS + 1} documents mention "zeppelin"')
    assert 'contains the word "zeppelin"' in answer.text


# -- folder listings --------------------------------------------------------------------------


def test_folder_by_sub_folder_name(index):
    answer = ask(index, "list what's in folder recipes")
    assert answer.kind == "folder_listing"
    assert answer.count == 1
    (row,) = answer.rows
    assert row.path.endswith(os.path.join("recipes", "lentil-soup.txt"))
    assert (row.relation, row.status, row.format) == ("listed", "indexed", "text")
    assert row.passages >= 1 and row.size
    assert "Folder library/recipes: 1 file (1 indexed)" in answer.text


def test_folder_by_nested_relative_path_any_case(index):
    for question in ("what files are in archive/2023/?", "list what's in folder Archive/2023"):
        answer = ask(index, question)
        assert answer.count == 2, question
        assert _names(answer.rows) == ["budget.txt", "summary.txt"]


def test_folder_by_absolute_path_lists_sub_folders_and_caps(index):
    _, _, root = index
    answer = ask(index, f"list what's in folder {root / 'airships'}")
    files = AIRSHIP_LOGS + 3  # the logs, the long voyage, the history and the route draft
    assert answer.count == files
    assert len(answer.rows) == collection.DISPLAY_LIMIT
    assert "Sub-folders: drafts (1)" in answer.text
    assert f"… and {files - collection.DISPLAY_LIMIT} more ({files} in all)" in answer.text


def test_folder_listing_shows_skipped_and_failed_files(index):
    answer = ask(index, "what's in the misc folder?")
    states = {Path(r.path).name: (r.status, r.reason) for r in answer.rows}
    assert states["dump.txt"] == ("skipped", "binary file")
    assert states["broken.pdf"][0] == "error"
    assert "0 indexed, 1 skipped, 1 failed" in answer.text
    assert "dump.txt: skipped (binary file)" in answer.text


def test_ambiguous_folder_name_lists_the_candidates(index):
    _, _, root = index
    answer = ask(index, "list what's in folder drafts")
    assert answer.rows == []
    assert answer.count is None
    assert answer.candidates == [
        str(root / "airships" / "drafts"),
        str(root / "policy" / "drafts"),
    ]
    assert "library/airships/drafts" in answer.text and "library/policy/drafts" in answer.text


def test_unknown_folder_lists_the_top_level_folders(index):
    _, _, root = index
    # "airship" is a prefix of a real folder's name: whole names only, relative or absolute.
    for question in (
        "list what's in folder nowhere",
        "list what's in folder airship",
        f"list what's in folder {root / 'airship'}",
    ):
        answer = ask(index, question)
        assert not answer.matched
        assert answer.rows == []
        assert "No indexed folder matches" in answer.text
        assert answer.candidates[0] == str(root)
        assert str(root / "airships") in answer.candidates
        assert str(root / "recipes") in answer.candidates
        assert "library/recipes" in answer.text


# -- overview -----------------------------------------------------------------------------------

ALL_FILES = 5 + len(EXTRA_FILES)


def test_overview_counts_by_status_and_format(index):
    _, _, root = index
    answer = ask(index, "what documents do you have?")
    assert answer.kind == "overview"
    assert answer.count == ALL_FILES
    first = answer.text.splitlines()[0]
    assert first.startswith(f"The index holds {ALL_FILES} files in 1 folder: ")
    assert f"{ALL_FILES - 2} indexed, 1 skipped, 1 failed" in first
    assert f"  {root}: {ALL_FILES} files (sub-folders: airships, archive," in answer.text
    markdown = sum(1 for name in EXTRA_FILES if name.endswith(".md")) + 1  # + notes.md
    assert f"Formats: markdown {markdown}, text 4," in answer.text
    assert len(answer.rows) == collection.DISPLAY_LIMIT
    assert f"({ALL_FILES} in all)" in answer.text
    assert "localrag status --errors" in answer.text


def test_how_many_files_is_an_overview(index):
    answer = ask(index, "how many files are indexed?")
    assert answer.count == ALL_FILES


# -- empty index ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question",
    [
        "which files mention zeppelin?",
        "how many documents are about gardening?",
        "list what's in folder recipes",
        "what's in the index?",
    ],
)
def test_empty_index_says_how_to_fill_it(tmp_path: Path, question: str):
    query = detect_collection_question(question)
    assert query is not None
    with Store.open(tmp_path / "empty.db") as store:
        answer = answer_collection_question(store, None, query)
    assert not answer.matched
    assert answer.count == 0 and answer.rows == []
    assert answer.text == "The index is empty: add a folder with `localrag index FOLDER`."


def test_indexed_empty_folder_names_it(tmp_path: Path, embedder: Embedder):
    folder = tmp_path / "nothing"
    folder.mkdir()
    with Store.open(tmp_path / "i.db") as store:
        Indexer(store, embedder).index([folder])
        query = detect_collection_question("which files mention zeppelin?")
        assert query is not None
        answer = answer_collection_question(store, Retriever(store, embedder), query)
    assert not answer.matched
    assert str(folder.resolve()) in answer.text
    assert "no files yet" in answer.text


def test_counts_agree_with_a_word_form_aware_grep(tmp_path: Path, embedder: Embedder) -> None:
    """ "which files mention sqlite?" counts sqlite, SQLite's and sqlite3 as grep would, and a
    file holding the word is never listed as related "without those words"."""
    root = tmp_path / "code"
    files = {
        "db.py": "import sqlite3\n\nconnection = sqlite3.connect('cache.db')\n",
        "notes.md": "# Storage\n\nWe keep the cache in SQLite because it needs no server.\n",
        "plan.md": "# Plan\n\nSQLite's write-ahead log lets readers work during writes.\n",
        "many.md": "# Engines\n\nCompared: sqlites of old, and Postgres.\n",
        "driver.txt": "The pysqlite driver and the sqlitebrowser tool are other names.\n",
        "other.md": "# Queues\n\nThe worker pool drains a Redis queue every second.\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    word_forms = re.compile(r"(?<![^\W_])sqlite(?:s|'s|\d+)?(?![^\W_])", re.I)
    grep = {name for name, text in files.items() if word_forms.search(text)}
    with Store.open(tmp_path / "i.db") as store:
        Indexer(store, embedder).index([root])
        query = detect_collection_question("which files mention sqlite?")
        assert query is not None
        answer = answer_collection_question(store, Retriever(store, embedder), query)
    mentioned = {Path(r.path).name for r in answer.rows if r.relation == "mentions"}
    assert mentioned == grep == {"db.py", "notes.md", "plan.md", "many.md"}
    assert answer.count == len(grep)
    for row in answer.rows:
        if row.relation == "related":
            assert not word_forms.search(row.snippet or ""), row
