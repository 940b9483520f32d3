"""Row formats of the post-training methods, and the row kind each method trains on.

- `preference` (dpo; kto splits each pair in two): a prompt and a chosen and a rejected
  reply, each as text or as a message list. UltraFeedback-style rows, where chosen and
  rejected are whole conversations, take the prompt as their shared leading messages.
- `unpaired` (kto): a prompt, a completion and a desirable/undesirable `label`.
- `prompt` (grpo): a prompt, and optionally the reference `answer` the rewards check.
  GRPO also takes the conversational SFT formats (qa, alpaca, messages, sharegpt): the
  turns before the final assistant reply are the prompt, that reply is the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from hydratune.data.errors import RowError
from hydratune.data.formats import (
    ROLES,
    Example,
    FormatOptions,
    field_value,
    text_of,
    with_system,
)

Messages = tuple[Mapping[str, str], ...]


@dataclass(frozen=True)
class PreferencePair:
    prompt: Messages
    chosen: Messages
    rejected: Messages


@dataclass(frozen=True)
class UnpairedExample:
    prompt: Messages
    completion: Messages
    desirable: bool


@dataclass(frozen=True)
class PromptExample:
    prompt: Messages
    answer: str = ""


def _as_messages(value: Any, name: str, default_role: str) -> list[dict[str, str]]:
    """Text (one message of `default_role`) or a list of {role, content} messages."""
    if isinstance(value, str):
        if not value.strip():
            raise RowError("empty text", f"field '{name}' is empty")
        return [{"role": default_role, "content": value}]
    if not isinstance(value, list) or not value:
        raise RowError("wrong type", f"field '{name}' should be text or a non-empty list of messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise RowError("bad message", f"{name}[{i}] needs a 'role' and a text 'content'")
        if m["role"] not in ROLES:
            raise RowError("wrong role", f"{name}[{i}] has role {m['role']!r}", f"use one of {', '.join(ROLES)}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _shared_prefix(a: Sequence[Mapping[str, str]], b: Sequence[Mapping[str, str]]) -> int:
    n = 0
    while n < min(len(a), len(b)) and dict(a[n]) == dict(b[n]):
        n += 1
    return n


def _reply(messages: list[dict[str, str]], name: str) -> Messages:
    if not messages or messages[0]["role"] != "assistant":
        raise RowError("no assistant reply", f"'{name}' should start with the assistant's reply")
    if not any(m["content"].strip() for m in messages if m["role"] == "assistant"):
        raise RowError("empty reply", f"the assistant reply in '{name}' is empty")
    return tuple(messages)


def preference(row: Mapping[str, Any], options: FormatOptions) -> PreferencePair:
    chosen = _as_messages(field_value(row, options, "chosen"), options.field("chosen"), "assistant")
    rejected = _as_messages(field_value(row, options, "rejected"), options.field("rejected"), "assistant")
    shared = _shared_prefix(chosen, rejected)
    if shared and chosen[0]["role"] != "assistant":  # whole conversations: the prompt is what they share
        while shared and chosen[shared - 1]["role"] == "assistant":
            shared -= 1  # a shared earlier reply stays in the prompt only up to the last user turn
        prompt, chosen, rejected = chosen[:shared], chosen[shared:], rejected[shared:]
    else:
        prompt = _as_messages(field_value(row, options, "prompt"), options.field("prompt"), "user")
    if chosen == rejected:
        raise RowError(
            "identical replies",
            "chosen and rejected are the same",
            "remove the row (it carries no preference), or set dataset.bad_rows=drop",
        )
    return PreferencePair(
        with_system(prompt, options),
        _reply(chosen, options.field("chosen")),
        _reply(rejected, options.field("rejected")),
    )


_TRUE = {True, 1, "true", "True", "desirable", "yes"}
_FALSE = {False, 0, "false", "False", "undesirable", "no"}


def unpaired(row: Mapping[str, Any], options: FormatOptions) -> UnpairedExample:
    prompt = _as_messages(field_value(row, options, "prompt"), options.field("prompt"), "user")
    completion = _as_messages(field_value(row, options, "completion"), options.field("completion"), "assistant")
    label = field_value(row, options, "label")
    if label not in _TRUE and label not in _FALSE:
        raise RowError(
            "bad label", f"field '{options.field('label')}' is {label!r}", "use true (desirable) or false (undesirable)"
        )
    return UnpairedExample(
        with_system(prompt, options), _reply(completion, options.field("completion")), label in _TRUE
    )


def prompt(row: Mapping[str, Any], options: FormatOptions) -> PromptExample:
    messages = _as_messages(field_value(row, options, "prompt"), options.field("prompt"), "user")
    answer = field_value(row, options, "answer", optional=True)
    return PromptExample(
        with_system(messages, options), text_of(answer, options.field("answer")) if answer is not None else ""
    )


def prompt_from_conversation(example: Example) -> PromptExample:
    """A conversational SFT row as a GRPO prompt: the turns before its final assistant reply,
    with that reply as the reference answer."""
    if example.messages is None:
        raise RowError(
            "not a conversation",
            "GRPO needs prompts; this format gives plain text or token ids",
            "use a conversational format (qa, alpaca, messages, sharegpt) or format=prompt",
        )
    messages = list(example.messages)
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or last == 0:
        raise RowError("no prompt", "the conversation has no user turn before its assistant reply")
    return PromptExample(tuple(messages[:last]), messages[last]["content"])


def unpaired_from_pair(pair: PreferencePair) -> list[UnpairedExample]:
    """KTO on preference data: the chosen reply is desirable, the rejected one undesirable."""
    return [UnpairedExample(pair.prompt, pair.chosen, True), UnpairedExample(pair.prompt, pair.rejected, False)]


POST_TRAINING_ROWS = (PreferencePair, UnpairedExample, PromptExample)
POST_TRAINING_FORMATS = {"preference": preference, "unpaired": unpaired, "prompt": prompt}

# The kind of row each method trains on, and the formats that give it.
ROW_KINDS = {"sft": "sequence", "dpo": "pair", "kto": "unpaired", "grpo": "prompt"}
FORMATS_FOR_KIND = {
    "sequence": ("qa", "alpaca", "messages", "sharegpt", "completion", "pretokenized"),
    "pair": ("preference",),
    "unpaired": ("unpaired", "preference"),
    "prompt": ("prompt", "qa", "alpaca", "messages", "sharegpt"),
}
