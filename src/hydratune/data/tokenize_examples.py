"""Examples -> token ids and labels, rendered through the tokenizer's own chat template.

Which tokens are trained is decided on characters, not tokens: the conversation is
rendered once, each message's span is found by rendering the conversation up to it
(templates render prefixes of a conversation as prefixes of its text, which is
checked), and a token is trained when it starts inside a trained span. A trained
assistant span runs from its content through the end-of-turn token the template
writes after it (so the model learns to stop), without the trailing newline.
Injected system prompts and role headers are never trained.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Sequence

from hydratune.data.errors import DataError
from hydratune.data.formats import Example

IGNORE_INDEX = -100  # the label of a position that is not trained (PyTorch's cross-entropy default)


@dataclass(frozen=True)
class MaskPolicy:
    train_on_inputs: bool = False
    train_roles: tuple[str, ...] = ("assistant",)

    def trains(self, role: str) -> bool:
        return self.train_on_inputs or role in self.train_roles


@dataclass(frozen=True)
class TokenSequence:
    input_ids: list[int]
    labels: list[int]

    @property
    def supervised(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)


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


def _no_first_label(labels: list[int]) -> list[int]:
    """A sequence's first token is never predicted (nothing precedes it). Masking it keeps a
    packed row from training its neighbour's last token to predict it."""
    return [IGNORE_INDEX, *labels[1:]] if labels else labels


def _labels_in_spans(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Token ids whose first character lies in a trained span; IGNORE_INDEX elsewhere (offsets ascend)."""
    starts = [start for start, _ in offsets]
    labels = [IGNORE_INDEX] * len(ids)
    for begin, end in spans:
        lo, hi = bisect.bisect_left(starts, begin), bisect.bisect_left(starts, end)
        labels[lo:hi] = ids[lo:hi]
    return labels


def tokenize_batch(tokenizer, examples: Sequence[Example], policy: MaskPolicy) -> list[TokenSequence]:
    """Token ids and labels for a batch of examples (one fast-tokenizer call per batch)."""
    texts, spans_per_text, slots = [], [], []
    out: list[TokenSequence | None] = [None] * len(examples)
    for i, ex in enumerate(examples):
        if ex.input_ids is not None:
            labels = list(ex.labels) if ex.labels is not None else list(ex.input_ids)
            out[i] = TokenSequence(list(ex.input_ids), _no_first_label(labels))
        elif ex.text is not None:
            text = ex.text if ex.text.endswith(tokenizer.eos_token) else ex.text + tokenizer.eos_token
            texts.append(text)
            spans_per_text.append([(0, len(text))])
            slots.append(i)
        else:
            text, spans = trained_char_spans(tokenizer, ex.messages, policy, ex.empty_turns, ex.tools)
            texts.append(text)
            spans_per_text.append(spans)
            slots.append(i)
    if texts:
        for slot, (ids, offsets), spans in zip(slots, encode_with_offsets(tokenizer, texts), spans_per_text):
            out[slot] = TokenSequence(list(ids), _no_first_label(_labels_in_spans(ids, offsets, spans)))
    return out  # type: ignore[return-value]


def dropped_by_template(tokenizer, example: Example) -> str | None:
    """What of a conversation's tool calls or reasoning the chat template leaves out of the text
    (training on that row would teach replies without them), or None."""
    messages = example.messages or ()
    wanted = [
        (f"turn {i} tool call", call.get("function", {}).get("name", ""))
        for i, m in enumerate(messages)
        for call in m.get("tool_calls") or ()
        if isinstance(call, dict)
    ]
    last_reasoning = [(i, m["reasoning_content"]) for i, m in enumerate(messages) if m.get("reasoning_content")][-1:]
    wanted += [
        (f"turn {i} reasoning_content", text) for i, text in last_reasoning
    ]  # earlier ones a template may drop by design
    if not wanted:
        return None
    text = render(tokenizer, messages, tools=example.tools)
    missing = [what for what, needle in wanted if needle and needle not in text]
    return ", ".join(missing) or None


def encode_with_offsets(tokenizer, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Token ids and character offsets of each text, without special tokens. A fast tokenizer
    with no truncation or padding set is called directly (the same call transformers makes,
    without building its per-text dictionaries: a fifth of the tokenizing time)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        return [(e.ids, e.offsets) for e in backend.encode_batch(texts, add_special_tokens=False)]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return list(zip(encoded["input_ids"], encoded["offset_mapping"]))


def token_id_problem(example: Example, vocab_size: int) -> str | None:
    """Why pretokenized ids cannot be embedded (negative, or past the vocabulary), or None."""
    if example.input_ids is None:
        return None
    bad = [t for t in example.input_ids if not 0 <= t < vocab_size]
    if bad:
        return f"input_ids has {len(bad)} id(s) outside the vocabulary [0, {vocab_size}), e.g. {bad[0]}"
    bad = [t for t in example.labels or () if t != IGNORE_INDEX and not 0 <= t < vocab_size]
    if bad:
        return (
            f"labels has {len(bad)} id(s) that are neither {IGNORE_INDEX} nor in the vocabulary [0, {vocab_size}), "
            f"e.g. {bad[0]}"
        )
    return None


def fit_length(seq: TokenSequence, max_length: int, overlong: str) -> tuple[TokenSequence | None, str | None]:
    """Apply the sequence policy: (sequence or None, what happened: None, 'truncated' or a drop reason)."""
    if len(seq.input_ids) <= max_length:
        return (seq, None) if seq.supervised else (None, "no supervised tokens")
    if overlong == "drop":
        return None, "longer than max_length"
    cut = TokenSequence(seq.input_ids[:max_length], seq.labels[:max_length])
    return (cut, "truncated") if cut.supervised else (None, "no supervised tokens left after truncation")


def tokenizer_fingerprint_parts(tokenizer) -> Iterable[str]:
    """What shapes token ids: the tokenizer's full definition, its special tokens and template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    yield type(tokenizer).__name__
    yield backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    yield repr(sorted((k, str(v)) for k, v in tokenizer.special_tokens_map.items()))
    yield tokenizer.chat_template or ""
