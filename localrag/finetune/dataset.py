"""Fine-tuning data from the user's own index, RAFT style (Zhang et al. 2024, arXiv 2403.10131).

    sample passages (round-robin over documents, seeded)
      → a local model writes question / verbatim quote / answer triples as JSON (GBNF-constrained)
      → quotes not found in the passage are rejected; near-identical questions are dropped
      → each question gets a context: the oracle passage among distractors (hard negatives from
        retrieval, else random chunks of other documents), or, for a share, distractors only
      → the answer quotes the oracle (##begin_quote##…##end_quote##) and cites its number [n]
        the way `ask` does; without the oracle it says the documents do not say
      → split by document, written atomically as train.jsonl, test.jsonl and manifest.json

A user's own JSONL (chat messages, or question/answer pairs with optional context) goes
through the same dedupe, split and writing. Each example carries ready-to-train `messages`
rendered with the same system prompt and source blocks `ask` sends, so training matches use.
Nothing here prints; progress goes to a callback.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from localrag.errors import ConfigError, LocalragError
from localrag.hashing import sha256_file
from localrag.paths import from_root
from localrag.prompt import SYSTEM_PROMPT, Passage, source_block, sources_turn
from localrag.reasoning import ANSWER_MARK, BEGIN_QUOTE, END_QUOTE, REASON_MARK
from localrag.retrieval import Retriever, SearchResult, Stages

if TYPE_CHECKING:
    from localrag.embedder import Embedder
    from localrag.llm import LocalLLM
    from localrag.store import ChunkHit, Root, Store

FORMAT = "localrag-finetune-dataset"
FORMAT_VERSION = 1
TRAIN_FILE = "train.jsonl"
TEST_FILE = "test.jsonl"
MANIFEST_FILE = "manifest.json"
DATASET_FILES = (TRAIN_FILE, TEST_FILE, MANIFEST_FILE)

# SYSTEM_PROMPT asks the model to "say that the documents do not say": taught in those words.
NOT_IN_SOURCES = (
    f"{REASON_MARK} none of the sources contains the answer to this question.\n"
    f"{ANSWER_MARK} The documents do not say."
)

# Words that do not change what a question asks, for near-duplicate detection. "not", "no",
# numbers and names are content: they do change it.
_FUNCTION_WORDS = frozenset(
    (
        "a an and are as at be been but by can could did do does for from had has have how hows "
        "i if in is it its me my of on or our shall should so than that thats the their there "
        "these they this those to was we were what whats when whens where wheres which who whos "
        "whom why will with would you your"
    ).split()
)
# A shorter "quote" (a word or two) proves nothing about where the answer came from.
MIN_QUOTE_CHARS = 8
# Generation budget per question/quote/answer triple, in tokens.
TOKENS_PER_PAIR = 200
# The least of a passage worth asking about when it has to be cut to fit the context.
MIN_PASSAGE_TOKENS = 32
# Retrieval neighbours looked at per question, beyond the distractors needed.
NEIGHBOUR_SLACK = 10

GENERATOR_PROMPT = (
    "You write reading-comprehension questions about one passage from the user's own documents. "
    "Each question must be answerable from the passage alone and make sense without seeing it: "
    "name the subject, never write 'the passage' or 'the text'. For each question, copy word for "
    "word the shortest sentence or phrase of the passage that contains the answer (the quote), "
    "and give the answer in one short sentence. Reply with JSON only."
)

Progress = Callable[[int, int], None]  # passages done, passages in all

_CITATION = re.compile(r"\s*\[\d+\]")
_QUOTE_MARKS = "\"'“”‘’«»` "


@dataclass
class DatasetSettings:
    """How many examples of which shape; every random choice derives from `seed`."""

    passages: int = 200  # passages sampled from the index
    questions_per_passage: int = 2
    distractors: int = 3  # passages from other documents shown with the oracle
    oracle_share: float = 0.8  # examples whose context holds the oracle; the rest: distractors
    test_share: float = 0.2  # documents (or user questions) held out for testing
    seed: int = 0
    min_chars: int = 200  # shorter passages are not asked about (headings, fragments)

    def validate(self) -> None:
        """Refuse settings that cannot make a dataset, naming the setting."""
        checks = [
            ("passages", self.passages >= 1, "at least 1"),
            ("questions_per_passage", 1 <= self.questions_per_passage <= 10, "from 1 to 10"),
            ("distractors", 0 <= self.distractors <= 20, "from 0 to 20"),
            ("oracle_share", 0.0 <= self.oracle_share <= 1.0, "from 0 to 1"),
            ("test_share", 0.0 <= self.test_share < 1.0, "from 0 to below 1"),
            ("min_chars", self.min_chars >= 0, "0 or more"),
        ]
        for name, ok, wanted in checks:
            if not ok:
                raise ConfigError(f"{name} must be {wanted}, got {getattr(self, name)}")


@dataclass(frozen=True)
class QAPair:
    """One triple as the generating model wrote it (quote already checked and tidied)."""

    question: str
    quote: str
    answer: str


@dataclass
class DatasetReport:
    """What was written where, with the counts the manifest records."""

    out_dir: Path
    counts: dict[str, int]
    dataset_sha256: str
    source: Literal["index", "jsonl"]
    note: str | None = None  # e.g. why there is no test split

    def summary(self) -> str:
        """One paragraph for a terminal."""
        c = self.counts
        head = (
            f"Wrote {c['train']} training and {c['test']} test examples to {self.out_dir} "
            f"(dataset sha256 {self.dataset_sha256[:16]}…)."
        )
        if self.source == "index":
            body = (
                f" {c['sampled']} passages sampled, {c['generated']} questions written, "
                f"{c['invalid']} unusable outputs, {c['rejected_quotes']} quotes not found in "
                f"their passage, {c['duplicates']} duplicates dropped."
            )
        else:
            body = f" {c['records']} records read, {c['duplicates']} duplicates dropped."
        return head + body + (f" {self.note}" if self.note else "")


# -- sampling ---------------------------------------------------------------------------------


def sample_passages(store: Store, settings: DatasetSettings) -> list[ChunkHit]:
    """Up to `settings.passages` chunks, taken round-robin over documents in a seeded order.

    Round-robin rather than proportional: one long manual must not crowd out fifty short notes.
    Identical passages (one text in several files) are asked about once.
    """
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for chunk_id, path, chars, embedding_id in store.passage_frame():
        if chars >= settings.min_chars:
            by_doc.setdefault(path, []).append((chunk_id, embedding_id))
    rng = random.Random(f"{settings.seed}:sample")
    documents = sorted(by_doc)
    rng.shuffle(documents)
    for path in documents:
        rng.shuffle(by_doc[path])
    picked: list[int] = []
    seen: set[int] = set()
    depth = 0
    while len(picked) < settings.passages and any(depth < len(by_doc[d]) for d in documents):
        for path in documents:
            if depth < len(by_doc[path]) and len(picked) < settings.passages:
                chunk_id, embedding_id = by_doc[path][depth]
                if embedding_id not in seen:
                    seen.add(embedding_id)
                    picked.append(chunk_id)
        depth += 1
    hits = store.chunk_hits(picked)
    return [hits[c] for c in picked if c in hits]


# -- generation -------------------------------------------------------------------------------

_JSON_STRING = (
    'string ::= "\\"" char+ "\\""\n'
    'char ::= [^"\\\\\\x7F\\x00-\\x1F] | "\\\\" (["\\\\/bfnrt] | "u" hex hex hex hex)\n'
    "hex ::= [0-9a-fA-F]\n"
    'space ::= " "?\n'
)


# One sentence of plain text, closed by its full stop.
_SENTENCE = 'sentence ::= "\\"" [^"\\\\.\\x7F\\x00-\\x1F]{2,300} "." "\\""\n'


def qa_grammar(count: int, quotes: Sequence[str] = ()) -> str:
    """GBNF for a JSON list of exactly `count` {"question", "quote", "answer"} string objects.

    With `quotes`, the quote can only be one of them (verbatim spans of the passage): a small
    model asked to quote tends to paraphrase, and a paraphrase is no quote. The answer is then
    also held to one sentence: a small base model otherwise repeats itself until it runs out of
    tokens, and the unclosed JSON is lost (measured on Gemma 3 270M: 3 of 4 outputs).
    """
    answer = "sentence" if quotes else "string"
    kinds = {"question": "string", "quote": "quote" if quotes else "string", "answer": answer}
    fields = ' "," space '.join(
        f'"\\"{name}\\"" space ":" space {kind}' for name, kind in kinds.items()
    )
    pairs = ' "," space '.join(["pair"] * count)
    grammar = (
        f'root ::= "[" space {pairs} space "]"\n'
        f'pair ::= "{{" space {fields} space "}}"\n' + _JSON_STRING
    )
    if quotes:
        choices = " | ".join(_gbnf_literal(json.dumps(q, ensure_ascii=False)) for q in quotes)
        grammar += f"quote ::= {choices}\n" + _SENTENCE
    return grammar


def _gbnf_literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# Where a passage may be cut into quotable spans: after a sentence, a clause or a list item.
_SPAN_BREAK = re.compile(r"(?<=[.!?;:])\s+|\n+|,\s+(?=\S)")
MAX_QUOTE_CHOICES = 48


def quotable_spans(passage: str) -> list[str]:
    """The passage's sentences and clauses long enough to be a quote, in order, each once,
    whitespace collapsed (as `clean_quote` compares them)."""
    spans: list[str] = []
    for piece in _SPAN_BREAK.split(passage):
        span = " ".join(piece.split()).strip(",")
        if len(span) >= MIN_QUOTE_CHARS and span not in spans:
            spans.append(span)
    return spans[:MAX_QUOTE_CHOICES]


def generation_messages(passage: str, heading: str, count: int) -> list[dict[str, Any]]:
    """Ask for `count` question/quote/answer triples about one passage (content in parts:
    document text is tokenized as plain text, never as control tokens)."""
    where = ["Passage from the section ", heading, ":\n"] if heading else ["Passage:\n"]
    ask = (
        f"\n\nWrite {count} different question{'s' if count > 1 else ''} about this passage as "
        f'a JSON list of {count} object{"s" if count > 1 else ""} with the keys "question", '
        '"quote" and "answer".'
    )
    return [
        {"role": "system", "content": GENERATOR_PROMPT},
        {"role": "user", "content": [*where, passage, ask]},
    ]


# A base model (no chat template) follows examples, not instructions: it is shown two
# passages with their questions, quotes and answers, then the passage to ask about; the
# grammar holds it to the same JSON.
_SHOTS: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "Library > Borrowing",
        "Members may borrow up to twelve items at a time. Books are lent for three weeks and "
        "can be renewed twice online, unless another member has reserved them. Late returns "
        "cost 20 cents per item per day.",
        (
            (
                "How many items can a member borrow at once?",
                "up to twelve items at a time",
                "Twelve items.",
            ),
            (
                "What does it cost to return a book late?",
                "20 cents per item per day",
                "20 cents per item for each day it is late.",
            ),
            (
                "Can a reserved book be renewed?",
                "unless another member has reserved them",
                "No: a book another member has reserved cannot be renewed.",
            ),
        ),
    ),
    (
        "Boiler > Maintenance",
        "Check the pressure gauge once a month; it should read between 1 and 1.5 bar when the "
        "system is cold. If it falls below 1 bar, top up through the filling loop under the "
        "boiler and close both valves afterwards.",
        (
            (
                "What pressure should the boiler show when cold?",
                "between 1 and 1.5 bar",
                "Between 1 and 1.5 bar.",
            ),
            (
                "How is the pressure topped up?",
                "top up through the filling loop",
                "Through the filling loop under the boiler, closing both valves afterwards.",
            ),
            ("How often should the gauge be checked?", "once a month", "Once a month."),
        ),
    ),
)


def completion_prompt(passage: str, heading: str, count: int) -> str:
    """The few-shot text a base model continues with `count` triples about `passage`."""
    blocks = []
    for shot_heading, shot_passage, shot_pairs in _SHOTS:
        pairs = [{"question": q, "quote": quote, "answer": a} for q, quote, a in shot_pairs[:count]]
        blocks.append(
            f"Section: {shot_heading}\nPassage: {shot_passage}\n"
            f"Questions: {json.dumps(pairs, ensure_ascii=False)}\n"
        )
    where = f"Section: {heading}\n" if heading else ""
    return "\n".join([*blocks, f"{where}Passage: {passage}\nQuestions:"])


def parse_pairs(text: str, count: int) -> tuple[list[QAPair], int]:
    """The well-formed triples in a model's output, and how many of `count` were unusable."""
    try:
        data = json.loads(text)
    except ValueError:
        return [], count
    items = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
    pairs: list[QAPair] = []
    for item in items[:count]:
        if not isinstance(item, dict):
            continue
        values = [item.get(k) for k in ("question", "quote", "answer")]
        if not all(isinstance(v, str) for v in values):
            continue
        question, quote, answer = (_uncite(str(v)) for v in values)
        if any(ch.isalnum() for ch in question) and quote and answer:
            pairs.append(QAPair(question, quote, answer))
    return pairs, count - len(pairs)


def clean_quote(quote: str, passage: str) -> str | None:
    """The quote with whitespace collapsed if it is a verbatim span of the passage, else None.

    Quote marks and ellipses a model wraps around a quote are not part of it.
    """
    flat, before = " ".join(quote.split()), ""
    while flat != before:  # “…the quote...” → the quote
        before = flat
        flat = flat.strip(_QUOTE_MARKS).removeprefix("...").removesuffix("...").strip("…")
    if len(flat) < MIN_QUOTE_CHARS:
        return None
    return flat if flat in " ".join(passage.split()) else None


def _uncite(text: str) -> str:
    """Drop [n] markers: the generator saw one unnumbered passage, its numbers mean nothing."""
    return _CITATION.sub("", text).strip()


def _generate_pairs(llm: LocalLLM, hit: ChunkHit, count: int) -> tuple[list[QAPair], int]:
    """Ask the model about one passage; returns parsed triples and the unusable count."""
    max_tokens = min(TOKENS_PER_PAIR * count, llm.n_ctx // 2)
    if llm.is_base_model:
        base = len(llm.text_prompt(completion_prompt("", hit.heading, count)))
    else:
        base = len(llm.chat_prompt(generation_messages("", hit.heading, count)).tokens)
    room = llm.n_ctx - max_tokens - base
    if room < MIN_PASSAGE_TOKENS:
        raise LocalragError(
            f"the model's context window ({llm.n_ctx} tokens) is too small to ask about a "
            "passage: use a model with a larger context or raise n_ctx"
        )
    text = llm.truncate(hit.text, room)
    if llm.is_base_model:
        tokens = llm.text_prompt(completion_prompt(text, hit.heading, count))
        grammar = qa_grammar(count, quotable_spans(text))
    else:
        tokens = llm.chat_prompt(generation_messages(text, hit.heading, count)).tokens
        grammar = qa_grammar(count)
    output = llm.complete(tokens, max_tokens=max_tokens, grammar=grammar)
    return parse_pairs(output, count)


# -- answers and messages ---------------------------------------------------------------------


def raft_answer(quote: str, answer: str, number: int) -> str:
    """Reasoning that quotes source [number], then the final answer citing it."""
    return (
        f"{REASON_MARK} source [{number}] says {BEGIN_QUOTE}{quote}{END_QUOTE}\n"
        f"{ANSWER_MARK} {_cite(answer, number)}"
    )


def _cite(answer: str, number: int) -> str:
    """`Twenty weeks.` → `Twenty weeks [2].`: the citation before the closing punctuation."""
    body = answer.rstrip()
    end = ""
    while body and body[-1] in ".!?。":
        end = body[-1] + end
        body = body[:-1].rstrip()
    return f"{body} [{number}]{end}"


def training_messages(
    question: str, passages: Sequence[Passage], answer: str
) -> list[dict[str, str]]:
    """System, user and assistant turns exactly as `ask` would prompt for this question."""
    blocks = [source_block(n, p) for n, p in enumerate(passages, 1)]
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "".join(sources_turn(question, blocks))},
        {"role": "assistant", "content": answer},
    ]


# -- dedupe -----------------------------------------------------------------------------------


def normalize_question(question: str) -> str:
    """Casefolded, punctuation removed, whitespace collapsed: "What's X?" → "whats x"."""
    kept = "".join(ch for ch in question.casefold() if not unicodedata.category(ch).startswith("P"))
    return " ".join(kept.split())


class Deduper:
    """Remembers questions; one identical or nearly identical to a kept one is a repeat.

    Nearly identical: the same content words in any order, function words and plural -s
    aside ("How often are the backup tapes rotated?" repeats "how often are backup tapes
    rotated"). A different name or number keeps a question apart ("rule 1" and "rule 2"),
    which a character-similarity threshold would not.
    """

    def __init__(self) -> None:
        self._exact: set[str] = set()
        self._content: set[tuple[str, ...]] = set()

    def is_repeat(self, question: str) -> bool:
        """True for a repeat; otherwise remember the question and return False."""
        key = normalize_question(question)
        content = content_words(key)
        if key in self._exact or (content and content in self._content):
            return True
        self._exact.add(key)
        if content:
            self._content.add(content)
        return False


def content_words(normalized: str) -> tuple[str, ...]:
    """The sorted content words of a normalized question, plural -s removed."""
    words = (w for w in normalized.split() if w not in _FUNCTION_WORDS)
    return tuple(
        sorted(
            w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words
        )
    )


# -- building from the index ------------------------------------------------------------------


@dataclass
class _Draft:
    """A kept question before its context is chosen."""

    pair: QAPair
    oracle: ChunkHit
    id: str


@dataclass
class _Context:
    """Chooses distractors: retrieval neighbours first, then seeded random chunks."""

    store: Store
    retriever: Retriever
    frame: list[tuple[int, str, int, int]]
    roots: list[Root]
    hits: dict[int, ChunkHit] = field(default_factory=dict)

    def distractors(
        self, question: str, oracle: ChunkHit, count: int, rng: random.Random
    ) -> list[ChunkHit]:
        """`count` passages from documents other than the oracle's, hard negatives first."""
        if count <= 0:
            return []
        chosen: list[ChunkHit] = []
        used = {oracle.embedding_id}
        for result in self.retriever.search(question, count + NEIGHBOUR_SLACK):
            hit = result.chunk
            if hit.path == oracle.path or oracle.path in result.also_in:
                continue
            if hit.embedding_id not in used:
                used.add(hit.embedding_id)
                chosen.append(hit)
                if len(chosen) == count:
                    return chosen
        for chunk_id in self._random_others(oracle.path, used, count - len(chosen), rng):
            chosen.append(self._hit(chunk_id))
        return chosen

    def _random_others(
        self, path: str, used: set[int], count: int, rng: random.Random
    ) -> list[int]:
        """Seeded random chunks of other documents: a few draws, then a full shuffled scan."""
        picked: list[int] = []
        tries = min(len(self.frame), 20 * count)
        order = rng.sample(range(len(self.frame)), tries)
        if tries < len(self.frame):
            drawn = set(order)
            rest = [i for i in range(len(self.frame)) if i not in drawn]
            rng.shuffle(rest)
            order += rest
        for index in order:
            chunk_id, chunk_path, _, embedding_id = self.frame[index]
            if chunk_path != path and embedding_id not in used:
                used.add(embedding_id)
                picked.append(chunk_id)
                if len(picked) == count:
                    break
        return picked

    def _hit(self, chunk_id: int) -> ChunkHit:
        if chunk_id not in self.hits:
            self.hits.update(self.store.chunk_hits([chunk_id]))
        return self.hits[chunk_id]

    def passage(self, hit: ChunkHit) -> Passage:
        """The passage as `ask` shows it: path from its folder's name, location, heading."""
        location = SearchResult(rank=0, score=0.0, chunk=hit).location
        return Passage(from_root(hit.path, self.roots), location, hit.heading, hit.text)


def build_dataset(
    store: Store,
    embedder: Embedder,
    llm: LocalLLM,
    out_dir: Path,
    settings: DatasetSettings | None = None,
    progress: Progress | None = None,
) -> DatasetReport:
    """Sample, generate, check, dedupe, add contexts, split by document, write atomically."""
    settings = settings or DatasetSettings()
    settings.validate()
    # Distractors are single passages, like the oracle (Retriever also refuses an index built
    # with another embedder).
    retriever = Retriever(store, embedder, Stages(neighbour_runs=False))
    passages = sample_passages(store, settings)
    if not passages:
        raise LocalragError(
            f"no indexed passage has at least {settings.min_chars} characters: index some "
            "documents first (`localrag index FOLDER`) or lower the minimum"
        )
    k = settings.questions_per_passage
    counts = dict.fromkeys(
        ("sampled", "requested", "generated", "invalid", "rejected_quotes", "duplicates"), 0
    )
    counts["sampled"] = len(passages)
    deduper = Deduper()
    drafts: list[_Draft] = []
    if progress:
        progress(0, len(passages))
    for done, hit in enumerate(passages, 1):
        pairs, invalid = _generate_pairs(llm, hit, k)
        counts["requested"] += k
        counts["invalid"] += invalid
        counts["generated"] += len(pairs)
        for pair in pairs:
            quote = clean_quote(pair.quote, hit.text)
            if quote is None:
                counts["rejected_quotes"] += 1
            elif deduper.is_repeat(pair.question):
                counts["duplicates"] += 1
            else:
                key = f"{_sha256(hit.text)}\n{normalize_question(pair.question)}"
                drafts.append(
                    _Draft(QAPair(pair.question, quote, pair.answer), hit, _sha256(key)[:16])
                )
        if progress:
            progress(done, len(passages))
    if not drafts:
        raise LocalragError(
            f"the model wrote no usable questions about {len(passages)} passages "
            f"({counts['invalid']} unusable outputs, {counts['rejected_quotes']} quotes not found "
            "in their passage, "
            f"{counts['duplicates']} duplicates): try a larger instruct model with --model"
        )
    context = _Context(store, retriever, store.passage_frame(), store.roots())
    with_oracle = _oracle_choice(len(drafts), settings)
    examples = [
        _example(draft, i in with_oracle, context, settings) for i, draft in enumerate(drafts)
    ]
    train, test, note = _split_by_document(examples, settings)
    manifest = {
        "source": "index",
        "db": str(store.path),
        "embedder": store.model_identity(),
        "model": model_record(llm),
        "settings": asdict(settings),
        "counts": {**counts, "examples": len(examples), "train": len(train), "test": len(test)},
        "split": {
            "by": "document",
            "train_documents": len({e["document"] for e in train}),
            "test_documents": len({e["document"] for e in test}),
            "note": note,
        },
    }
    return _finish(out_dir, train, test, manifest, "index", note)


def _oracle_choice(n: int, settings: DatasetSettings) -> set[int]:
    """Exactly round(oracle_share · n) examples, chosen with the seed, keep their oracle."""
    rng = random.Random(f"{settings.seed}:oracle")
    return set(rng.sample(range(n), round(settings.oracle_share * n)))


def _example(
    draft: _Draft, has_oracle: bool, context: _Context, settings: DatasetSettings
) -> dict[str, Any]:
    """One training example: numbered sources (shuffled), RAFT answer, chat messages."""
    rng = random.Random(f"{settings.seed}:{draft.id}")
    question = draft.pair.question
    # Distractor-only examples get one more, so the number of sources never gives it away.
    wanted = settings.distractors if has_oracle else settings.distractors + 1
    hits = context.distractors(question, draft.oracle, wanted, rng)
    if has_oracle:
        hits.append(draft.oracle)
    rng.shuffle(hits)
    passages = [context.passage(h) for h in hits]
    if has_oracle:
        number = hits.index(draft.oracle) + 1
        answer = raft_answer(draft.pair.quote, draft.pair.answer, number)
    else:
        answer = NOT_IN_SOURCES
    return {
        "id": draft.id,
        "source": "generated",
        "question": question,
        "answer": answer,
        "short_answer": draft.pair.answer,
        "quote": draft.pair.quote,
        "oracle": has_oracle,
        "document": draft.oracle.path,
        "oracle_chunk_id": draft.oracle.chunk_id,
        "context": [
            {
                "number": n,
                "chunk_id": h.chunk_id,
                "document": h.path,
                "path": p.path,
                "location": p.location,
                "heading": p.heading,
                "text": h.text,
                "text_sha256": _sha256(h.text),
                "oracle": h is draft.oracle,
            }
            for n, (h, p) in enumerate(zip(hits, passages, strict=True), 1)
        ],
        "messages": training_messages(question, passages, answer),
    }


def _split_by_document(
    examples: list[dict[str, Any]], settings: DatasetSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """About test_share of the documents (lowest seeded hashes of their paths) go to test."""
    documents = sorted({e["document"] for e in examples})
    if len(documents) < 2:
        return examples, [], "Only one document: every example is in train, there is no test split."
    if settings.test_share <= 0:
        return examples, [], None
    wanted = min(max(round(settings.test_share * len(documents)), 1), len(documents) - 1)
    ranked = sorted(documents, key=lambda path: _sha256(f"{settings.seed}:{path}"))
    held_out = set(ranked[:wanted])
    train = [e for e in examples if e["document"] not in held_out]
    test = [e for e in examples if e["document"] in held_out]
    return train, test, None


def model_record(llm: LocalLLM) -> dict[str, Any]:
    """The generating model: registry name and sha256 when it is registered, else its file."""
    from localrag.models.registry import ModelRegistry

    path = Path(llm.info.path)
    record: dict[str, Any] = {
        "name": path.stem,
        "path": str(path),
        "sha256": None,
        "architecture": llm.info.architecture,
        "quantization": llm.info.file_type,
    }
    try:
        registry = ModelRegistry()
        for entry in registry.entries():
            if _same_file(registry.path_of(entry), path):
                record.update(name=entry.name, sha256=entry.sha256 or None)
                break
    except LocalragError:  # an unreadable manifest: the file itself is still named
        pass
    return record


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


# -- the user's own JSONL ---------------------------------------------------------------------

_ROLES = ("system", "user", "assistant")
_MAX_REPORTED = 5


@dataclass(frozen=True)
class UserRecord:
    """One valid line of a user's JSONL, normalised: the last question and its answer."""

    line: int
    question: str
    answer: str
    messages: list[dict[str, str]]
    context: list[str]


def read_user_jsonl(path: Path) -> list[UserRecord]:
    """Parse and check every line; errors name each bad line and what is wrong with it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalragError(f"cannot read {path}: {exc}") from exc
    records: list[UserRecord] = []
    problems: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(_user_record(number, line))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        shown = "; ".join(problems[:_MAX_REPORTED])
        more = (
            f"; and {len(problems) - _MAX_REPORTED} more" if len(problems) > _MAX_REPORTED else ""
        )
        raise LocalragError(f"{path}: {len(problems)} bad line(s): {shown}{more}")
    if not records:
        raise LocalragError(f"{path} holds no examples")
    return records


def _user_record(number: int, line: str) -> UserRecord:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:  # its own message names line 1 of the one-line text
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    if "messages" in data:
        return _chat_record(number, data["messages"])
    if "question" in data or "answer" in data:
        question = _text_field(data, "question")
        answer = _text_field(data, "answer")
        context = data.get("context", [])
        if not isinstance(context, list) or not all(
            isinstance(c, str) and c.strip() for c in context
        ):
            raise ValueError('"context" must be a list of non-empty strings')
        if context:
            passages = [
                Passage("provided", f"passage {i}", "", c) for i, c in enumerate(context, 1)
            ]
            messages = training_messages(question, passages, answer)
        else:  # no sources: a plain question, as asked of a model without retrieval
            messages = [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
        return UserRecord(number, question, answer, messages, list(context))
    raise ValueError('expected "messages" (chat) or "question" and "answer"')


def _text_field(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'"{key}" must be a non-empty string')
    return value.strip()


def _chat_record(number: int, messages: object) -> UserRecord:
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list')
    clean: list[dict[str, str]] = []
    for i, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            raise ValueError(f"message {i} is not an object")
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise ValueError(f"message {i} has role {role!r}; expected one of {', '.join(_ROLES)}")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f'message {i} needs a non-empty "content" string')
        clean.append({"role": role, "content": content})
    if clean[-1]["role"] != "assistant":
        raise ValueError("the last message must be the assistant's answer")
    users = [m["content"] for m in clean[:-1] if m["role"] == "user"]
    if not users:
        raise ValueError("no user message before the answer")
    return UserRecord(number, users[-1].strip(), clean[-1]["content"].strip(), clean, [])


def dataset_from_jsonl(
    source: Path, out_dir: Path, settings: DatasetSettings | None = None
) -> DatasetReport:
    """The user's own examples: checked, deduplicated, split by a seeded hash of the question."""
    settings = settings or DatasetSettings()
    settings.validate()
    records = read_user_jsonl(source)
    deduper = Deduper()
    examples: list[dict[str, Any]] = []
    for record in records:
        if deduper.is_repeat(record.question):
            continue
        examples.append(
            {
                "id": _sha256(f"user\n{normalize_question(record.question)}\n{record.answer}")[:16],
                "source": "user",
                "line": record.line,
                "question": record.question,
                "answer": record.answer,
                "context": [
                    {"number": n, "text": text, "text_sha256": _sha256(text)}
                    for n, text in enumerate(record.context, 1)
                ],
                "messages": record.messages,
            }
        )
    train: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for example in examples:
        draw = _unit(f"{settings.seed}:{normalize_question(example['question'])}")
        (test if draw < settings.test_share else train).append(example)
    note = None
    if not train:  # a handful of questions can all hash into the test share
        note = "Every example fell in the test split: lower test_share."
    counts = {
        "records": len(records),
        "duplicates": len(records) - len(examples),
        "examples": len(examples),
        "train": len(train),
        "test": len(test),
    }
    manifest = {
        "source": "jsonl",
        "input": str(Path(source).absolute()),
        "input_sha256": sha256_file(Path(source)),
        "db": None,
        "embedder": None,
        "model": None,
        "settings": asdict(settings),
        "counts": counts,
        "split": {"by": "question", "note": note},
    }
    return _finish(out_dir, train, test, manifest, "jsonl", note)


# -- writing ----------------------------------------------------------------------------------


def _finish(
    out_dir: Path,
    train: list[dict[str, Any]],
    test: list[dict[str, Any]],
    manifest: dict[str, Any],
    source: Literal["index", "jsonl"],
    note: str | None,
) -> DatasetReport:
    """Hash the two files, complete the manifest, write all three atomically."""
    train_bytes, test_bytes = _jsonl(train), _jsonl(test)
    train_sha = hashlib.sha256(train_bytes).hexdigest()
    test_sha = hashlib.sha256(test_bytes).hexdigest()
    dataset_sha = dataset_sha256(train_sha, test_sha)
    full = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **manifest,
        "files": {
            TRAIN_FILE: {"sha256": train_sha, "examples": len(train)},
            TEST_FILE: {"sha256": test_sha, "examples": len(test)},
        },
        "dataset_sha256": dataset_sha,
        "examples": [_manifest_entry(e, "train") for e in train]
        + [_manifest_entry(e, "test") for e in test],
    }
    manifest_bytes = (json.dumps(full, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    out = Path(out_dir).expanduser().absolute()
    write_atomically(
        out, {TRAIN_FILE: train_bytes, TEST_FILE: test_bytes, MANIFEST_FILE: manifest_bytes}
    )
    return DatasetReport(out, dict(manifest["counts"]), dataset_sha, source, note)


def dataset_sha256(train_sha256: str, test_sha256: str) -> str:
    """One hash for the dataset: that of `sha256sum train.jsonl test.jsonl`'s output."""
    listing = f"{train_sha256}  {TRAIN_FILE}\n{test_sha256}  {TEST_FILE}\n"
    return hashlib.sha256(listing.encode("ascii")).hexdigest()


def _manifest_entry(example: dict[str, Any], split: str) -> dict[str, Any]:
    """Lineage per example: where it came from, which chunks it shows, their text hashes."""
    entry: dict[str, Any] = {"id": example["id"], "split": split, "source": example["source"]}
    if example["source"] == "generated":
        entry |= {
            "document": example["document"],
            "oracle": example["oracle"],
            "oracle_chunk_id": example["oracle_chunk_id"],
        }
    else:
        entry["line"] = example["line"]
    entry["chunk_ids"] = [c["chunk_id"] for c in example["context"] if "chunk_id" in c]
    entry["text_hashes"] = [c["text_sha256"] for c in example["context"]]
    return entry


def write_atomically(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write into a temporary sibling folder, then rename it into place.

    An interrupted run leaves the previous dataset (or nothing), never a mix. A folder that
    holds anything but an earlier dataset is refused rather than overwritten.
    """
    if out_dir.exists():
        if not out_dir.is_dir():
            raise LocalragError(f"{out_dir} is a file; give a folder for the dataset")
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in DATASET_FILES)
        if foreign:
            raise LocalragError(
                f"{out_dir} holds other files ({', '.join(foreign[:3])}); give a new or "
                "empty folder, or one holding an earlier dataset to replace"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old: Path | None = None
    try:
        for name, data in files.items():
            with open(tmp / name, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex}.old")
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out_dir.exists():
            os.rename(old, out_dir)  # put the earlier dataset back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _jsonl(examples: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples).encode("utf-8")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unit(text: str) -> float:
    """A number in [0, 1) fixed by `text`: a seeded coin that does not depend on order."""
    return int(_sha256(text)[:15], 16) / 16**15
