"""Chat templates: `model.chat_template` picks the tokenizer's own (null), a named one, a
`.jinja` file or the Jinja text itself; and the check that a template can be masked."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

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
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' "
        "+ message['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
}


def is_jinja_text(choice: str) -> bool:
    return "{{" in choice or "{%" in choice


def shown_choice(choice: Optional[str]) -> str:
    """`model.chat_template=...` as an error names it: Jinja text is cut short."""
    shown = "null" if choice is None else choice if len(choice) <= 60 else choice[:57] + "..."
    return f"model.chat_template={shown}"


def template_source(choice: Optional[str]) -> Optional[str]:
    """The Jinja text `model.chat_template` stands for, or None for the tokenizer's own.
    Validation has already refused a choice that is none of a name, a file or Jinja text."""
    if choice is None:
        return None
    if choice in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[choice]
    if is_jinja_text(choice):
        return choice
    return Path(choice).expanduser().read_text()


def template_problem(choice: str) -> Optional[str]:
    """Why `choice` is no usable template (None when it is): not a name, file or Jinja text,
    or Jinja that does not compile."""
    if choice in CHAT_TEMPLATES:
        return None
    if is_jinja_text(choice):
        text = choice
    else:
        path = Path(choice).expanduser()
        if not path.is_file():
            return "not a template name, a .jinja file, or Jinja text"
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            return f"the file cannot be read as text ({exc})"
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        ImmutableSandboxedEnvironment().parse(text)
    except TemplateSyntaxError as exc:
        return f"the Jinja does not compile: {exc.message} (line {exc.lineno})"
    return None


# A conversation each template is rendered on before any row is tokenized.
PROBE = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "5"},
    {"role": "user", "content": "And 2 * 3?"},
    {"role": "assistant", "content": "6"},
]


def masking_break(tokenizer) -> Optional[str]:
    """Where the tokenizer's template stops rendering each turn after the ones before it
    (masking finds a turn's tokens by rendering the conversation up to it), or None.
    Probed with a system turn, and without one if the template refuses system turns."""
    from jinja2 import TemplateError

    try:
        return _first_break(tokenizer, PROBE)
    except TemplateError:
        return _first_break(tokenizer, PROBE[1:])


def _first_break(tokenizer, messages: list[dict]) -> Optional[str]:
    def render(turns, generation_prompt=False) -> str:
        return (
            tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=generation_prompt)
            if turns
            else ""
        )

    whole = render(messages)
    for i, message in enumerate(messages):
        before = render(messages[:i], generation_prompt=message["role"] == "assistant")
        through = render(messages[: i + 1])
        if not through.startswith(before):
            turn, became = f"turn {i + 1} ({message['role']})", through[: len(before)][-60:]
            return f"{turn} changes the text rendered before it: {before[-60:]!r} became {became!r}"
        if not whole.startswith(through):
            return f"turn {i + 1} ({message['role']}) renders differently once later turns follow it: {through[-60:]!r}"
    return None


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
