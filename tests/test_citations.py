"""Citation checking: real sources kept as [n], invented ones removed and reported."""

from __future__ import annotations

import pytest

from localrag.citations import CitationFilter, check_citations, citation_numbers


@pytest.mark.parametrize(
    ("body", "numbers"),
    [
        ("1", [1]),
        ("1, 2", [1, 2]),
        ("2; 5", [2, 5]),
        ("1-3", [1, 2, 3]),
        ("1 and 4", [1, 4]),
        ("Source 2", [2]),
        ("sources 1, 3", [1, 3]),
        ("source: 4", [4]),
        ("3, 3", [3]),
    ],
)
def test_citation_forms_are_recognised(body: str, numbers: list[int]) -> None:
    assert citation_numbers(body) == numbers


@pytest.mark.parametrize("body", ["a", "see above", "1990-2020", "x1", "", "1.5", "TODO"])
def test_brackets_that_are_not_citations(body: str) -> None:
    assert citation_numbers(body) is None


def test_invalid_citations_are_removed_and_reported() -> None:
    text, cited, invalid = check_citations("Backups run nightly [1]. Tapes rot [7].", range(1, 4))
    assert text == "Backups run nightly [1]. Tapes rot."
    assert cited == [1]
    assert invalid == [7]


def test_mixed_groups_keep_only_real_numbers_in_plain_form() -> None:
    text, cited, invalid = check_citations("Both say so [Source 2, 9] and [1-2].", range(1, 3))
    assert text == "Both say so [2] and [1][2]."
    assert cited == [2, 1]
    assert invalid == [9]


def test_code_and_ordinary_brackets_pass_through() -> None:
    text, cited, invalid = check_citations(
        "Use `rows[0]` and ```\nx[5] = 1\n``` or [see notes] in [1990-2020] [3]", range(1, 4)
    )
    assert text == "Use `rows[0]` and ```\nx[5] = 1\n``` or [see notes] in [1990-2020] [3]"
    assert (cited, invalid) == ([3], [])


def test_streaming_in_tiny_pieces_gives_the_same_result() -> None:
    answer = "The lease ends in May [Source 1], renewal needs notice [2, 8]. Costs [9]."
    whole = check_citations(answer, range(1, 3))
    for size in (1, 2, 3, 7):
        citations = CitationFilter(range(1, 3))
        pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
        streamed = "".join(citations.feed(p) for p in pieces) + citations.flush()
        assert (streamed, citations.cited, citations.invalid) == whole


def test_an_unfinished_bracket_is_released_at_the_end() -> None:
    citations = CitationFilter(range(1, 3))
    shown = citations.feed("cut off [1")
    assert "[" not in shown  # held back: it may still become a citation
    assert shown + citations.flush() == "cut off [1"


def test_a_long_bracket_is_not_held_back_forever() -> None:
    citations = CitationFilter(range(1, 3))
    out = citations.feed("[" + "1, " * 30)
    assert out.startswith("[1, 1,")
