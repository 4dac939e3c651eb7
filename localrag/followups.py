"""Whether a question in a conversation leans on the turns before it.

"And how long does it stay connected?" cannot be searched alone: "it" is the VPN of the
previous question. "How do I read a csv file?" can, and must be: searched together with an
earlier question about time zones it finds time zones. A question refers back when it uses a
word that points at something said before (a pronoun, "the same", "the other one"), starts
as a continuation ("and…", "what about…"), or says too little to stand alone.
"""

from __future__ import annotations

import re

# Words that point back at something named earlier in the conversation.
_POINTING = frozenset(
    (
        "it its itself they them their theirs themselves he him his she her hers this that "
        "these those there such same former latter above previous earlier aforementioned "
        "one ones else another other others again also too instead either neither both"
    ).split()
)
# Openings that continue the previous question rather than ask a new one.
_CONTINUATIONS = (
    "and",
    "but",
    "or",
    "so",
    "then",
    "also",
    "what about",
    "how about",
    "what if",
    "and if",
    "why not",
    "same for",
)
# Question words and fillers: they carry no topic of their own.
_FILLER = frozenset(
    (
        "a an the is are was were be been do does did can could should would will shall may "
        "might must how what when where which who whom whose why i me my we our you your "
        "of to in on at for from with by about as into than more most much many any some "
        "please tell show explain mean means "
        # what is left of a contraction once split at its apostrophe (what's, they're, I'll)
        "s re ll ve d t m"
    ).split()
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# A question with fewer topic words than this needs the conversation to mean anything.
MIN_TOPIC_WORDS = 2


def refers_back(question: str) -> bool:
    """True when `question` depends on the conversation before it (see the module doc)."""
    words = [w.lower() for w in _WORD.findall(question)]
    if not words:
        return True
    opening = " ".join(words[:2])
    if any(opening == c or opening.startswith(c + " ") for c in _CONTINUATIONS):
        return True
    if any(w in _POINTING for w in words):
        return True
    topic = [w for w in words if w not in _FILLER]
    return len(topic) < MIN_TOPIC_WORDS
