"""Check the model's citations while its answer streams.

The model is asked to cite sources as [1], [2]…. Small models also write [1, 2], [1-3],
[Source 2] or cite numbers that were never given. `CitationFilter` rewrites every citation to
the plain [n] form, keeps the ones that name a real source, and takes the others out of the
text (recording them), so an invented citation is never shown as if it were real.
"""

from __future__ import annotations

import re

# The inside of a bracket that is a citation: optional "source(s)" word, then numbers separated
# by commas, semicolons, "and" or range dashes.
_CITATION_BODY = re.compile(
    r"^\s*(?:sources?\s*:?\s*)?(\d{1,3}(?:\s*(?:,|;|-|–|and|&)\s*(?:sources?\s*)?\d{1,3})*)\s*$",
    re.IGNORECASE,
)
_NUMBER_OR_RANGE = re.compile(r"(\d{1,3})\s*(?:[-–]\s*(\d{1,3}))?")
# Longest bracket that is held back waiting for its "]": "[Sources 10, 11, 12, 13]" fits.
_MAX_HELD = 40
_COMPLETIONS = ("", "1", " 1", "d 1", "nd 1", "s 1", "ces 1", "rces 1", "urces 1", "ources 1")


def _next_special(text: str) -> int:
    """Index of the first "[" or "`", or -1."""
    found = [i for i in (text.find("["), text.find("`")) if i >= 0]
    return min(found) if found else -1


def citation_numbers(body: str) -> list[int] | None:
    """The numbers a bracket's inside cites, or None when it is not a citation."""
    match = _CITATION_BODY.match(body)
    if not match:
        return None
    numbers: list[int] = []
    for start, end in _NUMBER_OR_RANGE.findall(match.group(1)):
        first = int(start)
        last = int(end) if end else first
        if last < first or last - first > 20:  # "[1990-2020]" is a span of years, not sources
            return None
        numbers.extend(n for n in range(first, last + 1) if n not in numbers)
    return numbers


class CitationFilter:
    """Feed streamed text in, get checked text out; `cited` and `invalid` say what was seen."""

    def __init__(self, valid: set[int] | range) -> None:
        self.valid = set(valid)
        self.cited: list[int] = []  # real sources, in order of first citation
        self.invalid: list[int] = []  # numbers that name no source, removed from the text
        self._held = ""  # an open "[" and what follows, until it is known to be a citation
        self._space = ""  # trailing blanks, kept until we know whether a removal follows
        self._removed = False  # the last thing seen was a removed citation
        self._in_code = False

    def feed(self, text: str) -> str:
        self._held += text
        out: list[str] = []
        while self._held:
            start = _next_special(self._held)
            if start < 0:
                self._emit_text(self._held, out)
                self._held = ""
                break
            self._emit_text(self._held[:start], out)
            self._held = self._held[start:]
            if self._held[0] == "`" or self._in_code:
                # Backticks toggle code (``` toggles three times: once net); `a[0]` is code.
                self._in_code ^= self._held[0] == "`"
                self._emit(self._held[0], out)
                self._held = self._held[1:]
                continue
            end = self._held.find("]")
            if end < 0:
                if len(self._held) < _MAX_HELD and self._could_be_citation(self._held[1:]):
                    break  # wait for more text
                self._emit("[", out)
                self._held = self._held[1:]
                continue
            rewritten = self._rewrite(self._held[1:end], self._held[: end + 1])
            if rewritten:
                self._emit(rewritten, out)
            else:
                self._removed = True
            self._held = self._held[end + 1 :]
        return "".join(out)

    def flush(self) -> str:
        rest = ("" if self._removed else self._space) + self._held
        self._held = self._space = ""
        return rest

    def _emit_text(self, text: str, out: list[str]) -> None:
        """Emit text but hold its trailing blanks: a removed citation may follow them."""
        body = text.rstrip(" \t")
        if body:
            self._emit(body, out)
        self._space += text[len(body) :]

    def _emit(self, text: str, out: list[str]) -> None:
        if self._space:
            # "X [9]." → "X." but "X [9] and" → "X and".
            if not (self._removed and (text[0] in ".,;:!?)" or text[0].isspace())):
                out.append(self._space)
            self._space = ""
        self._removed = False
        out.append(text)

    def _could_be_citation(self, partial: str) -> bool:
        """Whether an unfinished bracket may still turn out to be a citation."""
        if "sources".startswith(partial.strip().lower()):
            return True
        # Complete the bracket the shortest ways a citation could go on ("1 an" → "1 and 1").
        return any(citation_numbers(partial + end) is not None for end in _COMPLETIONS)

    def _rewrite(self, body: str, original: str) -> str:
        """The bracket as plain [n] citations of real sources; "" when none is real."""
        numbers = citation_numbers(body)
        if numbers is None:
            return original
        kept = []
        for number in numbers:
            if number in self.valid:
                kept.append(number)
                if number not in self.cited:
                    self.cited.append(number)
            elif number not in self.invalid:
                self.invalid.append(number)
        return "".join(f"[{n}]" for n in kept)


def check_citations(text: str, valid: set[int] | range) -> tuple[str, list[int], list[int]]:
    """A whole answer at once: (checked text, cited numbers, invalid numbers)."""
    citations = CitationFilter(valid)
    checked = citations.feed(text) + citations.flush()
    return checked, citations.cited, citations.invalid
