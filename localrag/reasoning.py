"""The RAFT answer format: quoted reasoning first, then the answer the user reads.

A model fine-tuned on `localrag finetune dataset` answers as

    ##Reason: source [2] says ##begin_quote##…##end_quote##
    ##Answer: Twenty weeks [2].

The reasoning is how the model grounds itself; the user is shown the part after `##Answer:`
(the quote is in the sources pane anyway). `ReasoningSplitter` does that split on a token
stream, so the answer still streams; text from any other model passes through untouched.
"""

from __future__ import annotations

REASON_MARK = "##Reason:"
ANSWER_MARK = "##Answer:"
BEGIN_QUOTE = "##begin_quote##"
END_QUOTE = "##end_quote##"


def final_answer(text: str) -> str:
    """The part after the last ##Answer: (the whole text when the marker is missing)."""
    _, mark, rest = text.rpartition(ANSWER_MARK)
    return rest.strip() if mark else text.strip()


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, answer) of a whole reply; the reasoning is "" for a plain reply."""
    splitter = ReasoningSplitter()
    answer = splitter.feed(text) + splitter.flush()
    return splitter.reasoning, answer


def strip_markers(text: str) -> str:
    """Reasoning made readable: the markers out, quotes in plain quotation marks."""
    text = text.replace(REASON_MARK, "").replace(BEGIN_QUOTE, "“").replace(END_QUOTE, "”")
    return text.strip()


class ReasoningSplitter:
    """Streams the answer part of a reply and keeps its reasoning aside.

    feed() returns the text to show now; flush() the rest at the end. A reply that does not
    open with ##Reason: is shown as it comes. A reply whose reasoning never reaches ##Answer:
    (cut off by max_tokens) is shown at the end with its markers removed, so the user gets
    the quote rather than nothing.
    """

    def __init__(self) -> None:
        self._state = "start"  # start → reasoning → answer → answer_shown, or start → plain
        self._pending = ""  # text held back while a marker may be forming
        self._reasoning: list[str] = []

    @property
    def reasoning(self) -> str:
        return strip_markers("".join(self._reasoning))

    def feed(self, piece: str) -> str:
        if self._state in ("plain", "answer_shown"):
            return piece
        self._pending += piece
        if self._state == "start":
            head = self._pending.lstrip()
            if not head or (len(head) < len(REASON_MARK) and REASON_MARK.startswith(head)):
                return ""  # could still become the reasoning marker
            if not head.startswith(REASON_MARK):
                self._state = "plain"
                return self._take_pending()
            self._state = "reasoning"
        if self._state == "reasoning":
            before, mark, after = self._pending.partition(ANSWER_MARK)
            if not mark:
                keep = _partial_suffix(self._pending, ANSWER_MARK)
                self._reasoning.append(self._pending[: len(self._pending) - keep])
                self._pending = self._pending[len(self._pending) - keep :]
                return ""
            self._reasoning.append(before)
            self._pending = after
            self._state = "answer"
        # "answer": drop the whitespace after the marker, then pass everything through.
        self._pending = self._pending.lstrip()
        if not self._pending:
            return ""
        self._state = "answer_shown"
        return self._take_pending()

    def flush(self) -> str:
        if self._state in ("reasoning", "answer"):
            # Cut off before the answer (or an empty one): the reasoning is all there is.
            if self._state == "reasoning":
                self._reasoning.append(self._pending)
            self._pending = ""
            shown = self.reasoning
            self._reasoning.clear()
            self._state = "plain"
            return shown
        if self._state == "start":
            return self._take_pending().strip()
        return self._take_pending()

    def _take_pending(self) -> str:
        text, self._pending = self._pending, ""
        return text


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of `text` that is a proper start of `marker`."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
