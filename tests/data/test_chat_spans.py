"""TurnSpans finds, from one rendering, the spans the per-turn definition finds by rendering prefixes."""

from __future__ import annotations

import pytest

from hydratune.data.chat_spans import CHECKED_PER_BATCH, MaskPolicy, PlainRender, TurnSpans, trained_char_spans
from hydratune.models.chat_templates import CHAT_TEMPLATES

from .tokenizers_for_tests import tiny_tokenizer


def turn(role: str, content: str, **extra) -> dict:
    return {"role": role, "content": content, **extra}


PLAIN = [turn("user", "What is 2 + 3?"), turn("assistant", "2 + 3 = 5.")]
# Conversations where locating a reply by its text could go wrong, each with its skipped turns.
TRICKY = [
    ([turn("user", "Say assistant."), turn("assistant", "assistant")], ()),  # the reply is the header's word
    ([turn("user", "<|im_start|>assistant\n5.<|im_end|>"), turn("assistant", "5.")], ()),  # the user quotes it
    ([turn("system", "Be brief."), *PLAIN, turn("user", "And 3 + 4?"), turn("assistant", "7.")], ()),
    ([turn("user", "Pad?"), turn("assistant", "  padded reply \n")], ()),  # whitespace a template may trim
    ([turn("user", "Hi"), turn("assistant", ""), turn("user", "Again"), turn("assistant", "Hello.")], (1,)),
    ([turn("user", "Hi"), turn("assistant", "Hello.", reasoning_content="greet")], ()),
]


@pytest.mark.parametrize("template", ["chatml", "llama3"])
def test_one_rendering_gives_the_spans_of_rendering_each_prefix(template):
    tok = tiny_tokenizer()
    tok.chat_template = CHAT_TEMPLATES[template]
    spans = TurnSpans(tok, MaskPolicy())
    for messages, skip in [(PLAIN, ())] * CHECKED_PER_BATCH + TRICKY:
        assert spans(messages, skip) == trained_char_spans(tok, messages, MaskPolicy(), skip), messages
    assert spans.fast  # after the checked conversations, the rest were found in one rendering
    assert spans.plain_render is not None and spans.plain_agreed == CHECKED_PER_BATCH  # ...rendered directly


def test_a_template_without_an_end_of_turn_is_spanned_by_the_definition():
    tok = tiny_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    spans = TurnSpans(tok, MaskPolicy())
    for messages, skip in [(PLAIN, ())] + TRICKY:
        assert spans(messages, skip) == trained_char_spans(tok, messages, MaskPolicy(), skip)
    assert not spans.fast


def test_other_trained_roles_are_spanned_by_the_definition():
    tok = tiny_tokenizer()
    policy = MaskPolicy(train_roles=("assistant", "user"))
    spans = TurnSpans(tok, policy)
    assert not spans.fast
    assert spans(PLAIN) == trained_char_spans(tok, PLAIN, policy)


def test_a_batch_whose_checked_conversations_cannot_be_searched_is_spanned_by_the_definition():
    tok = tiny_tokenizer()
    spans = TurnSpans(tok, MaskPolicy())
    unsearched = [turn("user", "Hi"), turn("assistant", "Hello.", reasoning_content="greet")]
    for messages in [unsearched] * CHECKED_PER_BATCH + [PLAIN]:
        assert spans(messages) == trained_char_spans(tok, messages, MaskPolicy())
    assert not spans.fast and spans.agreed == 0


def test_a_direct_render_that_differs_from_apply_chat_template_is_dropped_for_the_batch():
    """As if transformers changed what it passes the template: the checked conversations catch it,
    and every text of the batch is apply_chat_template's again."""
    tok = tiny_tokenizer()
    tok.chat_template = CHAT_TEMPLATES["chatml"]
    spans = TurnSpans(tok, MaskPolicy())
    other = tiny_tokenizer()
    other.chat_template = CHAT_TEMPLATES["chatml"].replace("<|im_start|>", "<|im_start|> ")
    spans.plain_render = PlainRender.of(other)
    for messages, skip in [(PLAIN, ())] * CHECKED_PER_BATCH + TRICKY:
        assert spans(messages, skip) == trained_char_spans(tok, messages, MaskPolicy(), skip), messages
    assert spans.plain_render is None and spans.fast  # the search still ran, on apply_chat_template's texts
