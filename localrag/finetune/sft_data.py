"""Chat examples → token ids and labels for supervised fine-tuning.

Each example is rendered with the base model's own chat template, so training sees exactly the
prompt the model gets at inference. The loss covers only what the assistant says: its answer and
the end-of-turn token that stops generation; everything else is labelled -100.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localrag.errors import LocalragError

IGNORE = -100  # the label torch's cross entropy skips
ROLES = ("system", "user", "assistant")

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class TokenizedExample:
    """One training sequence: ids, and labels that are -100 outside the assistant's turns."""

    input_ids: list[int]
    labels: list[int]


@dataclass
class DataStats:
    """What happened to the examples on their way to training; recorded in training.json."""

    examples: int = 0  # read from the file
    used: int = 0
    truncated: int = 0  # cut at max_seq_len inside an answer (the cut answer has no end token)
    dropped_too_long: int = 0  # the prompt alone reached max_seq_len
    dropped_template: int = 0  # the template did not render the prompt as a prefix
    tokens: int = 0
    trained_tokens: int = 0
    notes: list[str] = field(default_factory=list)


def _check_messages(value: Any, where: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise LocalragError(f"{where}: `messages` must be a non-empty list")
    for message in value:
        if not (
            isinstance(message, dict)
            and message.get("role") in ROLES
            and isinstance(message.get("content"), str)
        ):
            raise LocalragError(
                f"{where}: each message needs a role ({', '.join(ROLES)}) and a text content"
            )
    if not any(m["role"] == "assistant" for m in value):
        raise LocalragError(f"{where}: no assistant message to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def read_chat_examples(path: Path) -> list[Messages]:
    """The `messages` of every line of a JSONL file, checked, with file:line in errors."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LocalragError(f"training file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalragError(f"cannot read training file {path}: {exc}") from exc
    examples = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LocalragError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or "messages" not in record:
            raise LocalragError(f"{where}: each line needs a `messages` list")
        examples.append(_check_messages(record["messages"], where))
    if not examples:
        raise LocalragError(f"training file {path} has no examples")
    return examples


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Tokens that end an assistant turn: eos and the other special tokens (<|im_end|>, …)."""
    ids = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


class TemplateMismatch(ValueError):
    """The template renders a conversation's prompt differently from its start."""


def _render(tokenizer: Any, messages: Messages, prompt: bool) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
    if not isinstance(text, str):
        raise LocalragError("the tokenizer's chat template did not render text")
    return text


def _ids(tokenizer: Any, text: str) -> list[int]:
    # add_special_tokens=False: the template already wrote BOS where the model wants one.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def tokenize_chat(tokenizer: Any, messages: Messages, eot: set[int]) -> TokenizedExample:
    """ids and labels for one conversation; every assistant turn is trained on.

    Each assistant turn is tokenized apart from the prompt before it, as at inference, where
    the prompt (ending in the generation prompt) is tokenized and the answer generated after it.
    """
    ids: list[int] = []
    labels: list[int] = []
    covered = ""  # the rendered text already turned into tokens
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:i], prompt=True)
        full = _render(tokenizer, messages[: i + 1], prompt=False)
        if not prompt.startswith(covered) or not full.startswith(prompt):
            raise TemplateMismatch(f"turn {i}")
        context = _ids(tokenizer, prompt[len(covered) :])
        ids += context
        labels += [IGNORE] * len(context)
        answer = _ids(tokenizer, full[len(prompt) :])
        # Train through the first end-of-turn token; what the template adds after it
        # (a newline before the next turn) is never generated.
        end = next((k + 1 for k, t in enumerate(answer) if t in eot), len(answer))
        ids += answer
        labels += answer[:end] + [IGNORE] * (len(answer) - end)
        covered = full
    return TokenizedExample(ids, labels)


def build_training_set(
    tokenizer: Any, examples: list[Messages], max_seq_len: int
) -> tuple[list[TokenizedExample], DataStats]:
    """Tokenize, truncate and filter every example; returns them with counts."""
    eot = end_of_turn_ids(tokenizer)
    stats = DataStats(examples=len(examples))
    kept = []
    for messages in examples:
        try:
            example = tokenize_chat(tokenizer, messages, eot)
        except TemplateMismatch:
            stats.dropped_template += 1
            continue
        first_trained = next((k for k, label in enumerate(example.labels) if label != IGNORE), None)
        if first_trained is None or first_trained >= max_seq_len:
            stats.dropped_too_long += 1
            continue
        if len(example.input_ids) > max_seq_len:
            # Cut from the end: the prompt stays whole, the answer loses its tail, and no end
            # token follows the cut, so the model never learns to stop mid-answer.
            example = TokenizedExample(
                example.input_ids[:max_seq_len], example.labels[:max_seq_len]
            )
            stats.truncated += 1
        kept.append(example)
        stats.tokens += len(example.input_ids)
        stats.trained_tokens += sum(label != IGNORE for label in example.labels)
    stats.used = len(kept)
    if stats.dropped_template:
        stats.notes.append(
            f"{stats.dropped_template} examples skipped: the chat template does not render "
            "their prompt as the start of the conversation"
        )
    if stats.dropped_too_long:
        stats.notes.append(
            f"{stats.dropped_too_long} examples skipped: the prompt alone fills "
            f"max_seq_len ({max_seq_len} tokens)"
        )
    if not kept:
        raise LocalragError(
            "no usable training examples: " + ("; ".join(stats.notes) or "the file is empty")
        )
    return kept, stats
