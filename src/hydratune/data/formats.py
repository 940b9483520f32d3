"""Row formats: each a small named converter from a raw row to an `Example`.

Add your own without editing the package: write `def my_rows(row, options) -> Example`
(or returning a list of {role, content} messages) in an importable module and set
`dataset.format=my_module:my_rows`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hydratune.data.errors import RowError

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "tool": "tool",
}
CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*>>")


@dataclass(frozen=True)
class FormatOptions:
    fields: Mapping[str, str] = field(default_factory=dict)
    strip_calculator_annotations: bool = False
    system_prompt: str | None = None

    def field(self, name: str) -> str:
        return self.fields.get(name, name)


@dataclass(frozen=True)
class Example:
    """One training example: a conversation, a plain text trained whole, or token ids."""

    messages: tuple[Mapping[str, str], ...] | None = None
    text: str | None = None
    input_ids: tuple[int, ...] | None = None
    labels: tuple[int, ...] | None = None
    empty_turns: tuple[int, ...] = ()  # assistant turns with no text: kept for context, never trained
    tools: tuple[Mapping[str, Any], ...] | None = None  # function schemas the chat template shows the model


def field_value(row: Mapping[str, Any], options: FormatOptions, name: str, *, optional: bool = False) -> Any:
    key = options.field(name)
    if key not in row or row[key] is None:
        if optional:
            return None
        present = ", ".join(sorted(row)) or "no fields"
        raise RowError(
            "missing field",
            f"missing field '{key}' (row has: {present})",
            f"map it with dataset.fields.{name}=<your field>",
        )
    return row[key]


def text_of(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RowError("wrong type", f"field '{name}' should be text, got {type(value).__name__}")
    return value


def with_system(messages: list[dict[str, str]], options: FormatOptions) -> tuple[Mapping[str, str], ...]:
    if options.system_prompt and not (messages and messages[0]["role"] == "system"):
        messages = [{"role": "system", "content": options.system_prompt}, *messages]
    return tuple(messages)


def qa(row: Mapping[str, Any], options: FormatOptions) -> Example:
    question = text_of(field_value(row, options, "question"), options.field("question"))
    answer = text_of(field_value(row, options, "answer"), options.field("answer"))
    if options.strip_calculator_annotations:
        answer = CALCULATOR_ANNOTATION.sub("", answer)
    if not question.strip() or not answer.strip():
        raise RowError("empty text", "question or answer is empty")
    return Example(
        messages=with_system([{"role": "user", "content": question}, {"role": "assistant", "content": answer}], options)
    )


def alpaca(row: Mapping[str, Any], options: FormatOptions) -> Example:
    instruction = text_of(field_value(row, options, "instruction"), options.field("instruction"))
    extra = text_of(field_value(row, options, "input", optional=True) or "", options.field("input"))
    output = text_of(field_value(row, options, "output"), options.field("output"))
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    if not prompt.strip() or not output.strip():
        raise RowError("empty text", "instruction or output is empty")
    return Example(
        messages=with_system([{"role": "user", "content": prompt}, {"role": "assistant", "content": output}], options)
    )


# Message keys passed to the chat template as they are, for templates that render them
# (tool calls and their results, reasoning). A template that ignores tool calls is refused per row.
PASS_THROUGH = ("tool_calls", "tool_call_id", "name", "reasoning_content")


def _conversation(
    row: Mapping[str, Any],
    options: FormatOptions,
    field: str,
    role_key: str,
    text_key: str,
    roles: Mapping[str, str],
    tools: Any = None,
) -> Example:
    """A list of turns under `field`, each {role_key: one of `roles`, text_key: text}, as chat messages."""
    raw = field_value(row, options, field)
    if not isinstance(raw, list):
        raise RowError("wrong type", f"'{options.field(field)}' should be a list of turns")
    out = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, Mapping) or role_key not in turn or text_key not in turn:
            raise RowError("bad message", f"turn {i} needs '{role_key}' and '{text_key}'")
        role = roles.get(turn[role_key]) if isinstance(turn[role_key], str) else None
        if role is None:
            raise RowError(
                "wrong role", f"turn {i} has {role_key} {turn[role_key]!r}", f"use one of {', '.join(roles)}"
            )
        calls = turn.get("tool_calls")
        text = (
            "" if turn[text_key] is None and calls else text_of(turn[text_key], f"turn {i} {text_key}")
        )  # a call has no text
        out.append({"role": role, "content": text, **{k: turn[k] for k in PASS_THROUGH if turn.get(k) is not None}})
    if not out:
        raise RowError("empty conversation", "the conversation has no messages")
    if not any(m["role"] == "assistant" for m in out):
        raise RowError("no assistant turn", "the conversation has no assistant message to train on")
    empty = [
        i
        for i, m in enumerate(out)
        if m["role"] == "assistant" and not m["content"].strip() and not m.get("tool_calls")
    ]
    if len(empty) == sum(m["role"] == "assistant" for m in out):
        raise RowError("empty reply", "every assistant turn is empty: nothing to train on")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, Mapping) for t in tools)):
        raise RowError("wrong type", f"'{options.field('tools')}' should be a list of function schemas")
    messages = with_system(out, options)
    shift = len(messages) - len(out)  # an injected system prompt moves every turn by one
    return Example(
        messages=messages, empty_turns=tuple(i + shift for i in empty), tools=tuple(tools) if tools else None
    )


def messages(row: Mapping[str, Any], options: FormatOptions) -> Example:
    """OpenAI-style `messages`: [{role, content}, ...]."""
    return _conversation(
        row,
        options,
        "messages",
        "role",
        "content",
        {r: r for r in ROLES},
        tools=field_value(row, options, "tools", optional=True),
    )


def sharegpt(row: Mapping[str, Any], options: FormatOptions) -> Example:
    """ShareGPT-style `conversations`: [{from: human|gpt|system, value}, ...]."""
    return _conversation(row, options, "conversations", "from", "value", SHAREGPT_ROLES)


def completion(row: Mapping[str, Any], options: FormatOptions) -> Example:
    text = text_of(field_value(row, options, "text"), options.field("text"))
    if not text.strip():
        raise RowError("empty text", "the text is empty")
    return Example(text=text)


def pretokenized(row: Mapping[str, Any], options: FormatOptions) -> Example:
    ids = field_value(row, options, "input_ids")
    labels = field_value(row, options, "labels", optional=True)
    if not _int_list(ids) or not ids:
        raise RowError("bad token ids", "input_ids should be a non-empty list of integers")
    if labels is not None and not _int_list(labels):
        raise RowError(
            "bad token ids",
            f"labels should be a list of integers, got {labels!r:.60}",
            "give one label per token (-100 masks)",
        )
    if labels is not None and len(labels) != len(ids):
        raise RowError(
            "bad token ids",
            f"labels has {len(labels)} entries for {len(ids)} input_ids",
            "give one label per token (-100 masks)",
        )
    return Example(input_ids=tuple(ids), labels=tuple(labels) if labels is not None else None)


def _int_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


# The supervised fine-tuning formats; data/format_registry.py adds the post-training ones.
SFT_FORMATS: dict[str, Callable[[Mapping[str, Any], FormatOptions], Example]] = {
    "qa": qa,
    "alpaca": alpaca,
    "messages": messages,
    "sharegpt": sharegpt,
    "completion": completion,
    "pretokenized": pretokenized,
}
