"""The RAFT reply format: the answer streams, the quoted reasoning is kept aside."""

from __future__ import annotations

import pytest

from localrag.reasoning import ReasoningSplitter, final_answer, split_reasoning

RAFT_REPLY = (
    "##Reason: source [2] says ##begin_quote##Tapes are rotated every quarter.##end_quote##\n"
    "##Answer: Every quarter [2]."
)


def _stream(text: str, size: int) -> tuple[list[str], str]:
    """Feed `text` in pieces of `size` characters; (what was shown piece by piece, reasoning)."""
    splitter = ReasoningSplitter()
    shown = [splitter.feed(text[i : i + size]) for i in range(0, len(text), size)]
    shown.append(splitter.flush())
    return shown, splitter.reasoning


@pytest.mark.parametrize("size", [1, 2, 3, 5, 9, 1000])
def test_only_the_answer_is_shown_however_the_tokens_fall(size: int) -> None:
    shown, reasoning = _stream(RAFT_REPLY, size)
    assert "".join(shown) == "Every quarter [2]."
    assert reasoning == "source [2] says “Tapes are rotated every quarter.”"


def test_the_answer_still_streams() -> None:
    shown, _ = _stream(RAFT_REPLY, 1)
    answer_pieces = [piece for piece in shown if piece]
    assert len(answer_pieces) > 5  # character by character once ##Answer: has passed


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_a_plain_reply_passes_through_untouched(size: int) -> None:
    reply = "## Summary\nNew parents get twenty weeks [1]. Use #hashtags freely."
    shown, reasoning = _stream(reply, size)
    assert "".join(shown) == reply
    assert reasoning == ""


def test_a_reply_starting_like_the_marker_is_not_held_forever() -> None:
    splitter = ReasoningSplitter()
    assert splitter.feed("##Rea") == ""  # could still be ##Reason:
    assert splitter.feed("lly?") == "##Really?"


def test_reasoning_cut_off_before_the_answer_is_shown_rather_than_lost() -> None:
    cut = "##Reason: source [1] says ##begin_quote##Twenty weeks of leave"
    shown, reasoning = _stream(cut, 3)
    assert "".join(shown) == "source [1] says “Twenty weeks of leave"
    assert reasoning == ""  # it became the answer


def test_an_empty_answer_falls_back_to_the_reasoning() -> None:
    reasoning, answer = split_reasoning(
        "##Reason: source [1] says ##begin_quote##x##end_quote##\n##Answer:  "
    )
    assert answer == "source [1] says “x”"
    assert reasoning == ""


def test_leading_blank_lines_before_the_marker_are_allowed() -> None:
    reasoning, answer = split_reasoning("\n  " + RAFT_REPLY)
    assert answer == "Every quarter [2]."
    assert reasoning.startswith("source [2] says")


def test_final_answer_reads_a_whole_reply() -> None:
    assert final_answer(RAFT_REPLY) == "Every quarter [2]."
    assert final_answer("plain text ") == "plain text"
