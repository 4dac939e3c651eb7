"""Structure-aware chunks measured in the embedder's own tokens.

Guarantees, for every chunk `c` of `chunk_document(doc, counter, max_tokens)`:

* `counter.count(c.embed_text) <= max_tokens` (checked with one real count per chunk);
* `c.text` is non-empty; it is made of verbatim slices of `doc.text`, in order, joined by
  "\\n\\n" where the chunk spans several blocks; `doc.text[c.char_start:c.char_end]` contains
  each of those slices (with the original whitespace between them);
* a chunk never spans a heading change; it spans a PDF page break only when one side is tiny;
* line numbers are exact: the chunk's first and last non-blank characters are on
  `line_start` and `line_end` (the parsers keep one "\\n" per source line inside a block).

A heading path too long for the budget is shortened (outer headings dropped first), so
`c.heading_path` can be a suffix of its blocks' path.

Memory stays bounded whatever the document (a 40 MB line once took 5.8 GB): blocks and their
pieces are streamed, never listed whole; the tokenizer is never given more than
COUNT_BATCH_CHARS characters at once; and a span longer than EXACT_COUNT_CHARS, which can never
fit in one chunk, is not counted at all but estimated from its start.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain, islice, pairwise
from typing import Protocol, TypeVar

from localrag.documents import Block, Chunk, ParsedDocument


class TokenCounter(Protocol):
    """Counts tokens the way the embedder will see them."""

    def count(self, text: str) -> int:
        """Tokens in text, WITHOUT special tokens ([CLS], [SEP], ...)."""
        ...


SEPARATOR = "\n\n"
# A chunk never holds more characters than this many per token of budget, whatever the
# tokenizer says: WordPiece counts a 10k-character "word" as one [UNK] token.
MAX_CHARS_PER_TOKEN = 16
MIN_MAX_TOKENS = 8
# HF tokenizers keep ~320 bytes per token while encoding (ids, offsets, masks, words), so
# counting is done in batches of at most this many characters (<= ~80 MB even at 1 char/token).
COUNT_BATCH_CHARS = 1 << 18
# ... and of at most this many texts: each Encoding also has a fixed cost.
COUNT_BATCH_TEXTS = 2048
# Spans longer than this are too long for any chunk: their token count only steers where the
# first cut is tried, so an estimate from their first EXACT_COUNT_CHARS characters does.
EXACT_COUNT_CHARS = 1 << 18

_T = TypeVar("_T")

_SPLITTERS: dict[str, re.Pattern[str]] = {
    "para": re.compile(r"\n[ \t\f\v]*\n\s*"),
    "line": re.compile(r"\n"),
    # After sentence punctuation (and closing quotes/brackets), or after CJK full stops.
    "sentence": re.compile(r"(?:(?<=[.!?…:;])|(?<=[.!?…][\"'”’)\]]))\s+|(?<=[。！？；])"),
    "space": re.compile(r"\s+"),
}
_PROSE_LEVELS = ("para", "sentence", "line", "space")
_LINE_LEVELS = ("para", "line", "sentence", "space")
_SOFT_CUT = re.compile(r"[\s,;:.!?)\]}>/|\-]")


@dataclass(frozen=True, slots=True)
class _Seg:
    """A span of doc.text inside one block, with its token count."""

    start: int
    end: int
    tokens: int
    block: int


class _Chunker:
    def __init__(
        self, doc: ParsedDocument, counter: TokenCounter, max_tokens: int, overlap: int
    ) -> None:
        self.doc = doc
        self.text = doc.text
        self.blocks: list[Block] = doc.blocks
        self.counter = counter
        self.max_tokens = max_tokens
        self.overlap = max(0, min(overlap, max_tokens // 4))
        self.max_chars = max_tokens * MAX_CHARS_PER_TOKEN
        # Never below max_chars: a span that might fit in a chunk is always counted exactly.
        self.exact_chars = max(EXACT_COUNT_CHARS, self.max_chars)
        self._headings: dict[tuple[str, ...], tuple[tuple[str, ...], int]] = {}
        self._newlines: array[int] | None = None
        self.sep_tokens = max(0, self.count(f"a{SEPARATOR}b") - self.count("a") - self.count("b"))
        self.chunks: list[Chunk] = []

    # -- counting ------------------------------------------------------------------------

    def count(self, text: str) -> int:
        return self.counter.count(text)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Counts for many texts; uses the counter's batch method when it has one."""
        batch = getattr(self.counter, "count_many", None)
        if batch is not None and len(texts) > 1:
            return list(batch(list(texts)))
        return [self.counter.count(t) for t in texts]

    def _estimate(self, start: int, end: int) -> int:
        """Tokens of a span too long to count, scaled up from a count of its start."""
        sample = self.count(self.text[start : start + self.exact_chars])
        return max(1, sample * (end - start) // self.exact_chars)

    def _counted(self, spans: Iterable[tuple[int, int, _T]]) -> Iterator[tuple[int, int, _T, int]]:
        """(start, end, payload, tokens) for each span, counted in bounded batches."""
        batch: list[tuple[int, int, _T]] = []
        chars = 0
        for span in spans:
            batch.append(span)
            chars += min(span[1] - span[0], self.exact_chars)
            if chars >= COUNT_BATCH_CHARS or len(batch) >= COUNT_BATCH_TEXTS:
                yield from self._count_batch(batch)
                batch, chars = [], 0
        if batch:
            yield from self._count_batch(batch)

    def _count_batch(self, spans: list[tuple[int, int, _T]]) -> Iterator[tuple[int, int, _T, int]]:
        exact = [self.text[s:e] for s, e, _ in spans if e - s <= self.exact_chars]
        counts = iter(self.count_many(exact))
        for s, e, payload in spans:
            tokens = next(counts) if e - s <= self.exact_chars else self._estimate(s, e)
            yield s, e, payload, tokens

    # -- headings ------------------------------------------------------------------------

    def heading(self, path: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
        """The heading path to use (shortened to half the budget at most) and its tokens."""
        cached = self._headings.get(path)
        if cached is not None:
            return cached
        limit = self.max_tokens // 2
        used = path
        tokens = self._heading_tokens(used, limit)
        while tokens > limit and len(used) > 1:
            used = used[1:]  # Keep the most specific headings.
            tokens = self._heading_tokens(used, limit)
        if tokens > limit:
            only = used[0]
            length, tokens = self._fit(only, 0, min(len(only), limit * MAX_CHARS_PER_TOKEN), limit)
            used = (only[:length].rstrip(),) if only[:length].strip() else ()
            tokens = self.count(used[0]) if used else 0
        result = (used, tokens)
        self._headings[path] = result
        return result

    def _heading_tokens(self, path: tuple[str, ...], limit: int) -> int:
        """Tokens of the joined path; a path too long to count is simply over the limit."""
        if not path:
            return 0
        joined_chars = sum(len(h) for h in path) + 3 * (len(path) - 1)
        if joined_chars > self.exact_chars:
            return limit + 1
        return self.count(" > ".join(path))

    def budget(self, heading_tokens: int) -> int:
        return max(1, self.max_tokens - heading_tokens - (self.sep_tokens if heading_tokens else 0))

    # -- splitting -----------------------------------------------------------------------

    def _trim(self, start: int, end: int) -> tuple[int, int]:
        """Drop trailing whitespace and leading blank lines (indentation is kept)."""
        text = self.text
        while end > start and text[end - 1].isspace():
            end -= 1
        first = start
        while first < end and text[first].isspace():
            first += 1
        line_start = text.rfind("\n", start, first)
        return (line_start + 1 if line_start >= 0 else start), end

    def _pieces(self, start: int, end: int, level: str) -> Iterator[tuple[int, int]]:
        """Non-empty trimmed spans between the level's separators, lazily (a line can be huge)."""
        prev = start
        for m in _SPLITTERS[level].finditer(self.text, start, end):
            if m.start() > prev:
                s, e = self._trim(prev, m.start())
                if e > s:
                    yield s, e
            prev = max(prev, m.end())
        if prev < end:
            s, e = self._trim(prev, end)
            if e > s:
                yield s, e

    def split(
        self, start: int, end: int, tokens: int, kind: str, budget: int, block: int
    ) -> Iterator[_Seg]:
        """Segments of at most `budget` tokens covering text[start:end], in order."""
        levels = _LINE_LEVELS if kind in ("code", "table", "list") else _PROSE_LEVELS
        return self._split(start, end, tokens, levels, budget, block)

    def _split(
        self,
        start: int,
        end: int,
        tokens: int,
        levels: tuple[str, ...],
        budget: int,
        block: int,
    ) -> Iterator[_Seg]:
        if tokens <= budget and end - start <= self.max_chars:
            yield _Seg(start, end, tokens, block)
            return
        for i, level in enumerate(levels):
            pieces = self._pieces(start, end, level)
            first = list(islice(pieces, 2))
            if len(first) < 2:
                continue
            spans: Iterator[tuple[int, int]] = chain(first, pieces)
            if level == "space":
                spans = self._windows(spans, start, end, tokens, budget)
            for s, e, _, t in self._counted((s, e, None) for s, e in spans):
                yield from self._split(s, e, t, levels[i + 1 :], budget, block)
            return
        yield from self._split_tokens(start, end, tokens, budget, block)

    def _windows(
        self, words: Iterator[tuple[int, int]], start: int, end: int, tokens: int, budget: int
    ) -> Iterator[tuple[int, int]]:
        """Whitespace-separated words grouped into runs of about half a budget each."""
        per_token = (end - start) / max(tokens, 1)
        target = max(1, min(int(budget * per_token / 2), self.max_chars // 2))
        run_start, run_end = next(words)
        for s, e in words:
            if e - run_start > target:
                yield run_start, run_end
                run_start = s
            run_end = e
        yield run_start, run_end

    def _fit(
        self, text: str, pos: int, limit: int, budget: int, guess: int | None = None
    ) -> tuple[int, int]:
        """A long prefix length L <= limit with count(text[pos:pos+L]) <= budget, and its count."""
        lo, lo_tokens = 0, 0
        hi = limit + 1
        length = max(1, min(limit, guess or budget * 4))
        for _ in range(48):
            t = self.count(text[pos : pos + length])
            if t <= budget:
                lo, lo_tokens = length, t
                if length == limit or t * 10 >= budget * 9:
                    break  # Within 10% of the budget: good enough.
                guess = int(length * budget / max(t, 1))
            else:
                hi = length
                guess = int(length * budget / t)
            if hi - lo <= 1:
                break
            nxt = min(max(guess, lo + 1), hi - 1)
            if nxt == length:
                nxt = (lo + hi) // 2
            length = nxt
        if lo == 0:  # Not even one character fits: take one anyway; verification copes.
            return 1, self.count(text[pos : pos + 1])
        return lo, lo_tokens

    def _split_tokens(
        self, start: int, end: int, tokens: int, budget: int, block: int
    ) -> Iterator[_Seg]:
        """Last resort: cut by token count, preferring a cut after a space or punctuation."""
        text = self.text
        pos = start
        # Characters per token seen so far: the first probe of each piece lands close.
        per_token = (end - start) / max(tokens, 1)
        while pos < end:
            while pos < end and text[pos].isspace():
                pos += 1
            if pos >= end:
                break
            limit = min(end - pos, self.max_chars)
            length, t = self._fit(text, pos, limit, budget, int(budget * per_token * 0.95))
            if t:
                per_token = length / t
            if pos + length < end and length > 8:
                # Step back to a natural break in the last fifth of the piece, if any.
                floor = pos + length - length // 5
                for cut in range(pos + length - 1, floor, -1):
                    if _SOFT_CUT.match(text, cut):
                        t2 = self.count(text[pos : cut + 1])
                        if t2 <= budget:
                            length, t = cut + 1 - pos, t2
                        break
            s, e = self._trim(pos, pos + length)
            if e > s:
                if (s, e) != (pos, pos + length):
                    t = self.count(text[s:e])
                yield _Seg(s, e, t, block)
            pos += length

    # -- overlap -------------------------------------------------------------------------

    def _overlap(self, segs: list[_Seg]) -> _Seg | None:
        """The tail of a chunk (whole sentences, at most `overlap` tokens) to repeat next."""
        if not self.overlap or not segs:
            return None
        block = segs[-1].block
        total = 0
        first: _Seg | None = None
        for seg in reversed(segs):
            if seg.block != block or total + seg.tokens > self.overlap:
                break
            total += seg.tokens
            first = seg
        if first is not None and first is not segs[0]:
            return _Seg(first.start, segs[-1].end, total, block)
        if first is segs[0]:
            return None  # The whole chunk would repeat: no overlap.
        last = segs[-1]
        # The last segment alone is too big: take its trailing sentences.
        cuts = [m.end() for m in _SPLITTERS["sentence"].finditer(self.text, last.start, last.end)]
        best: _Seg | None = None
        for cut in reversed(cuts):
            s, e = self._trim(cut, last.end)
            if e <= s:
                continue
            t = self.count(self.text[s:e])
            if t > self.overlap:
                break
            best = _Seg(s, e, t, block)
        return best

    # -- lines ---------------------------------------------------------------------------

    def _line(self, block: Block, pos: int) -> int | None:
        if block.line_start is None:
            return None
        if self._newlines is None:
            # 4 bytes a line (8 past 2 GB): a file of millions of short lines stays small.
            typecode = "i" if len(self.text) < 2**31 - 1 else "q"
            self._newlines = array(typecode, (m.start() for m in re.finditer("\n", self.text)))
        nl = self._newlines
        line = (
            block.line_start
            + bisect.bisect_left(nl, pos)
            - bisect.bisect_left(nl, block.char_start)
        )
        if block.line_end is not None:
            line = min(line, block.line_end)
        return max(line, block.line_start)

    # -- packing -------------------------------------------------------------------------

    def _make(self, segs: list[_Seg], path: tuple[str, ...]) -> Chunk:
        parts: list[str] = []
        group_start = segs[0]
        for prev, seg in pairwise(segs):
            if seg.block != prev.block:
                parts.append(self.text[group_start.start : prev.end])
                group_start = seg
        parts.append(self.text[group_start.start : segs[-1].end])
        first_block = self.blocks[segs[0].block]
        last_block = self.blocks[segs[-1].block]
        return Chunk(
            ordinal=0,
            text=SEPARATOR.join(parts),
            heading_path=path,
            char_start=segs[0].start,
            char_end=segs[-1].end,
            token_count=0,
            line_start=self._line(first_block, segs[0].start),
            line_end=self._line(last_block, segs[-1].end - 1),
            page_start=first_block.page,
            page_end=last_block.page,
        )

    def _add(self, chunk: Chunk, tokens: int) -> None:
        # Numbered as they are added: renumbering at the end doubled the chunk objects.
        self.chunks.append(replace(chunk, ordinal=len(self.chunks), token_count=tokens))

    def emit(self, segs: list[_Seg], path: tuple[str, ...], budget: int) -> None:
        """Add a chunk after one real count; re-split it if the estimate was low."""
        chunk = self._make(segs, path)
        n = self.count(chunk.embed_text)
        if n <= self.max_tokens:
            self._add(chunk, n)
            return
        excess = n - self.max_tokens
        if len(segs) > 1:
            half = sum(s.tokens for s in segs) / 2
            acc, mid = 0, 1
            for i, seg in enumerate(segs[:-1]):
                acc += seg.tokens
                mid = i + 1
                if acc >= half:
                    break
            self.emit(segs[:mid], path, budget)
            self.emit(segs[mid:], path, budget)
            return
        seg = segs[0]
        own = self.count(self.text[seg.start : seg.end])
        smaller = min(own, budget) - excess - 1
        if smaller < 1 or own <= 1:
            if path:  # Nothing left to cut: give up the heading rather than the limit.
                self.emit(segs, (), self.budget(0))
            else:
                self._add(chunk, n)
            return
        kind = self.blocks[seg.block].kind
        for piece in self.split(seg.start, seg.end, own, kind, smaller, seg.block):
            self.emit([piece], path, smaller)

    def _block_spans(self) -> Iterator[tuple[int, int, int]]:
        """(start, end, block index) of every non-blank block, trimmed."""
        for i, block in enumerate(self.blocks):
            s, e = self._trim(block.char_start, block.char_end)
            if e > s:
                yield s, e, i

    def run(self) -> list[Chunk]:
        blocks = self.blocks
        cur: list[_Seg] = []
        cur_tokens = 0
        cur_path: tuple[str, ...] = ()
        cur_budget = 0
        # Each block counted once, in bounded batches, as the packing reaches it.
        for s, e, i, tokens in self._counted(self._block_spans()):
            block = blocks[i]
            path, htokens = self.heading(block.heading_path)
            budget = self.budget(htokens)
            segs = self.split(s, e, tokens, block.kind, budget, i)
            for seg in segs:
                if cur:
                    same_block = seg.block == cur[-1].block
                    join = 0 if same_block else self.sep_tokens
                    fits = (
                        cur_tokens + join + seg.tokens <= cur_budget
                        and seg.end - cur[0].start <= self.max_chars
                    )
                    if (
                        path != cur_path
                        or not fits
                        or not self._page_ok(cur, cur_tokens, seg, budget)
                    ):
                        self.emit(cur, cur_path, cur_budget)
                        carry = self._overlap(cur) if same_block and path == cur_path else None
                        if carry is not None and carry.start <= self.chunks[-1].char_start:
                            carry = None  # The chunk was re-split: its tail is a chunk already.
                        if (
                            carry is not None
                            and carry.tokens + seg.tokens <= budget
                            and seg.end - carry.start <= self.max_chars
                        ):
                            cur, cur_tokens = [carry], carry.tokens
                        else:
                            cur, cur_tokens = [], 0
                    else:
                        cur_tokens += join
                if not cur:
                    cur_path, cur_budget = path, budget
                cur.append(seg)
                cur_tokens += seg.tokens
        if cur:
            self.emit(cur, cur_path, cur_budget)
        return self.chunks

    def _page_ok(self, cur: list[_Seg], cur_tokens: int, seg: _Seg, budget: int) -> bool:
        """Pages are merged only when one side is tiny (a runt line at a page's edge)."""
        before = self.blocks[cur[-1].block].page
        after = self.blocks[seg.block].page
        if before == after:
            return True
        tiny = budget // 4
        return cur_tokens <= tiny or seg.tokens <= tiny


def chunk_document(
    doc: ParsedDocument, counter: TokenCounter, max_tokens: int, overlap_tokens: int = 24
) -> list[Chunk]:
    """Cut a parsed document into chunks whose embed_text fits in max_tokens tokens."""
    if max_tokens < MIN_MAX_TOKENS:
        raise ValueError(f"max_tokens must be at least {MIN_MAX_TOKENS}, got {max_tokens}")
    return _Chunker(doc, counter, max_tokens, overlap_tokens).run()
