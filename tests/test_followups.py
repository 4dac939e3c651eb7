"""Which questions in a conversation lean on the turns before them, and which stand alone."""

from __future__ import annotations

import pytest

from localrag.followups import MIN_TOPIC_WORDS, refers_back


@pytest.mark.parametrize(
    "question",
    [
        "How long does it stay connected?",
        "Who signs them?",
        "Is that also true for contractors?",
        "What did the previous answer cite?",
        "Can I do this from home?",
        "Does the other printer need toner?",
        "Which one is cheaper?",
        "Is there a deadline for those receipts?",
        "Show me THEIR addresses",  # case does not hide a pronoun
    ],
)
def test_a_word_that_points_back_needs_the_conversation(question: str) -> None:
    assert refers_back(question)


@pytest.mark.parametrize(
    "question",
    [
        "and how long does the VPN stay connected?",
        "And for contractors working abroad?",
        "But the parental leave policy says otherwise?",
        "Or the printer fault codes?",
        "So when are backup tapes rotated?",
        "Then what happens to unused holiday days?",
        "What about the travel reimbursement deadline?",
        "how about parking permits for visitors",
        "What if the fuser unit overheats during printing",
        "Same for the Berlin office?",
        "Why not the WireGuard client?",
    ],
)
def test_a_continuation_needs_the_conversation(question: str) -> None:
    assert refers_back(question)


@pytest.mark.parametrize(
    "question",
    ["Why?", "How much?", "Explain", "What does Berlin mean?", "Tell me more please", "Where?"],
)
def test_fewer_topic_words_than_the_minimum_cannot_stand_alone(question: str) -> None:
    assert MIN_TOPIC_WORDS == 2
    assert refers_back(question)


@pytest.mark.parametrize(
    "question",
    [
        "How do I read a csv file?",
        "How long can new parents stay at home?",
        "When are backup tapes rotated?",
        "What does printer fault PX-4472 mean?",
        "Where do employees park cars?",
        "Submit taxi receipts within how many days",
        "Berlin office",  # two topic words are enough
    ],
)
def test_a_self_contained_question_stands_alone(question: str) -> None:
    assert not refers_back(question)


@pytest.mark.parametrize("question", ["", "   ", "???", "— … !", "\n\t"])
def test_a_question_without_words_refers_back(question: str) -> None:
    assert refers_back(question)


@pytest.mark.parametrize(
    "question",
    [
        "Where is the travel itinerary stored?",  # "itinerary" holds "it"
        "Andrew's salary review date",  # starts with the letters "and", not the word
        "Sortable thesis chapters",  # "so", "the", "these" inside words
        "Butter and flour ratio for shortcrust pastry",  # "but" inside, "and" mid-sentence
        "Ordering office supplies online",  # "or" at the start of a word
        "Heritage buildings insurance renewal",  # "he", "her" inside a word
        "Thermostat settings in winter",  # "the", "them" inside a word
    ],
)
def test_pointing_words_and_openings_count_only_as_whole_words(question: str) -> None:
    assert not refers_back(question)


def test_a_continuation_counts_only_at_the_start() -> None:
    assert not refers_back("Salt and pepper quantities for the soup recipe")
    assert refers_back("and pepper quantities for the soup recipe")


def test_topic_words_are_found_in_any_script() -> None:
    assert not refers_back("Wie lange dauert die Elternzeit für Väter?")
    assert not refers_back("Väter Elternzeit?")
    assert refers_back("Elternzeit?")


def test_contractions_count_as_the_words_they_stand_for() -> None:
    for short, long in [
        ("What's Kubernetes?", "What is Kubernetes?"),
        ("What's the VPN's port?", "What is the VPN port?"),
        ("How'd I rotate keys?", "How did I rotate keys?"),
    ]:
        assert refers_back(short) == refers_back(long), (short, long)
