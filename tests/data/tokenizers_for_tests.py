"""A tiny word-level tokenizer with the ChatML template, built in memory (no files, no network)."""

from __future__ import annotations

from hydratune.models.chat_templates import CHAT_TEMPLATES

WORDS = [
    "<unk>",
    "<|im_start|>",
    "<|im_end|>",
    "system",
    "user",
    "assistant",
    "What",
    "is",
    "2",
    "+",
    "3",
    "?",
    "5",
    "It",
    "Be",
    "brief",
    ".",
    "And",
    "times",
    "6",
    "Add",
    "numbers",
    "Hi",
    "Hello",
]
VOCAB = {w: i for i, w in enumerate(WORDS)}


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(VOCAB, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>", pad_token="<|im_end|>"
    )
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tok.chat_template = CHAT_TEMPLATES["chatml"]
    return tok
