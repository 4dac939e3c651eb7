"""Hybrid retrieval: vector KNN and FTS5 BM25, fused by reciprocal rank.

Meaning and keywords fail differently: embeddings find paraphrases but blur exact names
(`pg_stat_statements`, an error code); BM25 finds exact terms but misses paraphrases. Reciprocal
rank fusion needs no score calibration between the two, so it is robust across corpora.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Literal

import numpy as np

from localrag.documents import passage_with_heading
from localrag.embedder import Embedder
from localrag.errors import LocalragError
from localrag.reranker import Reranker
from localrag.store import ChunkHit, Store

Mode = Literal["hybrid", "vector", "keyword"]

# Fusion settings, tuned with `localrag eval retrieval` on the PostgreSQL manual
# (bench/questions): a steep rank curve (small k) and the keyword list at half weight were best;
# the usual k=60 with equal weights let keyword noise push good vector hits down.
RRF_K = 10
KEYWORD_WEIGHT = 0.5
PLAIN_RRF_K = 60  # the textbook constant (Cormack et al. 2009), for comparison
# How deep each retriever looks before fusion.
CANDIDATES = 50
# Binary (sign-bit) KNN is a coarse first pass; this many are rescored with float vectors.
# sqlite-vec's KNN cost grows faster than linearly in k (100k rows: k=100 15 ms, k=400 68 ms).
BINARY_OVERSAMPLE = 100
# A keyword hit must carry at least this share of the query's IDF weight to count: one
# incidental common word ("long", "home") must not outvote the meaning of a whole question.
MIN_KEYWORD_COVERAGE = 0.7
# A specific term (a code, a name, an invented word) in at most this many passages gives the
# passages holding it a lane of their own in the fusion, at this weight.
EXACT_TERM_CHUNKS = 3
EXACT_WEIGHT = 1.5
# Passages next to each other in one file, both among this many best candidates, are one
# result (at most RUN_MAX_CHUNKS passages long): the reader gets the text around a border in
# one piece, and the other results are free for other places (bench/questions/README.md).
RUN_WINDOW = 50
RUN_MAX_CHUNKS = 3
# An imported cross-encoder (reranker.py) reorders this many of the best fused passages: one
# model call per passage, so this is most of a reranked search's time.
RERANK_CANDIDATES = 30
# A word the embedder splits into this many pieces or more is unknown to it as a whole.
SPECIFIC_MIN_PIECES = 2
# A term in more chunks than this is "common": it neither drives the hybrid keyword query
# (matching it means scoring a large share of the index) nor filters by coverage.
COMMON_TERM_CHUNKS = 2000

_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    (
        "a an and are as at be but by can do does for from has have how i if in is it its of on or "
        "so that the their there these this to was what when where which who why will with you your"
    ).split()
)
_MAX_QUERY_TERMS = 32


@dataclass(frozen=True)
class Stages:
    """Which parts of hybrid search run: all of them normally; `eval retrieval --ablate`
    switches each off in turn to show what it buys on the user's own questions."""

    keyword_side: bool = True  # BM25 candidates fused with the vector ones
    coverage_filter: bool = True  # keyword hits must cover most of the query's IDF weight
    exact_lane: bool = True  # passages holding a rare code, name or invented word
    tuned_fusion: bool = True  # RRF_K and KEYWORD_WEIGHT; off: textbook RRF (k=60, equal)
    neighbour_runs: bool = True  # adjacent passages of one file found together: one result
    reranking: bool = True  # the reranker, where one is given, reorders the best passages


ALL_STAGES = Stages()


@dataclass(frozen=True)
class SearchResult:
    rank: int
    score: float
    chunk: ChunkHit
    vector_score: float | None = None  # cosine similarity, when the vector side found it
    keyword_score: float | None = None  # BM25 (higher is better), when FTS found it
    also_in: list[str] = field(default_factory=list)  # other files with the identical passage
    # The stored passages this result joins, in file order (one, unless neighbours were found
    # together); `chunk` then spans them all, with the chunk_id of the one that matched best.
    run: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.run:
            object.__setattr__(self, "run", (self.chunk.chunk_id,))

    @property
    def path(self) -> str:
        return self.chunk.path

    @property
    def location(self) -> str:
        """Where to look in the file: see `chunk_location`."""
        return chunk_location(self.chunk)


def chunk_location(c: ChunkHit) -> str:
    """`p. 3`, `pp. 3-4`, `lines 10-24` or `line 7`: where to look in the file."""
    if c.page_start is not None:
        if c.page_end is not None and c.page_end != c.page_start:
            return f"pp. {c.page_start}-{c.page_end}"
        return f"p. {c.page_start}"
    if c.line_start is not None:
        if c.line_end is not None and c.line_end != c.line_start:
            return f"lines {c.line_start}-{c.line_end}"
        return f"line {c.line_start}"
    return f"chars {c.char_start}-{c.char_end}"


def clean_query(text: str) -> str:
    """Any text a user can type or pass as an argument, made safe for every later step.

    A command-line argument holding bytes that are not UTF-8 (`$'\\xff notice'`) arrives with
    surrogate escapes, which the tokenizers, the model and SQLite all reject: those bytes
    become U+FFFD, as a terminal shows them. NUL characters go too.
    """
    if not text.isascii():
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text.replace("\x00", " ")


NO_WORDS_MESSAGE = "Nothing to search for: the query has no words."


def has_words(text: str) -> bool:
    """Whether there is anything to search for: punctuation alone matches nothing real."""
    return _WORD.search(text) is not None


def query_terms(text: str) -> list[str]:
    """The words of a question worth matching: stopwords go unless nothing else is left."""
    words = [w.lower() for w in _WORD.findall(text)]
    content = [w for w in words if w not in _STOPWORDS]
    return list(dict.fromkeys(content or words))[:_MAX_QUERY_TERMS]


def fts_query(text: str) -> str | None:
    """Any user text → a valid FTS5 query (each term quoted, OR-ed), or None if no words.

    Quoting makes every term a string literal, so FTS5 operators (AND, NEAR, *, ^, column:)
    and unbalanced quotes in the user's text are never interpreted.
    """
    terms = query_terms(text)
    if not terms:
        return None
    return " OR ".join(_quoted(t) for t in terms)


def _exact_lane(
    ranked: Sequence[tuple[int, float]], holders: dict[str, set[int] | None]
) -> tuple[list[int], float]:
    """Keyword hits holding the query's specific terms that are in only a few passages, and
    the lane's weight: a term in one passage says more than one in five (which may be
    mentioned in passing where the answer is not)."""
    rare = [
        found
        for found in holders.values()
        if found is not None and 0 < len(found) <= EXACT_TERM_CHUNKS
    ]
    if not rare:
        return [], 0.0
    held = [(sum(cid in found for found in rare), n, cid) for n, (cid, _) in enumerate(ranked)]
    lane = [cid for count, _, cid in sorted(held, key=lambda h: (-h[0], h[1])) if count]
    return lane, EXACT_WEIGHT / min(len(found) for found in rare)


def _holds(holders: set[int] | None, chunk_id: int) -> bool:
    """Common terms (None) count as present everywhere."""
    return holders is None or chunk_id in holders


def _quoted(term: str) -> str:
    """An FTS5 string literal: operators and punctuation inside it mean nothing."""
    return '"' + term.replace('"', '""') + '"'


class Retriever:
    """Search one store with one embedder; cheap to create, holds no state between queries."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        stages: Stages = ALL_STAGES,
        reranker: Reranker | None = None,
    ) -> None:
        if store.model_identity() is None:
            raise LocalragError(
                f"the index at {store.path} is empty: run `localrag index FOLDER` first"
            )
        store.check_embedder(
            embedder.identity.name, embedder.identity.dim, embedder.identity.fingerprint
        )
        self.store = store
        self.embedder = embedder
        self.stages = stages
        self.reranker = reranker if stages.reranking else None
        self._last_query: tuple[str, np.ndarray] | None = None

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        path_filter: str | None = None,
        mode: Mode = "hybrid",
    ) -> list[SearchResult]:
        query = clean_query(query)
        if not has_words(query):
            return []  # "???" would otherwise return whatever lies nearest to punctuation
        depth = max(CANDIDATES, k)
        vector_ranked: list[tuple[int, float]] = []
        keyword_ranked: list[tuple[int, float]] = []
        exact: list[int] = []
        exact_weight = 0.0
        with self.store.snapshot():
            if mode in ("hybrid", "vector") and query.strip():
                vector_ranked = self._vector_search(query, depth, path_filter)
            if mode == "keyword":
                match = fts_query(query)
                keyword_ranked = self.store.fts_search(match, depth, path_filter) if match else []
            elif mode == "hybrid" and self.stages.keyword_side:
                keyword_ranked, exact, exact_weight = self._keyword_search(
                    query, depth, path_filter
                )
                exact = self._by_meaning(exact, query) if self.stages.exact_lane else []
            tuned = self.stages.tuned_fusion
            fused = fuse_rankings(
                [
                    ([cid for cid, _ in vector_ranked], 1.0),
                    ([cid for cid, _ in keyword_ranked], KEYWORD_WEIGHT if tuned else 1.0),
                    (exact, exact_weight),
                ],
                k=RRF_K if tuned else PLAIN_RRF_K,
            )
            hits = self.store.chunk_hits([cid for cid, _ in fused[: max(k * 3, RUN_WINDOW)]])
        if self.reranker is not None:
            fused = _reranked(self.reranker, query, fused, hits)
        runs = _gather_runs(fused, hits, k, joining=self.stages.neighbour_runs)
        vector_scores = dict(vector_ranked)
        keyword_scores = dict(keyword_ranked)
        return [
            SearchResult(
                rank=rank,
                score=run.score,
                chunk=run.joined(),
                vector_score=vector_scores.get(run.best.chunk_id),
                keyword_score=keyword_scores.get(run.best.chunk_id),
                also_in=run.also_in,
                run=tuple(h.chunk_id for h in run.members),
            )
            for rank, run in enumerate(runs, 1)
        ]

    def _keyword_search(
        self, query: str, depth: int, path_filter: str | None
    ) -> tuple[list[tuple[int, float]], list[int], float]:
        """Hybrid's keyword side: BM25 hits that cover enough of the query (by IDF), and the
        "exact" lane with its weight: those holding a term found in only a few passages.

        Like a search engine's "minimum should match": each term weighs its inverse document
        frequency, and terms found nowhere count at full weight, so a passage matching one
        common word of a long question is dropped while one matching its rare words stays.
        A term as rare as a code, a surname or an invented word says more than any embedding
        of it can (a meaningless word's vector neighbours are noise), so the passages holding
        it get a lane of their own in the fusion.
        """
        terms = query_terms(query)
        if not terms:
            return [], [], 0.0
        total = max(self.store.chunk_count(), 1)
        # One capped lookup per term gives both its frequency and which chunks hold it.
        holders: dict[str, set[int] | None] = {}  # None: a common term
        weights: dict[str, float] = {}
        for term in terms:
            found = self.store.chunks_with_term(_quoted(term), COMMON_TERM_CHUNKS + 1)
            common = len(found) > COMMON_TERM_CHUNKS
            holders[term] = None if common else found
            weights[term] = math.log(1 + total / (len(found) + 0.5))
        rare = [t for t in terms if holders[t] is not None]
        # Rare terms find the candidates; a question of common words only must match them all
        # (OR over common words would score a large share of the index).
        if rare:
            match = " OR ".join(_quoted(t) for t in rare)
        else:
            match = " AND ".join(_quoted(t) for t in terms)
        ranked = self.store.fts_search(match, depth, path_filter)
        specific = self._specific_terms(query)
        exact, weight = _exact_lane(ranked, {t: holders[t] for t in terms if t in specific})
        if len(terms) < 2 or not self.stages.coverage_filter:
            return ranked, exact, weight
        full = sum(weights.values())
        kept = []
        for chunk_id, score in ranked:
            covered = sum(w for t, w in weights.items() if _holds(holders[t], chunk_id))
            if covered / full >= MIN_KEYWORD_COVERAGE:
                kept.append((chunk_id, score))
        return kept, exact, weight

    def _specific_terms(self, query: str) -> set[str]:
        """Words that name something rather than describe it: a code or number (digits), a
        name (capitalised inside the query, or a query of one capitalised word), or a word the
        embedder does not know whole (it splits it into pieces: invented words, jargon)."""
        words = _WORD.findall(query)
        specific: set[str] = set()
        for position, word in enumerate(words):
            term = word.lower()
            if term in _STOPWORDS:
                continue
            named = word[:1].isupper() and (position > 0 or len(words) == 1)
            pieces = self.embedder.count_tokens(term)
            if named or any(ch.isdigit() for ch in word) or pieces >= SPECIFIC_MIN_PIECES:
                specific.add(term)
        return specific

    def _by_meaning(self, chunk_ids: list[int], query: str) -> list[int]:
        """Chunks closest in meaning to the whole query first: of the few passages holding an
        identifier, the one that explains it, not the one that merely mentions it."""
        if len(chunk_ids) < 2:
            return chunk_ids
        hits = self.store.chunk_hits(chunk_ids)
        ids, matrix = self.store.vectors(sorted({h.embedding_id for h in hits.values()}))
        similarity = dict(zip(ids, matrix @ self._query_vector(query), strict=True))
        return sorted(chunk_ids, key=lambda c: -similarity.get(hits[c].embedding_id, -1.0))

    def _query_vector(self, query: str) -> np.ndarray:
        """The query's embedding, computed once per query (the model call is the cost)."""
        if self._last_query is None or self._last_query[0] != query:
            self._last_query = (query, self.embedder.embed_query(query).astype(np.float32))
        return self._last_query[1]

    def _vector_search(
        self, query: str, depth: int, path_filter: str | None
    ) -> list[tuple[int, float]]:
        """(chunk id, cosine) best first."""
        q = self._query_vector(query)
        if path_filter:
            return self.store.exact_vector_search(q, depth, path_filter)
        candidates = self.store.knn_candidates(q, max(BINARY_OVERSAMPLE, depth * 2))
        if not candidates:
            return []
        ids, matrix = self.store.vectors(candidates)
        sims = matrix @ q.astype(np.float32)
        order = np.argsort(-sims)[:depth]
        best = [(ids[i], float(sims[i])) for i in order]
        chunk_ids = self.store.chunks_for_embeddings([e for e, _ in best])
        ranked: list[tuple[int, float]] = []
        for embedding_id, sim in best:
            ranked.extend((cid, sim) for cid in chunk_ids.get(embedding_id, []))
        return ranked[:depth]


def _reranked(
    reranker: Reranker,
    query: str,
    fused: list[tuple[int, float]],
    hits: dict[int, ChunkHit],
) -> list[tuple[int, float]]:
    """The first RERANK_CANDIDATES passages in the cross-encoder's order, the rest after them.
    The scores stay those of the fusion, handed out again best first, so a result's score
    still falls with its rank."""
    head = [(cid, score) for cid, score in fused[:RERANK_CANDIDATES] if cid in hits]
    if len(head) < 2:
        return fused
    texts = [passage_with_heading(hits[cid].heading, hits[cid].text) for cid, _ in head]
    relevance = reranker.score(query, texts)
    order = sorted(range(len(head)), key=lambda i: -float(relevance[i]))
    scores = sorted((score for _, score in head), reverse=True)
    kept = {cid for cid, _ in head}
    reordered = [(head[i][0], score) for i, score in zip(order, scores, strict=True)]
    return reordered + [entry for entry in fused if entry[0] not in kept]


@dataclass
class _Run:
    """One result in the making: its best passage, and its neighbours found with it."""

    best: ChunkHit
    score: float
    members: list[ChunkHit]
    also_in: list[str] = field(default_factory=list)

    def takes(self, hit: ChunkHit) -> bool:
        """Whether `hit` continues this run at either end, and there is room for it."""
        return (
            hit.document_id == self.best.document_id
            and len(self.members) < RUN_MAX_CHUNKS
            and hit.ordinal in (self.members[0].ordinal - 1, self.members[-1].ordinal + 1)
        )

    def add(self, hit: ChunkHit) -> None:
        self.members.append(hit)
        self.members.sort(key=lambda h: h.ordinal)

    def joined(self) -> ChunkHit:
        """The run as one passage: texts in file order, lines and pages from first to last;
        its id, heading and vector stay those of the passage that matched best."""
        first, last = self.members[0], self.members[-1]
        if first is last:
            return first
        pages = [p for h in self.members for p in (h.page_start, h.page_end) if p is not None]
        return replace(
            self.best,
            ordinal=first.ordinal,
            text=join_passages(self.members),
            line_start=first.line_start,
            line_end=last.line_end,
            page_start=min(pages) if pages else None,
            page_end=max(pages) if pages else None,
            char_start=first.char_start,
            char_end=last.char_end,
        )


def join_passages(members: Sequence[ChunkHit]) -> str:
    """Consecutive passages as one text; the sentences two passages share at their border
    (the chunker repeats a little of each passage at the start of the next) appear once."""
    text = members[0].text
    for before, hit in pairwise(members):
        shared = before.char_end - hit.char_start  # characters of the file both passages hold
        repeated = _repeated_prefix(before.text, hit.text, shared) if shared > 0 else 0
        text += hit.text[repeated:] if repeated else "\n\n" + hit.text
    return text


def _repeated_prefix(before: str, after: str, shared: int) -> int:
    """Length of the longest start of `after` that ends `before`, near `shared` characters
    (passage texts are slices of the file, re-joined, so lengths can differ a little)."""
    for length in range(min(len(before), len(after), shared + 16), 0, -1):
        if before.endswith(after[:length]):
            return length
    return 0


def _gather_runs(
    fused: Sequence[tuple[int, float]], hits: dict[int, ChunkHit], k: int, *, joining: bool
) -> list[_Run]:
    """The first `k` results of a fused ranking: a passage stored once for several files is one
    result listing the others (`also_in`); with `joining`, a candidate next to a result's
    passage in the same file (among the first RUN_WINDOW) extends that result instead."""
    runs: list[_Run] = []
    by_embedding: dict[int, _Run] = {}
    for position, (chunk_id, score) in enumerate(fused):
        hit = hits.get(chunk_id)
        if hit is None:
            continue
        twin = by_embedding.get(hit.embedding_id)
        if twin is not None:  # the same passage in another file: one result, both paths
            twin.also_in.append(hit.path)
            continue
        run = None
        if joining and position < RUN_WINDOW:
            run = next((r for r in runs if r.takes(hit)), None)
        if run is not None:
            run.add(hit)
        elif len(runs) < k:
            run = _Run(hit, score, [hit])
            runs.append(run)
        elif not joining or position >= RUN_WINDOW:
            break  # nothing later can join or start a result
        if run is not None:
            by_embedding[hit.embedding_id] = run
    return runs


def fuse_rankings(
    rankings: Iterable[tuple[Sequence[int], float]], k: int = RRF_K
) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion: (ids best first, weight) lists → (id, score) best first."""
    fused: dict[int, float] = {}
    for ids, weight in rankings:
        for rank, item in enumerate(ids, 1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda entry: -entry[1])


# -- highlighting -------------------------------------------------------------------------------


def _stem(term: str) -> str:
    for suffix in ("ing", "es", "ed", "s"):
        if len(term) > len(suffix) + 3 and term.endswith(suffix):
            return term[: -len(suffix)]
    return term


def _term_matches(text: str, query: str) -> list[tuple[int, int, str]]:
    """(start, end, stem) of each query term or inflection (index → indexes) in `text`."""
    stems = sorted({_stem(t) for t in query_terms(query)}, key=len, reverse=True)
    if not stems:
        return []
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, stems)) + r")\w*", re.I)
    return [(m.start(), m.end(), m.group(1).lower()) for m in pattern.finditer(text)]


def _cover(matches: list[tuple[int, str]]) -> int:
    """Smallest stretch of text holding one match of every distinct term among `matches`."""
    stems = {stem for _, stem in matches}
    best = 1 << 30
    for pos, _ in matches:
        reach = 0
        for stem in stems:
            reach = max(reach, min(abs(p - pos) for p, s in matches if s == stem))
        best = min(best, reach)
    return best


def highlight_spans(text: str, query: str) -> list[tuple[int, int]]:
    """Character spans of query terms in `text`, for the CLI and TUI to emphasise."""
    return [(a, b) for a, b, _ in _term_matches(text, query)]


def snippet(text: str, query: str, width: int = 320) -> tuple[str, list[tuple[int, int]]]:
    """A window of `text` showing the most distinct query terms, with their spans inside it."""
    flat = " ".join(text.split())
    matches = _term_matches(flat, query)
    spans = [(a, b) for a, b, _ in matches]
    if len(flat) <= width:
        return flat, spans
    start = 0
    if matches:
        # Try a window starting a little before each match. Prefer more distinct terms, then
        # terms close together ("partial index" beats "index … partial"), then more matches.
        best, best_score = 0, (-1, 0, -1)
        for s, _, _ in matches:
            lo = max(0, s - width // 4)
            window = [(a, stem) for a, b, stem in matches if a >= lo and b <= lo + width]
            score = (len({stem for _, stem in window}), -_cover(window), len(window))
            if score > best_score:
                best, best_score = lo, score
        start = best
    end = min(len(flat), start + width)
    if start:  # begin at a word boundary inside the window
        space = flat.find(" ", start, start + 20)
        start = space + 1 if space >= 0 else start
    space = flat.rfind(" ", start, end)
    if end < len(flat) and space > start + width // 2:
        end = space
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(flat) else ""
    shift = len(prefix) - start
    shown = [(a + shift, b + shift) for a, b in spans if a >= start and b <= end]
    return prefix + flat[start:end] + suffix, shown
