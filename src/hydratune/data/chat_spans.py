"""Which characters of a rendered conversation are trained, decided on the chat template's text.

The definition (`trained_char_spans`): a turn's span starts where the conversation rendered up
to it ends (with the generation prompt for an assistant turn) and runs through the
conversation rendered with it, trailing whitespace off; templates render prefixes of a
conversation as prefixes of its text, which is checked. That costs two renders per trained turn.

`TurnSpans` finds the same spans in the one rendering of the whole conversation: an assistant
turn's content follows the generation prompt and is followed by the template's end of turn,
read once from a conversation spanned by the definition. Every batch's first conversations are
spanned both ways; a batch where they differ, or where none of them could be searched, is spanned
by the definition, and so is any conversation whose content is not found verbatim (as when a
template trims it): the spans, and so the shards, are the definition's in every case.

A plain conversation (messages of a role and a text content, no tools) is rendered by calling
the compiled template directly (`PlainRender`) with what apply_chat_template would pass it,
skipping its per-call copying of the messages; the checked conversations compare the two texts,
and a batch where they differ renders through apply_chat_template.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from hydratune.data.errors import DataError

CHECKED_PER_BATCH = 4  # conversations per batch spanned both ways


@dataclass(frozen=True)
class MaskPolicy:
    train_on_inputs: bool = False
    train_roles: tuple[str, ...] = ("assistant",)

    def trains(self, role: str) -> bool:
        return self.train_on_inputs or role in self.train_roles


def render(tokenizer, messages: Sequence, *, generation_prompt: bool = False, tools: Sequence | None = None) -> str:
    if not messages:
        return ""
    extra = {"tools": list(tools)} if tools else {}
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt, **extra
    )


def trained_char_spans(
    tokenizer, messages: Sequence, policy: MaskPolicy, skip: Sequence[int] = (), tools: Sequence | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the [start, end) character spans whose tokens are trained
    (turns listed in `skip`, such as empty assistant replies, are not)."""
    text = render(tokenizer, messages, tools=tools)
    spans = []
    for i, message in enumerate(messages):
        if not policy.trains(message["role"]) or i in skip:
            continue
        before = render(tokenizer, messages[:i], generation_prompt=message["role"] == "assistant", tools=tools)
        through = text if i == len(messages) - 1 else render(tokenizer, messages[: i + 1], tools=tools)
        if not (text.startswith(through) and through.startswith(before)):
            raise DataError(
                "the chat template does not render a conversation's prefix as a prefix of its text, so turns cannot be "
                "masked",
                "set model.chat_template=chatml (or another named template)",
            )
        end = len(through.rstrip())
        if end > len(before):
            spans.append((len(before), end))
    return text, spans


class TurnSpans:
    """trained_char_spans for a batch of conversations, from one rendering each where it can."""

    def __init__(self, tokenizer, policy: MaskPolicy):
        self.tokenizer = tokenizer
        # Only assistant turns follow the generation prompt; other trained roles span their headers too.
        self.fast = policy.train_roles == ("assistant",) and not policy.train_on_inputs
        self.policy = policy
        self.prompt = generation_prompt(tokenizer) if self.fast else None
        self.end_of_turn: str | None = None
        self.checked = 0  # conversations spanned both ways
        self.agreed = 0  # ... where the search placed every turn, as the definition does
        self.plain_render = PlainRender.of(tokenizer) if self.fast else None
        self.plain_agreed = 0  # checked plain conversations it rendered as apply_chat_template does

    def __call__(self, messages: Sequence, skip: Sequence[int] = (), tools: Sequence | None = None):
        if not self.fast or self.prompt is None:
            return trained_char_spans(self.tokenizer, messages, self.policy, skip, tools)
        if self.checked < CHECKED_PER_BATCH:
            self.checked += 1
            text, spans = trained_char_spans(self.tokenizer, messages, self.policy, skip, tools)
            if self.plain_render is not None and is_plain(messages, tools):
                if self.plain_render(messages) != text:
                    self.plain_render = None
                else:
                    self.plain_agreed += 1
            if self.end_of_turn is None:
                self.end_of_turn = self._learn_end_of_turn(text, spans, messages, skip)
            found = self._find(text, messages, skip) if self.end_of_turn is not None else None
            if found is not None and found != spans:
                self.fast = False  # one disagreement: this batch is spanned by the definition
            # a conversation the search does not place (found None) says nothing either way
            self.agreed += found == spans
            return text, spans
        if not self.agreed:  # nothing checked agreed (or nothing could be checked)
            self.fast = False
            return trained_char_spans(self.tokenizer, messages, self.policy, skip, tools)
        if self.plain_render is not None and self.plain_agreed and is_plain(messages, tools):
            text = self.plain_render(messages)
        else:
            text = render(self.tokenizer, messages, tools=tools)
        spans = self._find(text, messages, skip)
        return (
            (text, spans)
            if spans is not None
            else trained_char_spans(self.tokenizer, messages, self.policy, skip, tools)
        )

    def _assistant_turns(self, messages: Sequence, skip: Sequence[int]) -> list[int]:
        return [i for i, m in enumerate(messages) if m["role"] == "assistant" and i not in skip]

    def _learn_end_of_turn(self, text: str, spans, messages: Sequence, skip: Sequence[int]) -> str | None:
        """What the template writes between an assistant turn's content and the span's end."""
        turns = self._assistant_turns(messages, skip)
        if not turns or len(spans) != len(turns):
            return None
        (start, end), content = spans[0], messages[turns[0]].get("content")
        if not isinstance(content, str) or not text.startswith(content, start):
            return None
        end_of_turn = text[start + len(content) : end]
        # without a visible end of turn the definition's trailing-whitespace cut would reach into the content
        return end_of_turn if end_of_turn.strip() else None

    def _find(self, text: str, messages: Sequence, skip: Sequence[int]) -> list[tuple[int, int]] | None:
        """Each message's content located in order; an assistant turn's span is its content, right
        after the generation prompt, through the end of turn. None where a content is not found
        verbatim in that place."""
        spans, cursor = [], 0
        trained = set(self._assistant_turns(messages, skip))
        for i, message in enumerate(messages):
            content = message.get("content")
            if not isinstance(content, str) or not content or message.keys() - {"role", "content"}:
                return None  # tool calls, reasoning, content parts: rendered by rules of their own
            if i in trained:
                at = text.find(self.prompt + content, cursor)
                if at < 0:
                    return None
                start = at + len(self.prompt)
                cursor = start + len(content)
                if not text.startswith(self.end_of_turn, cursor):
                    return None
                spans.append((start, cursor + len(self.end_of_turn)))
                cursor = spans[-1][1]
            else:
                at = text.find(content, cursor)
                if at < 0:
                    return None
                cursor = at + len(content)
        return spans


def is_plain(messages: Sequence, tools: Sequence | None) -> bool:
    """Every message is a role and a text content, and no tools: what apply_chat_template hands
    the template is then these messages as they are."""
    return not tools and all(
        type(m) is dict and m.keys() == {"role", "content"} and type(m["role"]) is str and type(m["content"]) is str
        for m in messages
    )


class PlainRender:
    """The chat template, compiled as transformers compiles it, rendering a plain conversation
    with the variables apply_chat_template passes (the special tokens, no tools or documents).

    apply_chat_template first rebuilds every message out of plain JSON types and aliases the
    reasoning fields; for a plain conversation both leave the messages as they are, and a
    worker spent longer on that copying than on rendering."""

    def __init__(self, template, variables: dict):
        self.template, self.variables = template, variables

    @classmethod
    def of(cls, tokenizer) -> "PlainRender | None":
        """None where this transformers does not compile templates as it did when this was
        written (the renders then go through apply_chat_template)."""
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template

            template = _compile_jinja_template(tokenizer.get_chat_template())
        except Exception:  # a renamed private function, or no template: apply_chat_template decides
            return None
        return cls(template, dict(tokenizer.special_tokens_map))

    def __call__(self, messages: Sequence) -> str:
        return self.template.render(
            messages=list(messages), tools=None, documents=None, add_generation_prompt=False, **self.variables
        )


def generation_prompt(tokenizer) -> str | None:
    """What the template adds for add_generation_prompt after a conversation, or None when the
    prompt is not an addition at the end (then every conversation is spanned by the definition)."""
    probe = [{"role": "user", "content": "2 + 2?"}]
    try:
        bare, prompted = render(tokenizer, probe), render(tokenizer, probe, generation_prompt=True)
    except Exception:  # a template that needs a system turn or other roles: the definition decides
        return None
    return prompted[len(bare) :] if prompted.startswith(bare) and len(prompted) > len(bare) else None
