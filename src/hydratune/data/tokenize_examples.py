"""Examples -> token ids and labels, rendered through the tokenizer's own chat template.

Which tokens are trained is decided on characters, not tokens (chat_spans finds the trained
spans of each rendered conversation), and a token is trained when it starts inside a trained
span: one batched fast-tokenizer call with character offsets per batch. A trained assistant
span runs from its content through the end-of-turn token the template writes after it (so
the model learns to stop), without the trailing newline. Injected system prompts and role
headers are never trained.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from hydratune.data.chat_spans import MaskPolicy, TurnSpans, render
from hydratune.data.formats import Example

IGNORE_INDEX = -100  # the label of a position that is not trained (PyTorch's cross-entropy default)


@dataclass(frozen=True)
class TokenSequence:
    input_ids: np.ndarray  # int32, as the shards store them
    labels: np.ndarray

    @property
    def supervised(self) -> int:
        return int(np.count_nonzero(self.labels != IGNORE_INDEX))


def _sequence(ids: np.ndarray, labels: np.ndarray) -> TokenSequence:
    """The sequence, its first label masked in place: a sequence's first token is never predicted
    (nothing precedes it), and masking it keeps a packed row from training its neighbour's last
    token to predict it."""
    labels[:1] = IGNORE_INDEX
    return TokenSequence(ids, labels)


def _labels_in_bounds(ids: np.ndarray, bounds: list[tuple[int, int]]) -> np.ndarray:
    """Token ids inside the [lo, hi) token ranges; IGNORE_INDEX elsewhere."""
    labels = np.full_like(ids, IGNORE_INDEX)
    for lo, hi in bounds:
        labels[lo:hi] = ids[lo:hi]
    return labels


def _int32(values: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


def tokenize_batch(tokenizer, examples: Sequence[Example], policy: MaskPolicy) -> list[TokenSequence]:
    """Token ids and labels for a batch of examples (one fast-tokenizer call per batch)."""
    texts, spans_per_text, slots = [], [], []
    out: list[TokenSequence | None] = [None] * len(examples)
    turn_spans = TurnSpans(tokenizer, policy)
    for i, ex in enumerate(examples):
        if ex.input_ids is not None:
            ids = _int32(ex.input_ids)
            out[i] = _sequence(ids, _int32(ex.labels) if ex.labels is not None else ids.copy())
        elif ex.text is not None:
            text = ex.text if ex.text.endswith(tokenizer.eos_token) else ex.text + tokenizer.eos_token
            texts.append(text)
            spans_per_text.append([(0, len(text))])
            slots.append(i)
        else:
            text, spans = turn_spans(ex.messages, ex.empty_turns, ex.tools)
            texts.append(text)
            spans_per_text.append(spans)
            slots.append(i)
    if texts:
        for slot, (ids, bounds) in zip(slots, encode_with_bounds(tokenizer, texts, spans_per_text)):
            token_ids = _int32(ids)
            out[slot] = _sequence(token_ids, _labels_in_bounds(token_ids, bounds))
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


def encode_with_bounds(
    tokenizer, texts: list[str], spans_per_text: list[list[tuple[int, int]]]
) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """Each text's token ids (no special tokens added) and, for each of its character spans, the
    [lo, hi) range of the tokens that start inside it.

    A fast tokenizer with no truncation or padding set is called directly (the call transformers
    makes, without its per-text dictionaries), and a span's edge is looked up in the encoding
    (`char_to_token`) instead of reading every token's offsets into Python: together a third of
    the tokenizing time."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        encodings = backend.encode_batch(texts, add_special_tokens=False)
        return [
            (e.ids, [(_first_token_from(e, begin), _first_token_from(e, end)) for begin, end in spans])
            for e, spans in zip(encodings, spans_per_text)
        ]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for ids, offsets, spans in zip(encoded["input_ids"], encoded["offset_mapping"], spans_per_text):
        starts = [start for start, _ in offsets]
        out.append((list(ids), [(bisect.bisect_left(starts, b), bisect.bisect_left(starts, e)) for b, e in spans]))
    return out


def _first_token_from(encoding, char: int) -> int:
    """The index of the first token that starts at or after `char` (the token count if none)."""
    token = encoding.char_to_token(char)
    if token is None:  # no token covers `char` (the text's end, or a space trimmed off the offsets)
        return bisect.bisect_left([start for start, _ in encoding.offsets], char)
    return token if encoding.token_to_chars(token)[0] >= char else token + 1


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
