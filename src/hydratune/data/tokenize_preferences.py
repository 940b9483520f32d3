"""Post-training rows -> token ids: prompt ids and reply ids, split where the prompt ends.

The prompt is rendered with the generation prompt (the assistant header), the prompt
plus reply without it; the second must begin with the first (checked, as for SFT
masking), and the reply's tokens are those starting after the prompt's text. A reply
ends at the end-of-turn token its template writes (trailing whitespace is not trained),
so the model learns to stop. The rows these make are what TRL's trainers collate:
`prompt_ids` + `chosen_ids`/`rejected_ids` (dpo), `prompt_ids` + `completion_ids` +
`label` (kto); GRPO prompts stay messages (the trainer renders them to sample).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from hydratune.data.chat_spans import render
from hydratune.data.errors import DataError
from hydratune.data.preference_formats import (
    Messages,
    PreferencePair,
    PromptExample,
    UnpairedExample,
)


@dataclass(frozen=True)
class PromptReply:
    prompt_ids: list[int]
    reply_ids: list[int]


def prompt_and_reply(tokenizer, prompt: Messages, reply: Messages) -> PromptReply:
    head = render(tokenizer, prompt, generation_prompt=True)
    whole = render(tokenizer, [*prompt, *reply], generation_prompt=False).rstrip()
    if not whole.startswith(head):
        raise DataError(
            "the chat template renders the prompt differently alone than before its reply, so prompt and reply cannot "
            "be split",
            "set model.chat_template=chatml (or another named template)",
        )
    encoded = tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)
    ids, starts = encoded["input_ids"], [start for start, _ in encoded["offset_mapping"]]
    cut = bisect.bisect_left(starts, len(head))  # the first token that starts inside the reply
    return PromptReply(list(ids[:cut]), list(ids[cut:]))


def prompt_ids(tokenizer, prompt: Messages) -> list[int]:
    return list(tokenizer(render(tokenizer, prompt, generation_prompt=True), add_special_tokens=False)["input_ids"])


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _fit(
    prompt: list[int], replies: list[list[int]], max_length: int, overlong: str
) -> tuple[list[list[int]] | None, str | None]:
    """Replies cut so that prompt + reply fits max_length: (replies or None, what happened)."""
    if len(prompt) >= max_length:
        return None, "prompt longer than max_length"
    if all(len(prompt) + len(r) <= max_length for r in replies):
        return replies, None
    if overlong == "drop":
        return None, "longer than max_length"
    return [r[: max_length - len(prompt)] for r in replies], "truncated"


def tokenize_pair(tokenizer, pair: PreferencePair, max_length: int, overlong: str) -> tuple[dict | None, str | None]:
    chosen = prompt_and_reply(tokenizer, pair.prompt, pair.chosen)
    rejected = prompt_and_reply(tokenizer, pair.prompt, pair.rejected)
    # Both share the prompt's tokens; a token merging across the prompt's end moves into the replies.
    shared = _common_prefix(chosen.prompt_ids + chosen.reply_ids, rejected.prompt_ids + rejected.reply_ids)
    cut = min(len(chosen.prompt_ids), len(rejected.prompt_ids), shared)
    prompt = chosen.prompt_ids[:cut]
    replies, event = _fit(
        prompt,
        [(chosen.prompt_ids + chosen.reply_ids)[cut:], (rejected.prompt_ids + rejected.reply_ids)[cut:]],
        max_length,
        overlong,
    )
    if replies is None:
        return None, event
    if replies[0] == replies[1]:
        return None, "chosen and rejected identical after truncation"
    return {"prompt_ids": prompt, "chosen_ids": replies[0], "rejected_ids": replies[1]}, event


def tokenize_unpaired(
    tokenizer, example: UnpairedExample, max_length: int, overlong: str
) -> tuple[dict | None, str | None]:
    split = prompt_and_reply(tokenizer, example.prompt, example.completion)
    replies, event = _fit(split.prompt_ids, [split.reply_ids], max_length, overlong)
    if replies is None:
        return None, event
    return {"prompt_ids": split.prompt_ids, "completion_ids": replies[0], "label": example.desirable}, event


def tokenize_prompt(
    tokenizer, example: PromptExample, max_length: int, overlong: str
) -> tuple[dict | None, str | None]:
    """A GRPO prompt stays messages; its token count is checked against max_length (prompts are never cut)."""
    n = len(prompt_ids(tokenizer, example.prompt))
    if n > max_length:
        return None, "prompt longer than max_length"
    return {"prompt": [dict(m) for m in example.prompt], "answer": example.answer, "prompt_tokens": n}, None
