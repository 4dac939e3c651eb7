"""Hybrid search on a real index: escaping, fusion quality, filters, highlighting."""

from __future__ import annotations

from pathlib import Path

import pytest

from localrag.config import IndexSettings
from localrag.evaluate import Question, evaluate_retrieval
from localrag.indexer import Indexer
from localrag.retrieval import (
    RUN_MAX_CHUNKS,
    Retriever,
    Stages,
    fts_query,
    highlight_spans,
    snippet,
)
from localrag.store import Store
from tests.helpers.corpus import write_tree

# A labelled set where each method alone fails somewhere: paraphrases with no shared words
# (keyword search cannot see them) and opaque identifiers (embeddings blur them).
LABELLED_DOCS = {
    "hr/leave.md": "# Parental leave\n\nNew parents may take up to twenty weeks away from work "
    "with full pay after the birth or adoption of a child.",
    "it/vpn.md": "# Remote access\n\nConnect to the office network from home with the "
    "WireGuard client; install the profile sent by the help desk.",
    # Four fault pages written from one template: only the code tells them apart.
    "it/fault-px4471.md": "# Printer fault\n\nFault PX-4471: the fuser unit overheated. "
    "Switch the printer off and let it cool down before printing again.",
    "it/fault-px4472.md": "# Printer fault\n\nFault PX-4472: the paper tray sensor is blocked. "
    "Switch the printer off and clear the tray before printing again.",
    "it/fault-px4473.md": "# Printer fault\n\nFault PX-4473: the toner cartridge is empty. "
    "Switch the printer off and replace the cartridge before printing again.",
    "it/fault-px4474.md": "# Printer fault\n\nFault PX-4474: the drum unit is worn out. "
    "Switch the printer off and order a new drum before printing again.",
    "finance/travel.md": "# Reimbursement\n\nSubmit receipts for taxis, trains and hotels "
    "within thirty days to be paid back.",
    "facilities/parking.md": "# Car park\n\nStaff cars go on levels two and three; level one "
    "is for visitors and deliveries.",
    "security/passwords.md": "# Credentials\n\nPasswords must be at least fourteen characters "
    "long and are changed once a year.",
    "kitchen/coffee.md": "# Coffee machine\n\nDescale the espresso machine every Friday "
    "afternoon with the tablets kept in the cupboard.",
}
LABELLED_QUESTIONS = [
    # paraphrases: the answer shares almost no words with the question
    Question(
        "how long can a mother or father stay home with a newborn", "hr/leave.md", "twenty weeks"
    ),
    Question("working from my house, how do I reach internal systems", "it/vpn.md", "WireGuard"),
    Question("getting my money back for a cab ride", "finance/travel.md", "thirty days"),
    Question("where do employees leave their vehicles", "facilities/parking.md", "levels two"),
    Question("how long must a login secret be", "security/passwords.md", "fourteen characters"),
    Question("cleaning schedule for the espresso machine", "kitchen/coffee.md", "every Friday"),
    # identifiers: only exact matching tells PX-4471 from PX-4472, QZ-19 from QZ-27
    Question("PX-4472", "it/fault-px4472.md", "paper tray"),
    Question("printer shows PX-4471", "it/fault-px4471.md", "fuser"),
    Question("fault PX-4474", "it/fault-px4474.md", "drum unit"),
    Question("what does PX-4473 mean", "it/fault-px4473.md", "toner"),
]


@pytest.fixture(scope="module")
def labelled_index(tmp_path_factory: pytest.TempPathFactory, embedder):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("labelled")
    for name, text in LABELLED_DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    store = Store.open(root.parent / f"{root.name}.db")
    Indexer(store, embedder).index([root])
    yield Retriever(store, embedder)
    store.close()


def test_hybrid_beats_vector_only_and_keyword_only(labelled_index):
    scores = {
        mode: evaluate_retrieval(labelled_index, LABELLED_QUESTIONS, mode=mode, ks=(1, 3))
        for mode in ("hybrid", "vector", "keyword")
    }
    hybrid, vector, keyword = scores["hybrid"], scores["vector"], scores["keyword"]
    assert hybrid.mrr > vector.mrr
    assert hybrid.mrr > keyword.mrr
    assert hybrid.hits_at[3] >= max(vector.hits_at[3], keyword.hits_at[3])
    assert hybrid.hits_at[3] == 1.0


@pytest.mark.parametrize(
    "hostile",
    [
        '"',
        '""unbalanced "quote',
        "AND",
        "OR NOT NEAR",
        "foo*",
        "NEAR(alpha beta, 2)",
        "heading:secret",
        "^start",
        "(((",
        "'; DROP TABLE chunks; --",
        "-minus +plus",
        "Ünïcödé straße 東京 🍅",
        "\x00nul byte",
        "a" * 5000,
        "   ",
        "",
        "* ? [ ] { } \\ / :",
    ],
)
def test_any_user_text_is_a_valid_query(labelled_index, hostile):
    results = labelled_index.search(hostile, 5)
    assert isinstance(results, list)
    for mode in ("keyword", "vector"):
        labelled_index.search(hostile, 5, mode=mode)
    assert labelled_index.store.integrity_check() == "ok"


def test_fts_query_quotes_every_term():
    assert fts_query('pg_stat_statements AND "x"') == '"pg_stat_statements" OR "x"'
    assert fts_query("the") == '"the"'  # only stopwords: keep them rather than match nothing
    assert fts_query("how do I water the tomatoes") == '"water" OR "tomatoes"'
    assert fts_query("!!! ???") is None


def test_keyword_search_finds_identifiers_and_stems(labelled_index):
    top = labelled_index.search("PX-4472", 1, mode="keyword")[0]
    assert top.path.endswith("it/fault-px4472.md")
    # Porter stemming: "descaling" finds "Descale".
    assert labelled_index.search("descaling", 1, mode="keyword")[0].path.endswith("coffee.md")


def test_path_filter_limits_every_mode(labelled_index):
    for mode in ("hybrid", "vector", "keyword"):
        results = labelled_index.search("printer fault passwords", 10, path_filter="it/", mode=mode)
        assert results, mode
        assert all("/it/" in r.path for r in results), mode
    globbed = labelled_index.search("leave", 10, path_filter="*/hr/*.md")
    assert globbed and all(r.path.endswith("hr/leave.md") for r in globbed)


def test_results_carry_scores_ranks_and_location(tmp_path, embedder):
    docs = tmp_path / "docs"
    write_tree(docs)
    with Store.open(tmp_path / "i.db") as store:
        Indexer(store, embedder).index([docs])
        results = Retriever(store, embedder).search("backup snapshots restore", 3)
    assert [r.rank for r in results] == [1, 2, 3]
    assert results[0].score >= results[1].score >= results[2].score
    assert results[0].path.endswith("backup.rst")
    assert results[0].location.startswith("line")
    assert results[0].vector_score is not None and results[0].keyword_score is not None


CLAIMS = (
    "# Travel claims\n\n"
    "Staff who travel for work claim their train tickets through the expense portal.\n"
    "A train ticket claim needs the ticket itself and the reason for the journey.\n"
    "Claims for a train ticket are checked by the team lead before finance sees them.\n"
    "The team lead approves a train ticket claim within three working days.\n"
    "Finance pays an approved train ticket claim with the next monthly salary.\n"
    "A train ticket claim older than ninety days is refused by the expense portal.\n"
    "First class train tickets are only refunded for journeys longer than four hours.\n"
    "Seat reservations on the train are refunded together with the ticket claim.\n"
    "A lost train ticket can be replaced by the bank statement showing the payment.\n"
    "Questions about train ticket claims go to the finance help desk by email.\n"
    "Bus and tram tickets are claimed the same way as train tickets.\n"
    "The portal sends an email when the team lead approves the claim.\n"
    "Claims in another currency are paid at the exchange rate of the travel day.\n"
    "Taxi rides to the station are claimed with the train ticket claim.\n"
)


@pytest.fixture(scope="module")
def claims_index(tmp_path_factory: pytest.TempPathFactory, embedder):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("claims")
    write_tree(root)  # other topics around it
    (root / "claims.md").write_text(CLAIMS, encoding="utf-8")
    store = Store.open(root.parent / f"{root.name}.db")
    Indexer(store, embedder, IndexSettings(chunk_tokens=64, overlap_tokens=16)).index([root])
    yield store
    store.close()


QUESTION = "how are train ticket claims approved and paid"


def test_neighbouring_passages_found_together_are_one_result(claims_index, embedder) -> None:  # type: ignore[no-untyped-def]
    apart = Retriever(claims_index, embedder, Stages(neighbour_runs=False)).search(QUESTION, 10)
    joined = Retriever(claims_index, embedder).search(QUESTION, 10)
    # Without joining, the top results are neighbouring pieces of the one file.
    assert [r.path.endswith("claims.md") for r in apart[:3]] == [True] * 3
    best = joined[0]
    assert best.path.endswith("claims.md") and 2 <= len(best.run) <= RUN_MAX_CHUNKS
    assert best.chunk.chunk_id == apart[0].chunk.chunk_id  # the best passage leads its run
    members = claims_index.chunk_hits(list(best.run))
    ordered = [members[c] for c in best.run]
    assert [h.ordinal for h in ordered] == list(
        range(ordered[0].ordinal, ordered[0].ordinal + len(ordered))
    )
    for hit in ordered:
        assert hit.text in best.chunk.text
    # The chunker repeats a sentence across each border: the joined text holds it once.
    for sentence in CLAIMS.splitlines()[2:]:
        assert best.chunk.text.count(sentence) <= 1
    assert (best.chunk.line_start, best.chunk.line_end) == (
        ordered[0].line_start,
        ordered[-1].line_end,
    )
    # No passage is shown twice, and no two results are neighbours in one file.
    shown = [c for r in joined for c in r.run]
    assert len(shown) == len(set(shown))
    assert [r.rank for r in joined] == list(range(1, len(joined) + 1))


def test_a_long_run_of_matching_passages_is_cut_into_results(claims_index, embedder) -> None:  # type: ignore[no-untyped-def]
    results = Retriever(claims_index, embedder).search(QUESTION, 10)
    in_claims = [r for r in results if r.path.endswith("claims.md")]
    assert all(len(r.run) <= RUN_MAX_CHUNKS for r in results)
    # Every passage of the file is found; they fill more than one result, none overlapping.
    passages = claims_index.db.execute(
        "SELECT COUNT(*) FROM chunks c JOIN documents d ON d.id = c.document_id "
        "WHERE d.path LIKE '%claims.md'"
    ).fetchone()[0]
    assert passages > RUN_MAX_CHUNKS
    assert len(in_claims) >= 2


def test_highlight_and_snippet():
    text = "Indexes speed up lookups. " * 5 + "A partial index covers only some rows. " + "x " * 300
    spans = highlight_spans(text, "partial indexing")
    words = {text[a:b].lower() for a, b in spans}
    assert words == {"indexes", "partial", "index"}
    short, inner = snippet(text, "partial index", width=120)
    assert len(short) <= 122
    assert "partial index" in short
    assert all(short[a:b].lower().startswith(("partial", "index")) for a, b in inner)


def test_empty_index_says_how_to_fill_it(tmp_path, embedder):
    with Store.open(tmp_path / "empty.db") as store, pytest.raises(Exception, match="index"):
        Retriever(store, embedder)


def test_question_file_errors_name_the_line(tmp_path: Path):
    from localrag.errors import ConfigError
    from localrag.evaluate import load_questions

    path = tmp_path / "q.jsonl"
    path.write_text('{"q": "a", "file": "b", "answer": "c"}\n{"q": "missing keys"}\n')
    with pytest.raises(ConfigError, match=r"q.jsonl:2"):
        load_questions(path)


# -- exact terms: codes, names and invented words come first ------------------------------------

_TOPICS = {
    "garden": "tomatoes compost seedlings watering mulch pruning roses greenhouse soil frost",
    "travel": "train tickets hotel booking passport luggage airport delay refund itinerary",
    "finance": "invoice payment budget ledger quarter audit expense receipt account balance",
    "kitchen": "recipe oven flour butter simmer onions garlic pastry dough seasoning",
    "health": "appointment vaccine clinic dosage symptoms pharmacy referral fever allergy",
    "house": "boiler plumber roof gutter window insulation paint ladder repair damp",
    "school": "homework teacher term report exam timetable uniform library trip class",
    "music": "piano rehearsal concert violin score tempo choir lesson practice scales",
}


def _exact_corpus(root: Path) -> None:
    """64 files of plausible notes, eight topics, and a few needles."""
    import random

    rng = random.Random(64)
    for topic, words in _TOPICS.items():
        vocabulary = words.split()
        for i in range(8):
            # Passages of a few hundred words: a needle is a small part of its passage's meaning.
            paragraphs = [
                ". ".join(
                    " ".join(rng.choice(vocabulary) for _ in range(10)).capitalize()
                    for _ in range(6)
                )
                + "."
                for _ in range(8)
            ]
            (root / topic).mkdir(parents=True, exist_ok=True)
            (root / topic / f"note-{i}.md").write_text(
                f"# {topic.title()} note {i}\n\n" + "\n\n".join(paragraphs) + "\n"
            )
    note = root / "house" / "note-3.md"
    text = note.read_text()
    middle = text.index("\n\n", len(text) // 2)
    note.write_text(
        text[:middle] + " The spare key is filed under zqxjvortexmarker." + text[middle:]
    )
    for number in (170, 171, 172, 173, 174):
        (root / "finance" / f"invoice-{number}.md").write_text(
            f"# Invoice INV-2024-0{number}\n\nInvoice INV-2024-0{number} covers the quarter's "
            "budget, payment on receipt, account balance settled.\n"
        )
    (root / "health" / "referrals.md").write_text(
        "# Referrals\n\nDr Hartley sees the allergy referrals on Mondays.\n\n"
        "The clinic forwards fever cases to the pharmacy.\n\n"
        "Hartley also signs the vaccine forms.\n"
    )


@pytest.fixture(scope="module")
def exact_index(tmp_path_factory: pytest.TempPathFactory, embedder):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("exact")
    _exact_corpus(root)
    store = Store.open(root.parent / f"{root.name}.db")
    Indexer(store, embedder).index([root])
    yield Retriever(store, embedder)
    store.close()


@pytest.mark.parametrize(
    "query",
    [
        "zqxjvortexmarker",
        "where did I note zqxjvortexmarker?",
        "spare key zqxjvortexmarker",
    ],
)
def test_an_invented_word_in_one_passage_comes_first(exact_index, query: str) -> None:
    top = exact_index.search(query, 3)[0]
    assert "zqxjvortexmarker" in top.chunk.text


@pytest.mark.parametrize("number", ["0171", "0173"])
def test_an_invoice_number_finds_its_invoice_first(exact_index, number: str) -> None:
    for query in (f"INV-2024-{number}", f"what does invoice INV-2024-{number} cover?"):
        top = exact_index.search(query, 3)[0]
        assert top.path.endswith(f"invoice-{number[1:]}.md"), query


def test_a_surname_finds_the_passages_that_name_it(exact_index) -> None:
    for query in ("Hartley", "what does Hartley do"):
        top = exact_index.search(query, 3)
        assert "Hartley" in top[0].chunk.text, query


def test_ablation_shows_what_each_stage_buys(exact_index) -> None:
    from localrag.evaluate import ABLATIONS, ablate_retrieval

    questions = [
        Question(f"what does invoice INV-2024-0{n} cover?", f"invoice-{n}.md", f"INV-2024-0{n}")
        for n in (170, 171, 172, 173, 174)
    ]
    rows = ablate_retrieval(exact_index.store, exact_index.embedder, questions)
    assert [row.label for row in rows] == [label for label, _, _ in ABLATIONS]
    by_label = {row.label: row.scores for row in rows}
    full = by_label["all stages"]
    assert full.hits_at[1] == 1.0
    # Near-identical invoices: only the exact lane tells them apart at rank 1.
    assert by_label["without the exact lane"].mrr < full.mrr
    assert by_label["without the keyword side (vectors only)"].mrr < full.mrr


def test_eval_retrieval_ablate_prints_a_row_per_stage(tmp_path, models_env) -> None:  # type: ignore[no-untyped-def]
    import json

    from click.testing import CliRunner

    from localrag.cli import cli

    docs = tmp_path / "docs"
    for name, text in LABELLED_DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        "\n".join(
            json.dumps({"q": q.q, "file": q.file, "answer": q.answer}) for q in LABELLED_QUESTIONS
        )
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["index", str(docs)]).exit_code == 0
    result = runner.invoke(cli, ["eval", "retrieval", str(questions), "--ablate", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0]["stages"] == "all stages" and rows[0]["mrr_change"] == 0
    assert {"hit@1", "hit@10", "mrr", "mrr_change"} <= set(rows[1])
    assert len(rows) == 7
    shown = runner.invoke(
        cli, ["eval", "retrieval", str(questions), "--ablate"], terminal_width=200
    )
    assert "without the exact lane" in shown.output and "MRR change" in shown.output
