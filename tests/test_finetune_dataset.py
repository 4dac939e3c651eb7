"""`localrag finetune dataset` on a real index, with a real tiny GGUF writing the questions.

The tiny model's weights are random, so where a test needs particular questions ScriptedLLM
forces its output with a grammar, one scripted JSON string per passage; llama.cpp still
tokenizes, evaluates and samples for real. The scripts follow the sampling order, which
`sample_passages` computes the same way `build_dataset` does.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from localrag.cli import cli
from localrag.config import IndexSettings
from localrag.errors import LocalragError
from localrag.finetune.dataset import (
    NOT_IN_SOURCES,
    DatasetSettings,
    Deduper,
    build_dataset,
    clean_quote,
    dataset_from_jsonl,
    normalize_question,
    parse_pairs,
    qa_grammar,
    raft_answer,
    sample_passages,
)
from localrag.indexer import Indexer
from localrag.llm import LLMSettings, LocalLLM
from localrag.models.registry import ModelRegistry
from localrag.prompt import SYSTEM_PROMPT, Passage, pack_prompt
from localrag.reasoning import BEGIN_QUOTE, END_QUOTE, final_answer
from localrag.retrieval import Retriever
from localrag.store import ChunkHit, Store
from tests.helpers.handbook import HANDBOOK, write_handbook
from tests.helpers.llm import ScriptedLLM

# Five more handbook pages: ten documents of two sentences each, one close to hr/leave.md.
EXTRA = {
    "hr/leave-faq.md": "# Leave questions\n\nParental leave can be split into two blocks of ten "
    "weeks. Adoptive parents get the same parental leave as birth parents.",
    "it/printers.md": "# Printers\n\nThe printer on each floor prints double-sided by default. "
    "Colour printing needs a code from the help desk.",
    "kitchen/coffee.md": "# Kitchen\n\nThe coffee machine is cleaned every Friday afternoon. "
    "Please put used cups in the dishwasher, not in the sink.",
    "safety/fire.md": "# Fire drills\n\nFire drills happen twice a year without warning. The "
    "assembly point is the car park across the road.",
    "training/courses.md": "# Courses\n\nEvery employee has a training budget of one thousand "
    "euros a year. Courses must be booked through the learning portal.",
}
SMALL = 50  # handbook passages are 117-163 characters: below the default min_chars


@pytest.fixture(scope="module")
def handbook_db(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    work = tmp_path_factory.mktemp("finetune-handbook")
    folder = write_handbook(work / "handbook", EXTRA)
    db = work / "index.db"
    with Store.open(db) as store:
        Indexer(store, embedder).index([folder])
    return db


@pytest.fixture
def store(handbook_db: Path) -> Iterator[Store]:
    with Store.open(handbook_db, create=False) as s:
        yield s


@pytest.fixture(scope="module")
def tiny_llm(tiny_gguf: dict[str, Path]) -> Iterator[LocalLLM]:
    model = LocalLLM.load(
        tiny_gguf["q4_k_m"], LLMSettings(n_ctx=2048, max_tokens=64, temperature=0.0)
    )
    yield model
    model.close()


def settings(**changes: Any) -> DatasetSettings:
    base = DatasetSettings(passages=10, questions_per_passage=2, distractors=2, min_chars=SMALL)
    return replace(base, **changes)


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.)\s+", text.strip()) if s]


def sentence_pairs(hit: ChunkHit, k: int) -> list[dict[str, str]]:
    """k distinct, valid triples about a passage: each quotes one of its sentences."""
    found = sentences(hit.text)
    return [
        {
            "question": f"Which rule begins {' '.join(s.split()[:5])}?",
            "quote": s,
            "answer": " ".join(s.split()[-3:]),
        }
        for s in found[:k]
    ]


Script = Callable[[ChunkHit, int], list[dict[str, str]]]


def scripted(
    llm: LocalLLM, store: Store, config: DatasetSettings, make: Script = sentence_pairs
) -> ScriptedLLM:
    """A model that answers each sampled passage, in sampling order, with `make`'s triples."""
    outputs = [
        json.dumps(make(hit, config.questions_per_passage))
        for hit in sample_passages(store, config)
    ]
    return ScriptedLLM(llm, *outputs)


def build(
    store: Store,
    embedder: Any,
    llm: LocalLLM,
    out: Path,
    config: DatasetSettings,
    make: Script = sentence_pairs,
) -> tuple[Any, ScriptedLLM]:
    model = scripted(llm, store, config, make)
    report = build_dataset(store, embedder, model, out, config)  # type: ignore[arg-type]
    return report, model


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def examples(out: Path) -> list[dict[str, Any]]:
    return read_jsonl(out / "train.jsonl") + read_jsonl(out / "test.jsonl")


def text_of(llm: LocalLLM, tokens: list[int]) -> str:
    return llm.llama.detokenize(tokens, special=True).decode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the whole build --------------------------------------------------------------------------


def test_examples_and_manifest_are_written(tmp_path, store, embedder, tiny_llm, tiny_gguf) -> None:
    entry = ModelRegistry().import_file(tiny_gguf["q4_k_m"], name="tiny", mode="symlink")
    config = settings(passages=6, oracle_share=1.0)
    model = scripted(tiny_llm, store, config)
    calls: list[tuple[int, int]] = []
    out = tmp_path / "data"
    report = build_dataset(
        store,
        embedder,
        model,  # type: ignore[arg-type]
        out,
        config,
        progress=lambda *a: calls.append(a),
    )

    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.jsonl", "train.jsonl"]
    assert calls == [(i, 6) for i in range(7)]
    assert len(model.prompts) == 6
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["sampled"] == 6 and counts["requested"] == 12 and counts["generated"] == 12
    assert counts["invalid"] == counts["rejected_quotes"] == counts["duplicates"] == 0
    assert counts["train"] + counts["test"] == 12 == len(examples(out))
    assert counts["test"] > 0
    assert report.counts == counts
    assert f"{counts['train']} training and {counts['test']} test examples" in report.summary()

    assert manifest["format"] == "localrag-finetune-dataset" and manifest["version"] == 1
    assert manifest["db"] == str(store.path)
    assert manifest["embedder"] == store.model_identity()
    assert manifest["model"]["name"] == "tiny" and manifest["model"]["sha256"] == entry.sha256
    assert manifest["settings"] == asdict(config)
    assert re.match(r"\d{4}-\d\d-\d\dT", manifest["created"])
    train_sha = sha256((out / "train.jsonl").read_bytes())
    test_sha = sha256((out / "test.jsonl").read_bytes())
    assert manifest["files"]["train.jsonl"]["sha256"] == train_sha
    assert manifest["files"]["test.jsonl"]["sha256"] == test_sha
    listing = f"{train_sha}  train.jsonl\n{test_sha}  test.jsonl\n".encode()
    assert manifest["dataset_sha256"] == sha256(listing) == report.dataset_sha256

    # Lineage: each example's chunks exist in the index with exactly the recorded texts.
    by_id = {e["id"]: e for e in examples(out)}
    assert len(manifest["examples"]) == 12 == len(by_id)
    for item in manifest["examples"]:
        hits = store.chunk_hits(item["chunk_ids"])
        texts = [hits[c].text for c in item["chunk_ids"]]
        assert [sha256(t.encode()) for t in texts] == item["text_hashes"]
        assert item["oracle_chunk_id"] in item["chunk_ids"]
        assert by_id[item["id"]]["document"] == hits[item["oracle_chunk_id"]].path
        assert item["split"] in ("train", "test")

    # The model was asked about the passage, under the generator's instructions.
    first = sample_passages(store, config)[0]
    assert "reading-comprehension questions" in model.text(0)
    assert first.text in model.text(0)


def test_answers_quote_the_oracle_and_cite_its_number(tmp_path, store, embedder, tiny_llm) -> None:
    build(store, embedder, tiny_llm, tmp_path / "d", settings(oracle_share=1.0))
    for example in examples(tmp_path / "d"):
        (oracle,) = [c for c in example["context"] if c["oracle"]]
        n = oracle["number"]
        quote = example["quote"]
        assert quote in " ".join(oracle["text"].split())
        assert f"{BEGIN_QUOTE}{quote}{END_QUOTE}" in example["answer"]
        assert f"[{n}]" in example["answer"]
        assert final_answer(example["answer"]).endswith(f"[{n}].")


def test_raft_answer_format() -> None:
    answer = raft_answer("rotated every quarter", "Every quarter.", 2)
    assert answer == (
        "##Reason: source [2] says ##begin_quote##rotated every quarter##end_quote##\n"
        "##Answer: Every quarter [2]."
    )
    assert final_answer(answer) == "Every quarter [2]."
    assert final_answer(NOT_IN_SOURCES) == "The documents do not say."
    assert final_answer("plain text") == "plain text"


# -- quotes and model output ------------------------------------------------------------------


def test_quotes_not_in_the_passage_are_rejected(tmp_path, store, embedder, tiny_llm) -> None:
    def make(hit: ChunkHit, k: int) -> list[dict[str, str]]:
        first = sentences(hit.text)[0]
        spaced = "\n  ".join(first.split(" "))  # the same words, laid out differently
        return [
            {
                "question": f"Real: what does '{hit.heading}' say?",
                "quote": f'"{spaced}"',
                "answer": "A.",
            },
            {
                "question": f"Made up: what about '{hit.heading}'?",
                "quote": "a sentence it never had",
                "answer": "B.",
            },
        ]

    config = settings(passages=3, oracle_share=1.0)
    report, _ = build(store, embedder, tiny_llm, tmp_path / "d", config, make)
    assert report.counts["generated"] == 6
    assert report.counts["rejected_quotes"] == 3
    kept = examples(tmp_path / "d")
    assert len(kept) == 3
    assert all(e["question"].startswith("Real:") for e in kept)
    assert all("\n" not in e["quote"] and not e["quote"].startswith('"') for e in kept)


def test_clean_quote() -> None:
    passage = "Backup tapes are rotated\nevery quarter. The operations lead signs the log."
    assert clean_quote("“Backup tapes are rotated every quarter.”", passage) == (
        "Backup tapes are rotated every quarter."
    )
    assert clean_quote("...the operations lead signs…", passage) is None  # case differs
    assert clean_quote("The operations lead signs...", passage) == "The operations lead signs"
    assert clean_quote("tapes", passage) is None  # too short to prove anything
    assert clean_quote("Backup tapes are rotated every month.", passage) is None


def test_unusable_output_is_counted_not_fatal(tmp_path, store, embedder, tiny_llm) -> None:
    config = settings(passages=3, oracle_share=1.0)
    hits = sample_passages(store, config)
    outputs = [
        "I cannot write JSON today.",
        json.dumps(
            [{"question": "Where is the quote?", "answer": "Nowhere."}, *sentence_pairs(hits[1], 1)]
        ),
        json.dumps(sentence_pairs(hits[2], 2)),
    ]
    model = ScriptedLLM(tiny_llm, *outputs)
    report = build_dataset(store, embedder, model, tmp_path / "d", config)  # type: ignore[arg-type]
    assert report.counts["invalid"] == 3  # two lost with the prose, one without a quote
    assert report.counts["generated"] == 3
    assert len(examples(tmp_path / "d")) == 3


def test_parse_pairs_takes_well_formed_triples_only() -> None:
    good = {"question": "Q [1]?", "quote": "a quote here", "answer": "A [2]."}
    pairs, invalid = parse_pairs(json.dumps([good, {"question": 3}, good]), 3)
    assert invalid == 1 and len(pairs) == 2
    assert pairs[0].question == "Q?" and pairs[0].answer == "A."  # stray citations dropped
    assert parse_pairs(json.dumps(good), 2)[1] == 1  # one object instead of a list
    assert parse_pairs('[{"question": "?!", "quote": "x", "answer": "y"}]', 1) == ([], 1)


def _forced(llm: LocalLLM, target: str, count: int) -> str:
    """Push the model toward `target` token by token while `qa_grammar` constrains it."""
    from llama_cpp import LlamaGrammar, LogitsProcessorList

    prompt = llm.chat_prompt([{"role": "user", "content": "Write JSON."}]).tokens
    want = llm.llama.tokenize(target.encode(), add_bos=False, special=False)

    def force(ids: Any, scores: Any) -> Any:
        step = len(ids) - len(prompt)
        if step < len(want):
            scores = scores.copy()
            scores[want[step]] += 1000.0
        return scores

    out = llm.llama.create_completion(
        prompt=prompt,
        max_tokens=len(want) + 4,
        temperature=0.0,
        grammar=LlamaGrammar.from_string(qa_grammar(count), verbose=False),
        logits_processor=LogitsProcessorList([force]),
    )
    return str(out["choices"][0]["text"])  # type: ignore[index]


def test_the_grammar_admits_well_formed_json_and_nothing_else(tiny_llm) -> None:
    pair = {
        "question": 'Is "it" rotated?',
        "quote": "every quarter — ünï",
        "answer": "Yes.\nIt is.",
    }
    for text in (json.dumps([pair]), json.dumps([pair], ensure_ascii=False, separators=(",", ":"))):
        assert _forced(tiny_llm, text, 1) == text
    two = json.dumps([pair, pair])
    assert _forced(tiny_llm, two, 2) == two
    for bad, count in (
        (json.dumps([{"question": "Q?", "answer": "A."}]), 1),  # no quote
        (json.dumps([pair, pair]), 1),  # more than asked for
        (json.dumps([{**pair, "quote": ""}]), 1),  # an empty field
    ):
        assert _forced(tiny_llm, bad, count) != bad


# -- dedupe -----------------------------------------------------------------------------------


def test_duplicate_questions_keep_the_first(tmp_path, store, embedder, tiny_llm) -> None:
    asked = iter(
        [
            "How often are backup tapes rotated?",
            "how often are backup tapes rotated",  # the same, once normalized
            "How often are the backup tapes rotated?",  # nearly the same
            "Where are bicycles stored?",
            "Which floor has the visitors' parking?",
            "WHERE are bicycles stored!!",
        ]
    )

    def make(hit: ChunkHit, k: int) -> list[dict[str, str]]:
        quote = " ".join(hit.text.split()[:6])  # short: ScriptedLLM forces 400 tokens at most
        return [{"question": next(asked), "quote": quote, "answer": "Yes."} for _ in range(k)]

    config = settings(passages=3, oracle_share=1.0)
    report, _ = build(store, embedder, tiny_llm, tmp_path / "d", config, make)
    assert report.counts["duplicates"] == 3
    questions = {e["question"] for e in examples(tmp_path / "d")}
    assert questions == {
        "How often are backup tapes rotated?",
        "Where are bicycles stored?",
        "Which floor has the visitors' parking?",
    }


def test_normalized_questions_and_near_duplicates() -> None:
    assert normalize_question("  What's the VPN\ttime-out?! ") == "whats the vpn timeout"
    deduper = Deduper()
    assert not deduper.is_repeat("How long is parental leave?")
    assert deduper.is_repeat("How long is the parental leave?")
    assert deduper.is_repeat("how long is parental leave")
    assert not deduper.is_repeat("How long is maternity leave?")  # another word: another question
    assert not deduper.is_repeat("What is rule 1?")
    assert not deduper.is_repeat("What is rule 2?")
    assert not deduper.is_repeat("Where are the bicycles stored?")
    assert deduper.is_repeat("Where is the bicycle stored")
    assert deduper.is_repeat("Stored where, the bicycles?")
    assert not deduper.is_repeat("Which leave is paid?")
    assert not deduper.is_repeat("Which leave is not paid?")
    assert not deduper.is_repeat("What is it?")
    assert deduper.is_repeat("what is it")
    assert not deduper.is_repeat("What was it?")  # only function words: exact matches only


# -- contexts ---------------------------------------------------------------------------------


def test_oracle_share_is_exact_and_the_rest_say_the_documents_do_not(
    tmp_path, store, embedder, tiny_llm
) -> None:
    config = settings(oracle_share=0.7, distractors=2)
    build(store, embedder, tiny_llm, tmp_path / "d", config)
    found = examples(tmp_path / "d")
    assert len(found) == 20
    with_oracle = [e for e in found if e["oracle"]]
    without = [e for e in found if not e["oracle"]]
    assert len(with_oracle) == 14 and len(without) == 6
    for example in with_oracle:
        assert len(example["context"]) == 3
        assert sum(c["oracle"] for c in example["context"]) == 1
    for example in without:
        assert example["answer"] == NOT_IN_SOURCES
        assert len(example["context"]) == 3  # as many sources as with the oracle
        assert not any(c["oracle"] for c in example["context"])
        assert all(c["document"] != example["document"] for c in example["context"])
        assert "##begin_quote##" not in example["messages"][2]["content"]
    # Where the oracle sits is shuffled, not always first or last.
    assert len({next(c["number"] for c in e["context"] if c["oracle"]) for e in with_oracle}) > 1


def test_distractors_come_from_other_documents_nearest_first(
    tmp_path, store, embedder, tiny_llm
) -> None:
    config = settings(questions_per_passage=1, distractors=1, oracle_share=1.0)
    build(store, embedder, tiny_llm, tmp_path / "d", config)
    found = examples(tmp_path / "d")
    assert len(found) == 10
    for example in found:
        others = [c for c in example["context"] if not c["oracle"]]
        assert len(others) == 1
        assert others[0]["document"] != example["document"]
    # A hard negative: the nearest passage of another document, not a random one.
    (leave,) = [e for e in found if e["document"].endswith("hr/leave.md")]
    neighbours = Retriever(store, embedder).search(leave["question"], 10)
    nearest = next(r.path for r in neighbours if r.path != leave["document"])
    (distractor,) = [c for c in leave["context"] if not c["oracle"]]
    assert distractor["document"] == nearest
    assert nearest.endswith("hr/leave-faq.md")


def test_random_distractors_fill_in_when_retrieval_runs_out(
    tmp_path, store, embedder, tiny_llm
) -> None:
    # Nine other documents exist; asking for nine per question exhausts the neighbours.
    config = settings(passages=2, questions_per_passage=1, distractors=9, oracle_share=1.0)
    build(store, embedder, tiny_llm, tmp_path / "d", config)
    for example in examples(tmp_path / "d"):
        documents = [c["document"] for c in example["context"]]
        assert len(documents) == 10 == len(set(documents))


def test_messages_are_what_ask_sends(tmp_path, store, embedder, tiny_llm) -> None:
    build(store, embedder, tiny_llm, tmp_path / "d", settings(passages=4, oracle_share=0.5))
    for example in examples(tmp_path / "d"):
        system, user, assistant = example["messages"]
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        assert assistant == {"role": "assistant", "content": example["answer"]}
        assert user["role"] == "user"
        assert user["content"].endswith(f"</sources>\n\nQuestion: {example['question']}")
        for c in example["context"]:
            assert f'<source id="{c["number"]}" file="{c["path"]}"' in user["content"]
            assert c["path"].startswith("handbook/")  # from the folder's name, as ask shows it
        # Word for word the prompt `ask` builds for these passages in this order. (`ask`
        # tokenizes each part alone, a trainer the whole text: boundaries may differ.)
        passages = [
            Passage(c["path"], c["location"], c["heading"], c["text"]) for c in example["context"]
        ]
        packed = pack_prompt(tiny_llm, example["question"], passages, max_answer_tokens=64)
        assert packed.passages == passages
        ours = tiny_llm.chat_prompt([system, user]).tokens
        assert text_of(tiny_llm, ours) == text_of(tiny_llm, packed.tokens)


# -- splits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_documents_never_straddle_splits(tmp_path, store, embedder, tiny_llm, seed) -> None:
    config = settings(seed=seed, test_share=0.3)
    build(store, embedder, tiny_llm, tmp_path / "d", config)
    train = read_jsonl(tmp_path / "d" / "train.jsonl")
    test = read_jsonl(tmp_path / "d" / "test.jsonl")
    train_docs = {e["document"] for e in train}
    test_docs = {e["document"] for e in test}
    assert not train_docs & test_docs
    assert len(test_docs) == 3 and len(train_docs) == 7  # 30 % of ten documents
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["split"]["test_documents"] == 3 and manifest["split"]["note"] is None
    assert {e["split"] for e in manifest["examples"] if e["document"] in test_docs} == {"test"}


def test_one_document_means_no_test_split(tmp_path, embedder, tiny_llm) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "leave.md").write_text(HANDBOOK["hr/leave.md"])
    with Store.open(tmp_path / "one.db") as one:
        Indexer(one, embedder).index([folder])
        report, _ = build(one, embedder, tiny_llm, tmp_path / "d", settings())
    assert report.counts["train"] == 2 and report.counts["test"] == 0
    assert report.note and "one document" in report.note.lower()
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["split"]["note"] == report.note
    assert (tmp_path / "d" / "test.jsonl").read_bytes() == b""


# -- sampling ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lopsided_db(tmp_path_factory: pytest.TempPathFactory, embedder) -> Path:
    """One long document of many passages and three short ones."""
    work = tmp_path_factory.mktemp("lopsided")
    folder = work / "docs"
    folder.mkdir()
    (folder / "manual.md").write_text(
        "\n\n".join(
            f"## Step {i}\n\nTurn valve {i} a quarter turn clockwise, then check that gauge "
            f"{i} reads between {i} and {i + 3} bar before you move on to the next step."
            for i in range(1, 13)
        )
    )
    for name, text in (("x.md", "Xray"), ("y.md", "Yankee"), ("z.md", "Zulu")):
        (folder / name).write_text(f"# {text}\n\n" + f"{text} is a short note. " * 6)
    db = work / "index.db"
    with Store.open(db) as s:
        Indexer(s, embedder, IndexSettings(chunk_tokens=40)).index([folder])
    return db


def test_sampling_goes_round_robin_over_documents(lopsided_db) -> None:
    with Store.open(lopsided_db, create=False) as s:
        manual_chunks = sum(1 for f in s.passage_frame() if f[1].endswith("manual.md"))
        assert manual_chunks >= 6  # the long document really has many more passages
        four = sample_passages(s, settings(passages=4))
        assert sorted(Path(h.path).name for h in four) == ["manual.md", "x.md", "y.md", "z.md"]
        six = sample_passages(s, settings(passages=6))
        assert [Path(h.path).name for h in six].count("manual.md") == 3
        assert len({h.chunk_id for h in six}) == 6
        again = sample_passages(s, settings(passages=6))
        other = sample_passages(s, settings(passages=6, seed=7))
    assert [h.chunk_id for h in again] == [h.chunk_id for h in six]
    assert [h.chunk_id for h in other] != [h.chunk_id for h in six]


def test_short_passages_are_not_sampled(store) -> None:
    assert sample_passages(store, settings(min_chars=150))  # some handbook passages are longer
    long_only = sample_passages(store, settings(min_chars=150))
    assert all(len(h.text) >= 150 for h in long_only)
    assert sample_passages(store, settings(min_chars=10_000)) == []


def test_an_index_without_long_enough_passages_is_a_clear_error(
    tmp_path, store, embedder, tiny_llm
) -> None:
    with pytest.raises(LocalragError, match="no indexed passage has at least 10000 characters"):
        build_dataset(store, embedder, tiny_llm, tmp_path / "d", settings(min_chars=10_000))
    assert not (tmp_path / "d").exists()


# -- determinism and writing ------------------------------------------------------------------


def test_the_same_seed_gives_the_same_files(tmp_path, store, embedder, tiny_llm) -> None:
    config = settings(oracle_share=0.6)
    first, _ = build(store, embedder, tiny_llm, tmp_path / "a", config)
    second, _ = build(store, embedder, tiny_llm, tmp_path / "b", config)
    other, _ = build(store, embedder, tiny_llm, tmp_path / "c", replace(config, seed=5))
    for name in ("train.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert first.dataset_sha256 == second.dataset_sha256
    assert other.dataset_sha256 != first.dataset_sha256


def test_writing_is_all_or_nothing(tmp_path, store, embedder, tiny_llm) -> None:
    out = tmp_path / "d"
    config = settings(passages=3)
    first, _ = build(store, embedder, tiny_llm, out, config)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def stop(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    model = scripted(tiny_llm, store, replace(config, seed=9))
    with pytest.raises(KeyboardInterrupt):
        build_dataset(store, embedder, model, out, replace(config, seed=9), progress=stop)  # type: ignore[arg-type]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary folders left

    second, _ = build(store, embedder, tiny_llm, out, replace(config, seed=9))  # replaces it
    assert second.dataset_sha256 != first.dataset_sha256
    assert (
        json.loads((out / "manifest.json").read_text())["dataset_sha256"] == second.dataset_sha256
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(LocalragError, match="holds other files"):
        build(store, embedder, tiny_llm, foreign, config)
    assert [p.name for p in foreign.iterdir()] == ["todo.txt"]


def test_bad_settings_are_refused(tmp_path, store, embedder, tiny_llm) -> None:
    for bad, message in (
        (settings(oracle_share=1.5), "oracle_share must be from 0 to 1"),
        (settings(test_share=1.0), "test_share"),
        (settings(questions_per_passage=0), "questions_per_passage"),
    ):
        with pytest.raises(LocalragError, match=message):
            build_dataset(store, embedder, tiny_llm, tmp_path / "d", bad)


# -- the user's own JSONL ---------------------------------------------------------------------

CHAT = {
    "messages": [
        {"role": "system", "content": "You are the handbook assistant."},
        {"role": "user", "content": "When does the VPN disconnect?"},
        {"role": "assistant", "content": "After twelve hours."},
    ]
}
WITH_CONTEXT = {
    "question": "How often are tapes rotated?",
    "answer": "Every quarter [1].",
    "context": ["Backup tapes are rotated every quarter.", "Bicycles go in the basement."],
}
PLAIN = {"question": "Where do visitors park?", "answer": "On level one."}


def write_lines(path: Path, *items: object) -> Path:
    path.write_text(
        "\n".join(i if isinstance(i, str) else json.dumps(i) for i in items) + "\n",
        encoding="utf-8",
    )
    return path


def test_user_jsonl_in_both_formats(tmp_path) -> None:
    source = write_lines(
        tmp_path / "mine.jsonl", CHAT, "", WITH_CONTEXT, PLAIN, {**PLAIN, "answer": "Level 1."}
    )
    report = dataset_from_jsonl(source, tmp_path / "d", DatasetSettings(test_share=0.0))
    assert report.counts == {"records": 4, "duplicates": 1, "examples": 3, "train": 3, "test": 0}
    chat, context, plain = read_jsonl(tmp_path / "d" / "train.jsonl")
    assert chat["messages"] == CHAT["messages"]
    assert (chat["question"], chat["answer"], chat["line"]) == (
        "When does the VPN disconnect?",
        "After twelve hours.",
        1,
    )
    system, user, assistant = context["messages"]
    assert system["content"] == SYSTEM_PROMPT
    assert '<source id="1" file="provided" location="passage 1">' in user["content"]
    assert '<source id="2" file="provided" location="passage 2">' in user["content"]
    assert user["content"].endswith("Question: How often are tapes rotated?")
    assert assistant["content"] == "Every quarter [1]."
    assert context["line"] == 3
    assert plain["messages"] == [
        {"role": "user", "content": "Where do visitors park?"},
        {"role": "assistant", "content": "On level one."},
    ]
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["source"] == "jsonl" and manifest["model"] is None
    assert manifest["input_sha256"] == sha256(source.read_bytes())
    assert [e["line"] for e in manifest["examples"]] == [1, 3, 4]
    assert report.note is None
    everything = dataset_from_jsonl(source, tmp_path / "e", DatasetSettings(test_share=0.99))
    assert everything.counts["train"] == 0 and "test split" in (everything.note or "")
    assert manifest["examples"][1]["text_hashes"] == [
        sha256(t.encode()) for t in WITH_CONTEXT["context"]
    ]


def test_user_examples_split_by_a_seeded_hash_of_the_question(tmp_path) -> None:
    items = [
        {"question": f"What is rule number {i} of the house?", "answer": f"Rule {i}."}
        for i in range(60)
    ]
    forward = write_lines(tmp_path / "f.jsonl", *items)
    backward = write_lines(tmp_path / "b.jsonl", *reversed(items))
    config = DatasetSettings(test_share=0.25, seed=3)
    a = dataset_from_jsonl(forward, tmp_path / "a", config)
    b = dataset_from_jsonl(backward, tmp_path / "b", config)

    def test_questions(folder: Path) -> set[str]:
        return {e["question"] for e in read_jsonl(folder / "test.jsonl")}

    assert test_questions(tmp_path / "a") == test_questions(tmp_path / "b")  # not by position
    assert 5 <= a.counts["test"] <= 25 and a.counts["test"] == b.counts["test"]
    assert a.note is None
    c = dataset_from_jsonl(forward, tmp_path / "c", replace(config, seed=4))
    assert test_questions(tmp_path / "c") != test_questions(tmp_path / "a")
    assert c.counts["train"] + c.counts["test"] == 60


def test_bad_user_lines_are_named_with_their_problem(tmp_path) -> None:
    source = write_lines(
        tmp_path / "bad.jsonl",
        PLAIN,
        "{not json",
        {"question": "Only a question?"},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {
            "messages": [
                {"role": "narrator", "content": "Once"},
                {"role": "assistant", "content": "x"},
            ]
        },
        {**WITH_CONTEXT, "context": "one string"},
        ["a", "list"],
    )
    with pytest.raises(LocalragError) as caught:
        dataset_from_jsonl(source, tmp_path / "d")
    message = str(caught.value)
    assert "6 bad line(s)" in message
    assert "line 2: not valid JSON" in message
    assert 'line 3: "answer" must be a non-empty string' in message
    assert "line 4: the last message must be the assistant's answer" in message
    assert "line 5: message 1 has role 'narrator'" in message
    assert "line 6: " in message and "and 1 more" in message
    assert "line 1" not in message
    assert not (tmp_path / "d").exists()


# -- the command ------------------------------------------------------------------------------


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["finetune", "dataset", *args])


def test_cli_builds_a_dataset_from_user_jsonl(tmp_path) -> None:
    items = [
        {"question": f"What does clause {i} of the lease cover?", "answer": f"Item {i}."}
        for i in range(20)
    ]
    source = write_lines(tmp_path / "mine.jsonl", *items, items[0])
    out = tmp_path / "data"
    result = run(str(out), "--from-jsonl", str(source), "--test-share", "0.3", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output and "21 records read, 1 duplicates dropped" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["test_share"] == 0.3 and manifest["settings"]["seed"] == 2
    train, test = manifest["counts"]["train"], manifest["counts"]["test"]
    assert train + test == 20 and test > 0
    assert f"{train} training and {test} test examples" in result.output
    assert manifest["dataset_sha256"][:16] in result.output


def test_cli_bad_jsonl_is_one_line_naming_the_line(tmp_path) -> None:
    source = write_lines(tmp_path / "bad.jsonl", PLAIN, "{oops")
    result = run(str(tmp_path / "d"), "--from-jsonl", str(source))
    assert result.exit_code == 1
    assert "line 2: not valid JSON" in result.output
    assert isinstance(result.exception, SystemExit)
    assert len(result.output.strip().splitlines()) == 1


@pytest.fixture
def cli_index(tmp_path: Path, models_env: Path) -> Path:
    folder = write_handbook(tmp_path / "handbook")
    result = CliRunner().invoke(cli, ["index", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def test_cli_without_a_model_says_how_to_add_one(tmp_path, cli_index) -> None:
    result = run(str(tmp_path / "d"), "--min-chars", "50")
    assert result.exit_code == 1
    line = result.output.strip()
    assert len(line.splitlines()) == 1
    assert "localrag models pull" in line and "localrag models import" in line
    assert "--from-jsonl" in line
    assert not (tmp_path / "d").exists()


def test_cli_with_a_model_that_writes_nonsense_explains_instead_of_crashing(
    tmp_path, cli_index, models_env, tiny_gguf, monkeypatch
) -> None:
    models = tmp_path / "models"
    shutil.copytree(models_env / "embedders", models / "embedders", symlinks=True)
    monkeypatch.setenv("LOCALRAG_MODELS_DIR", str(models))
    ModelRegistry().import_file(tiny_gguf["q4_k_m"], name="tiny", mode="symlink")
    args = ["--passages", "2", "--per-passage", "1", "--min-chars", "50"]
    result = run(str(tmp_path / "d"), "--model", "tiny", *args)
    assert result.exit_code == 1, result.output
    assert "the model wrote no usable questions about 2 passages" in result.output
    assert "--model" in result.output
    assert isinstance(result.exception, SystemExit)  # a handled error, not a crash
    assert not (tmp_path / "d").exists()


def test_cli_help_shows_the_library_defaults() -> None:
    result = CliRunner().invoke(cli, ["finetune", "dataset", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    d = DatasetSettings()
    for option, value in (
        ("--passages", d.passages),
        ("--per-passage", d.questions_per_passage),
        ("--distractors", d.distractors),
        ("--oracle-share", d.oracle_share),
        ("--test-share", d.test_share),
        ("--min-chars", d.min_chars),
    ):
        described = text.split(f"{option} ", 1)[1].split(" --", 1)[0]
        assert f"[default: {value}]" in described, option


# -- a base model writes the data ---------------------------------------------------------------


def test_quotable_spans_are_the_passages_sentences_and_clauses() -> None:
    from localrag.finetune.dataset import quotable_spans

    text = 'Members may borrow twelve items, for three weeks.\nLate   returns cost "20 cents".'
    assert quotable_spans(text) == [
        "Members may borrow twelve items",
        "for three weeks.",
        'Late returns cost "20 cents".',
    ]
    assert all(clean_quote(span, text) == span for span in quotable_spans(text))


def test_a_base_model_writes_questions_with_verbatim_quotes(gemma_gguf: Path) -> None:
    """Gemma 3 270M has no chat format: it is prompted with worked examples, and the grammar
    lets it quote only the passage's own sentences and clauses."""
    from types import SimpleNamespace

    from localrag.finetune.dataset import _generate_pairs

    passages = [
        (
            "Leave > Parental leave",
            "New parents may take up to twenty weeks of paid leave, to be started within a "
            'year of the birth or adoption. Tell your manager at least eight "working" weeks '
            "before the leave starts.",
        ),
        (
            "IT > VPN",
            "Connect to the office network with the WireGuard client. Keys are rotated every "
            "ninety days, and an expired key is replaced on request.",
        ),
    ]
    llm = LocalLLM.load(gemma_gguf, LLMSettings(n_ctx=2048, temperature=0.0))
    try:
        for heading, text in passages:
            pairs, unusable = _generate_pairs(llm, SimpleNamespace(heading=heading, text=text), 2)  # type: ignore[arg-type]
            assert unusable == 0 and len(pairs) == 2
            for pair in pairs:
                assert clean_quote(pair.quote, text) is not None, pair.quote
                assert pair.question.strip().endswith("?")
    finally:
        llm.close()
