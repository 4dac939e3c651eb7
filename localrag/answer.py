"""The question-answering pipeline: question → sources → grounded, cited, streamed answer.

    ask(question)
      ├─ a question about the collection ("which files mention X") → answered from the index
      ├─ follow-up? → rewritten into a standalone question (by the model, when there is one)
      ├─ hybrid retrieval; nothing relevant enough → say so, the model is not called
      ├─ no language model → the best passages themselves (extractive mode) and a hint
      └─ pack sources into the context → stream the model's answer, citations checked

`Answerer.ask` returns an `Answer` at once, with its sources; iterating it streams the text.
The CLI and the TUI both drive this; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from localrag.citations import CitationFilter
from localrag.collection import (
    CollectionAnswer,
    answer_collection_question,
    detect_collection_question,
)
from localrag.followups import refers_back
from localrag.paths import from_root
from localrag.prompt import (
    ONE_LINE_GRAMMAR,
    Passage,
    condense_messages,
    pack_prompt,
)
from localrag.reasoning import ReasoningSplitter
from localrag.retrieval import (
    Retriever,
    SearchResult,
    clean_query,
    fuse_rankings,
    has_words,
    query_terms,
)

if TYPE_CHECKING:
    from localrag.embedder import Embedder
    from localrag.llm import GenerationStats, LocalLLM
    from localrag.reranker import Reranker
    from localrag.store import Store

Mode = Literal["generated", "extractive", "not_found", "collection"]
# Why a question was answered with passages rather than by the model.
PassagesOnly = Literal["no model", "no model chosen", "model failed", "base model"]
# Why an Answerer has no language model at all.
NoModelReason = Literal["not installed", "not asked", "failed"]

# Worded for both front ends: `ask` prints them under an answer, the TUI as a notification
# when the model is settled, so they speak of answers in general, not of the ones above them.
NO_MODEL_HINT = (
    "No language model is installed, so answers are the best passages themselves. "
    "Add one with `localrag models pull` (online) or `localrag models import FILE.gguf`."
)
NOT_ASKED_HINT = (
    "Extractive mode: no language model was asked for, so answers are the best passages "
    "themselves. To have a model write them, leave out --no-model (in `localrag tui`, "
    "choose a model with f2)."
)
MODEL_FAILED_HINT = (
    "The language model could not be loaded: {problem}. Answers are the best passages "
    "themselves until it can be."
)
BASE_MODEL_HINT = (
    "{file} is a pre-trained base model (it has no chat template): it continues text but does "
    "not answer questions, so these are the best passages themselves. Fine-tune it on your "
    "documents (`localrag finetune`), or choose an instruct model with `localrag models default`."
)
NO_WORDS_TEXT = "The question has no words to search for."
NOT_FOUND_TEXT = (
    "I found nothing in your documents that is relevant enough to answer this, "
    "so I did not ask the model to guess."
)


@dataclass(frozen=True)
class NoModel:
    """Why there is no language model, and so what both front ends say about it.

    "not installed": nothing to load; "not asked": extractive mode by choice (`ask
    --no-model`, "No model" in the TUI's picker); "failed": the model could not be loaded
    (`problem` says why: a corrupt models.json, llama-cpp-python missing, a broken file).
    """

    reason: NoModelReason
    problem: str | None = None

    @classmethod
    def failed(cls, exc: BaseException) -> NoModel:
        # Our errors are written for the user; anything else is named, so it can be reported.
        from localrag.errors import LocalragError

        problem = str(exc) if isinstance(exc, LocalragError) else f"{type(exc).__name__}: {exc}"
        return cls("failed", problem.rstrip("."))

    @property
    def hint(self) -> str:
        if self.reason == "not asked":
            return NOT_ASKED_HINT
        if self.reason == "failed":
            return MODEL_FAILED_HINT.format(problem=self.problem or "unknown error")
        return NO_MODEL_HINT

    @property
    def label(self) -> PassagesOnly:
        """A few words for an answer's line of details (the TUI's turn)."""
        labels: dict[NoModelReason, PassagesOnly] = {
            "not installed": "no model",
            "not asked": "no model chosen",
            "failed": "model failed",
        }
        return labels[self.reason]


@dataclass
class AnswerSettings:
    """Retrieval and grounding knobs; `[answer]` in config.toml overrides them."""

    candidates: int = 8  # passages retrieved; packing keeps as many as the context holds
    # all-MiniLM-L6-v2 cosine below which a passage is not about the question, unless its
    # keywords cover the question. bench/calibrate_relevance.py on the PostgreSQL manual: at
    # 0.35, 99 % of 96 on-topic questions pass and 5 % of 40 off-topic ones (0.30: 100 %, 25 %).
    min_similarity: float = 0.35
    history_turns: int = 4  # earlier turns given to the model (oldest dropped first)
    rewrite_followups: bool = True  # ask the model to make follow-ups standalone
    extractive_passages: int = 3
    # A cross-encoder under models/rerankers (`localrag models import-reranker`) that reorders
    # the best passages of every search; "" or "none": no reranker.
    reranker: str = ""

    @classmethod
    def from_config(cls, **overrides: Any) -> AnswerSettings:
        """The defaults, then config.toml `[answer]`, then `overrides` (None: not given)."""
        from localrag.config import apply_settings, read_config_section

        settings = cls()
        apply_settings(settings, read_config_section("answer"), "config.toml [answer]")
        given = {k: v for k, v in overrides.items() if v is not None}
        apply_settings(settings, given, "answer settings")
        return settings


@dataclass(frozen=True)
class Source:
    """A numbered passage the answer may cite: [number] ↔ file and place."""

    number: int
    result: SearchResult
    passage: Passage  # as the model saw it (maybe cut short)

    @property
    def path(self) -> str:
        return self.result.path

    @property
    def location(self) -> str:
        return self.result.location


@dataclass
class Turn:
    question: str
    answer: str
    search_query: str
    sources: list[Source]


@dataclass
class Conversation:
    """Earlier turns, so follow-ups ("and the second one?") can be resolved."""

    turns: list[Turn] = field(default_factory=list)

    def history(self, limit: int) -> list[tuple[str, str]]:
        return [(t.question, t.answer) for t in self.turns[-limit:]] if limit > 0 else []

    def clear(self) -> None:
        self.turns.clear()


class Answer:
    """One answer: `sources` are known at once; iterate to stream the text.

    After iteration, `text` is the whole answer, `cited` the sources it cites, `invalid`
    citation numbers the model made up (removed from the text), and `stats` the generation
    timings. A fine-tuned model's `##Reason:` part is kept in `reasoning`, not in `text`.
    The turn is added to the conversation when the stream ends.
    """

    def __init__(
        self,
        question: str,
        mode: Mode,
        *,
        search_query: str,
        sources: list[Source],
        conversation: Conversation | None,
        hint: str | None = None,
        passages_only: PassagesOnly | None = None,
        collection: CollectionAnswer | None = None,
        stream: Iterator[str] | None = None,
        fixed_text: str = "",
        stats: GenerationStats | None = None,
        dropped: int = 0,
    ) -> None:
        self.question = question
        self.mode = mode
        self.search_query = search_query
        self.sources = sources
        self.hint = hint
        self.passages_only = passages_only  # set when the model could have answered but did not
        self.collection = collection
        self.stats = stats
        self.dropped = dropped  # retrieved passages that did not fit into the context
        self.text = ""
        self.reasoning = ""  # a fine-tuned model's quoted reasoning, kept out of `text`
        self.invalid: list[int] = []
        self._cited: list[int] = []
        self._stream = stream
        self._fixed_text = fixed_text
        self._conversation = conversation
        self._done = False

    def __iter__(self) -> Generator[str, None, None]:
        if self._done:
            yield self.text
            return
        if self._stream is None:
            self.text = self._fixed_text
            self._cited = [s.number for s in self.sources]
            self._finish()
            yield self.text
            return
        citations = CitationFilter({s.number for s in self.sources})
        reasoning = ReasoningSplitter()
        parts: list[str] = []
        try:
            for piece in self._stream:
                checked = citations.feed(reasoning.feed(piece))
                if checked:
                    parts.append(checked)
                    yield checked
            tail = citations.feed(reasoning.flush()) + citations.flush()
            if tail:
                parts.append(tail)
                yield tail
        finally:
            self.text = "".join(parts).strip()
            self.reasoning = reasoning.reasoning
            self._cited = citations.cited
            self.invalid = citations.invalid
            self._finish()

    def read(self) -> str:
        """Consume the stream; the whole answer."""
        for _ in self:
            pass
        return self.text

    @property
    def cited(self) -> list[Source]:
        by_number = {s.number: s for s in self.sources}
        return [by_number[n] for n in self._cited if n in by_number]

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._conversation is not None:
            self._conversation.turns.append(
                Turn(self.question, self.text, self.search_query, self.sources)
            )


# Loads the model when an answer first needs one: the model, or None and why not.
ModelLoader = Callable[[], "tuple[LocalLLM | None, NoModel | None]"]


class Answerer:
    """Answers questions over one index, with a language model or without one."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        llm: LocalLLM | None = None,
        settings: AnswerSettings | None = None,
        *,
        no_model: NoModel | None = None,
        load_model: ModelLoader | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.store = store
        self.retriever = Retriever(store, embedder, reranker=reranker)
        self._llm = llm
        # With `load_model`, the model is loaded the first time an answer needs it: a
        # question nothing in the index answers, or a collection question, never loads it.
        self._load_model = load_model
        self.settings = settings or AnswerSettings()
        # Why `llm` is None, so the hint says what is true (not "none installed" after
        # --no-model or a failed load); None means nothing was said: none is installed.
        self.no_model = no_model or NoModel("not installed")
        # Paths reach the model from their folder's name: shorter, and no home folder leaks.
        self._roots = store.roots()

    @property
    def llm(self) -> LocalLLM | None:
        if self._load_model is not None:
            load, self._load_model = self._load_model, None
            self._llm, why = load()
            if why is not None:
                self.no_model = why
        return self._llm

    @property
    def loaded_llm(self) -> LocalLLM | None:
        """The model if it was loaded, without loading it (for closing it)."""
        return self._llm

    def ask(
        self,
        question: str,
        conversation: Conversation | None = None,
        *,
        path_filter: str | None = None,
        generate: bool = True,
    ) -> Answer:
        """Answer `question`; with `generate=False` (search-only) show passages, never the model."""
        question = clean_query(question).strip()
        collection = self._collection_answer(question)
        if collection is not None:
            return self._collection_result(question, collection, conversation)
        if not has_words(question):
            return Answer(
                question,
                "not_found",
                search_query=question,
                sources=[],
                conversation=conversation,
                fixed_text=NO_WORDS_TEXT,
            )
        history = conversation.history(self.settings.history_turns) if conversation else []
        # Search-only never calls the model, not even to rewrite a follow-up.
        search_query, results = self._retrieve(question, history, path_filter, rewrite=generate)
        relevant = [r for r in results if self._is_relevant(r)]
        if not relevant:
            return Answer(
                question,
                "not_found",
                search_query=search_query,
                sources=[],
                conversation=conversation,
                fixed_text=NOT_FOUND_TEXT,
            )
        if not generate:
            shown = relevant[: self.settings.candidates]
            return self._extractive(question, search_query, shown, conversation, hint=None)
        if self.llm is None or self.llm.is_base_model:
            shown = relevant[: self.settings.extractive_passages]
            answer = self._extractive(question, search_query, shown, conversation, hint=None)
            if self.llm is None:
                answer.hint, answer.passages_only = self.no_model.hint, self.no_model.label
            else:
                answer.hint = BASE_MODEL_HINT.format(file=self.llm.info.path.name)
                answer.passages_only = "base model"
            return answer
        return self._generate(question, search_query, relevant, history, conversation)

    # -- the steps ----------------------------------------------------------------------------

    def _collection_answer(self, question: str) -> CollectionAnswer | None:
        query = detect_collection_question(question)
        if query is None:
            return None
        return answer_collection_question(self.store, self.retriever, query)

    def _collection_result(
        self, question: str, collection: CollectionAnswer, conversation: Conversation | None
    ) -> Answer:
        """An answer computed from the index itself; the model is not involved."""
        sources = [Source(r.rank, r, self._passage(r)) for r in collection.sources]
        return Answer(
            question,
            "collection",
            search_query=question,
            sources=sources,
            conversation=conversation,
            collection=collection,
            fixed_text=collection.text,
        )

    def _retrieve(
        self,
        question: str,
        history: Sequence[tuple[str, str]],
        path_filter: str | None,
        *,
        rewrite: bool = True,
    ) -> tuple[str, list[SearchResult]]:
        """Search for the question; a follow-up searches for what it refers to as well (with
        the model's standalone rewrite when `rewrite` and there is a model)."""
        k = self.settings.candidates
        if not history or not refers_back(question):
            # A question that stands on its own starts a new topic: searched alone, so the
            # previous topic cannot crowd it out (and no model is asked to rewrite it).
            return question, self.retriever.search(question, k, path_filter=path_filter)
        previous = history[-1][0]
        queries: list[tuple[str, float]] = []
        rewritten = self._rewrite_followup(question, history) if rewrite else None
        if rewritten:
            queries.append((rewritten, 1.0))
        # Without a (usable) rewrite, the previous question supplies what "it" refers to; the
        # question alone still wins when the topic changed.
        queries.append((f"{previous} {question}", 0.8))
        queries.append((question, 0.6))
        ranked = [
            (self.retriever.search(q, k, path_filter=path_filter), weight) for q, weight in queries
        ]
        return queries[0][0], _fuse_results(ranked, k)

    def _rewrite_followup(self, question: str, history: Sequence[tuple[str, str]]) -> str | None:
        if self.llm is None or self.llm.is_base_model or not self.settings.rewrite_followups:
            return None
        recent = [(q, self.llm.truncate(a, 200)) for q, a in history[-2:]]
        prompt = self.llm.chat_prompt(condense_messages(recent, question))
        rewritten = self.llm.complete(
            prompt.tokens, max_tokens=96, temperature=0.0, grammar=ONE_LINE_GRAMMAR
        ).strip()
        # A rewrite that shares no word with the conversation is noise, not a resolution.
        context_words = set(query_terms(question + " " + " ".join(q for q, _ in recent)))
        if not rewritten or not context_words & set(query_terms(rewritten)):
            return None
        return rewritten

    def _is_relevant(self, result: SearchResult) -> bool:
        if result.vector_score is not None and result.vector_score >= self.settings.min_similarity:
            return True
        # The keyword side only keeps passages covering most of the question's rare words.
        return result.keyword_score is not None

    def _passage(self, result: SearchResult) -> Passage:
        chunk = result.chunk
        path = from_root(result.path, self._roots)
        return Passage(path, result.location, chunk.heading, chunk.text)

    def _extractive(
        self,
        question: str,
        search_query: str,
        results: list[SearchResult],
        conversation: Conversation | None,
        hint: str | None,
    ) -> Answer:
        from localrag.retrieval import snippet

        sources = [Source(i, r, self._passage(r)) for i, r in enumerate(results, 1)]
        lines = []
        for source in sources:
            text, _ = snippet(source.result.chunk.text, search_query, width=400)
            lines.append(f"[{source.number}] {source.passage.path} ({source.location})\n{text}")
        return Answer(
            question,
            "extractive",
            search_query=search_query,
            sources=sources,
            conversation=conversation,
            fixed_text="\n\n".join(lines),
            hint=hint,
        )

    def _generate(
        self,
        question: str,
        search_query: str,
        results: list[SearchResult],
        history: Sequence[tuple[str, str]],
        conversation: Conversation | None,
    ) -> Answer:
        from localrag.llm import GenerationStats

        assert self.llm is not None
        packed = pack_prompt(
            self.llm,
            question,
            [self._passage(r) for r in results],
            history,
            max_answer_tokens=self.llm.settings.max_tokens,
        )
        sources = [
            Source(i, r, p)
            for i, (r, p) in enumerate(zip(results, packed.passages, strict=False), 1)
        ]
        stats = GenerationStats()
        stream = self.llm.stream(packed.tokens, max_tokens=packed.max_answer_tokens, stats=stats)
        return Answer(
            question,
            "generated",
            search_query=search_query,
            sources=sources,
            conversation=conversation,
            stream=stream,
            stats=stats,
            dropped=packed.dropped,
        )


def _fuse_results(ranked: Sequence[tuple[list[SearchResult], float]], k: int) -> list[SearchResult]:
    """Weighted reciprocal-rank fusion of several result lists (by first passage); a result
    sharing a passage with a better one (neighbours joined differently per query) is dropped."""
    best: dict[int, SearchResult] = {}  # per chunk, the result with the highest similarity
    for results, _ in ranked:
        for result in results:
            seen = best.get(result.chunk.chunk_id)
            if seen is None or (result.vector_score or 0) > (seen.vector_score or 0):
                best[result.chunk.chunk_id] = result
    fused = fuse_rankings(([r.chunk.chunk_id for r in results], w) for results, w in ranked)
    kept: list[SearchResult] = []
    taken: set[int] = set()
    for chunk_id, _ in fused:
        result = best[chunk_id]
        if taken.isdisjoint(result.run):
            kept.append(result)
            taken.update(result.run)
            if len(kept) == k:
                break
    return kept
