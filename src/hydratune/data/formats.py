"""Row formats: each a small named converter from a raw row to an `Example`.

Add your own without editing the package: write `def my_rows(row, options) -> Example`
(or returning a list of {role, content} messages) in an importable module and set
`dataset.format=my_module:my_rows`.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hydratune.data.errors import DataError, RowError

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "tool": "tool"}
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


def _get(row: Mapping[str, Any], options: FormatOptions, name: str, *, optional: bool = False) -> Any:
    key = options.field(name)
    if key not in row or row[key] is None:
        if optional:
            return None
        present = ", ".join(sorted(row)) or "no fields"
        raise RowError("missing field", f"missing field '{key}' (row has: {present})", f"map it with dataset.fields.{name}=<your field>")
    return row[key]


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise RowError("wrong type", f"field '{name}' should be text, got {type(value).__name__}")
    return value


def _with_system(messages: list[dict[str, str]], options: FormatOptions) -> tuple[Mapping[str, str], ...]:
    if options.system_prompt and not (messages and messages[0]["role"] == "system"):
        messages = [{"role": "system", "content": options.system_prompt}, *messages]
    return tuple(messages)


def qa(row: Mapping[str, Any], options: FormatOptions) -> Example:
    question = _text(_get(row, options, "question"), options.field("question"))
    answer = _text(_get(row, options, "answer"), options.field("answer"))
    if options.strip_calculator_annotations:
        answer = CALCULATOR_ANNOTATION.sub("", answer)
    if not question.strip() or not answer.strip():
        raise RowError("empty text", "question or answer is empty")
    return Example(messages=_with_system([{"role": "user", "content": question}, {"role": "assistant", "content": answer}], options))


def alpaca(row: Mapping[str, Any], options: FormatOptions) -> Example:
    instruction = _text(_get(row, options, "instruction"), options.field("instruction"))
    extra = _text(_get(row, options, "input", optional=True) or "", options.field("input"))
    output = _text(_get(row, options, "output"), options.field("output"))
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    if not prompt.strip() or not output.strip():
        raise RowError("empty text", "instruction or output is empty")
    return Example(messages=_with_system([{"role": "user", "content": prompt}, {"role": "assistant", "content": output}], options))


# Message keys passed to the chat template as they are, for templates that render them
# (tool calls and their results, reasoning). A template that ignores tool calls is refused per row.
PASS_THROUGH = ("tool_calls", "tool_call_id", "name", "reasoning_content")


def _conversation(row: Mapping[str, Any], options: FormatOptions, field: str, role_key: str, text_key: str,
                  roles: Mapping[str, str], tools: Any = None) -> Example:
    """A list of turns under `field`, each {role_key: one of `roles`, text_key: text}, as chat messages."""
    raw = _get(row, options, field)
    if not isinstance(raw, list):
        raise RowError("wrong type", f"'{options.field(field)}' should be a list of turns")
    out = []
    for i, turn in enumerate(raw):
        if not isinstance(turn, Mapping) or role_key not in turn or text_key not in turn:
            raise RowError("bad message", f"turn {i} needs '{role_key}' and '{text_key}'")
        role = roles.get(turn[role_key]) if isinstance(turn[role_key], str) else None
        if role is None:
            raise RowError("wrong role", f"turn {i} has {role_key} {turn[role_key]!r}", f"use one of {', '.join(roles)}")
        calls = turn.get("tool_calls")
        text = "" if turn[text_key] is None and calls else _text(turn[text_key], f"turn {i} {text_key}")  # a call has no text
        out.append({"role": role, "content": text, **{k: turn[k] for k in PASS_THROUGH if turn.get(k) is not None}})
    if not out:
        raise RowError("empty conversation", "the conversation has no messages")
    if not any(m["role"] == "assistant" for m in out):
        raise RowError("no assistant turn", "the conversation has no assistant message to train on")
    empty = [i for i, m in enumerate(out) if m["role"] == "assistant" and not m["content"].strip() and not m.get("tool_calls")]
    if len(empty) == sum(m["role"] == "assistant" for m in out):
        raise RowError("empty reply", "every assistant turn is empty: nothing to train on")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, Mapping) for t in tools)):
        raise RowError("wrong type", f"'{options.field('tools')}' should be a list of function schemas")
    messages = _with_system(out, options)
    shift = len(messages) - len(out)  # an injected system prompt moves every turn by one
    return Example(messages=messages, empty_turns=tuple(i + shift for i in empty), tools=tuple(tools) if tools else None)


def messages(row: Mapping[str, Any], options: FormatOptions) -> Example:
    """OpenAI-style `messages`: [{role, content}, ...]."""
    return _conversation(row, options, "messages", "role", "content", {r: r for r in ROLES},
                         tools=_get(row, options, "tools", optional=True))


def sharegpt(row: Mapping[str, Any], options: FormatOptions) -> Example:
    """ShareGPT-style `conversations`: [{from: human|gpt|system, value}, ...]."""
    return _conversation(row, options, "conversations", "from", "value", SHAREGPT_ROLES)


def completion(row: Mapping[str, Any], options: FormatOptions) -> Example:
    text = _text(_get(row, options, "text"), options.field("text"))
    if not text.strip():
        raise RowError("empty text", "the text is empty")
    return Example(text=text)


def pretokenized(row: Mapping[str, Any], options: FormatOptions) -> Example:
    ids = _get(row, options, "input_ids")
    labels = _get(row, options, "labels", optional=True)
    if not _int_list(ids) or not ids:
        raise RowError("bad token ids", "input_ids should be a non-empty list of integers")
    if labels is not None and not _int_list(labels):
        raise RowError("bad token ids", f"labels should be a list of integers, got {labels!r:.60}", "give one label per token (-100 masks)")
    if labels is not None and len(labels) != len(ids):
        raise RowError("bad token ids", f"labels has {len(labels)} entries for {len(ids)} input_ids", "give one label per token (-100 masks)")
    return Example(input_ids=tuple(ids), labels=tuple(labels) if labels is not None else None)


def _int_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


FORMATS: dict[str, Callable[[Mapping[str, Any], FormatOptions], Example]] = {
    "qa": qa,
    "alpaca": alpaca,
    "messages": messages,
    "sharegpt": sharegpt,
    "completion": completion,
    "pretokenized": pretokenized,
}


def is_custom(name: str) -> bool:
    return ":" in name


def builtin_formats() -> dict[str, Callable[[Mapping[str, Any], FormatOptions], Any]]:
    """The SFT formats and the post-training ones (preference, unpaired, prompt)."""
    from hydratune.data.preference_formats import POST_TRAINING_FORMATS

    return {**FORMATS, **POST_TRAINING_FORMATS}


def resolve_format(name: str) -> Callable[[Mapping[str, Any], FormatOptions], Any]:
    """A built-in format by name, or a user's `module:function`."""
    builtin = builtin_formats()
    if name in builtin:
        return builtin[name]
    if not is_custom(name):
        raise DataError(f"dataset.format={name}: unknown format", f"use one of {', '.join(builtin)}, or module:function")
    fn = _import_custom(name)

    def custom(row: Mapping[str, Any], options: FormatOptions) -> Example:
        from hydratune.data.preference_formats import POST_TRAINING_ROWS

        result = fn(row, options)
        if isinstance(result, (Example, *POST_TRAINING_ROWS)):
            return result
        if isinstance(result, list):
            return Example(messages=_with_system(list(result), options))
        raise RowError("bad custom format", f"{name} returned {type(result).__name__}",
                       "return an Example (or PreferencePair, UnpairedExample, PromptExample) or a list of {role, content}")

    return custom


def _import_custom(name: str) -> Callable[..., Any]:
    module_name, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"dataset.format={name}: cannot import it ({exc})", "make the module importable (on PYTHONPATH)") from None


def format_source_text(name: str) -> str:
    """The source of the module that defines the converter (the whole file, so a change in a
    helper it calls counts too): part of the cache key, so editing a format rebuilds."""
    fn = builtin_formats().get(name) or _import_custom(name)
    module = inspect.getmodule(fn)
    try:
        return inspect.getsource(module) if module is not None else inspect.getsource(fn)
    except (OSError, TypeError):
        return name
