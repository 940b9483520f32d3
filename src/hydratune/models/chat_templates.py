"""Named chat templates for base models whose tokenizer has none (`model.chat_template`)."""

from __future__ import annotations

CHAT_TEMPLATES: dict[str, str] = {
    # ChatML, as used by SmolLM2, Qwen2.5 and many others.
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    # Llama 3 instruct format.
    "llama3": (
        "{{ bos_token }}{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
}


END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>")


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus the end-of-turn tokens this tokenizer knows: generation stops at any of them."""
    stops = {tokenizer.eos_token_id}
    for token in END_OF_TURN_TOKENS:
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            stops.add(tid)
    stops.discard(None)
    return sorted(stops)
