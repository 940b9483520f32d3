"""`hydratune-chat TARGET`: talk to a trained model in the terminal.

    hydratune-chat outputs/runs/2026-11-25_10-00-00            # the run's merged/, template and system prompt
    hydratune-chat outputs/runs/<run>/adapter --temperature 0.7
    hydratune-chat embedded:smollm2-135m-instruct --prompt "What is 12 * 7?"

TARGET is what `hydratune-eval` takes: a run directory, a merged or adapter directory, or
a model name. The reply streams as it is generated; `--prompt` answers once to stdout and
exits. Greedy decoding unless --temperature is above 0. In the interactive chat, `/reset`
starts the conversation over and `/exit` (or Ctrl-D) leaves.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, TextIO

from hydratune.cache_dirs import cache_root as default_cache_root
from hydratune.commands.cli import add_model_source_flags, user_errors_exit
from hydratune.config.problems import ConfigError, Problem
from hydratune.models.chat_templates import stop_token_ids


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hydratune-chat", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "target", help="run dir, merged dir, adapter dir, or a model name (Hub id, local dir, embedded:...)"
    )
    parser.add_argument("--prompt", help="answer this one message to stdout and exit")
    parser.add_argument("--system", help="system prompt (default: the run's dataset.system_prompt, if any)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 (the default) decodes greedily")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="for sampling")
    add_model_source_flags(parser)
    args = parser.parse_args(argv)
    if args.max_new_tokens < 1:
        parser.error(f"--max-new-tokens={args.max_new_tokens}: must be at least 1")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        parser.error("--temperature must be >= 0 and --top-p in (0, 1]")
    return args


class Chat:
    """One conversation with a loaded model: its history, and a reply streamed to `out`."""

    def __init__(
        self,
        target: str,
        model,
        tokenizer,
        *,
        system: Optional[str],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
    ):
        if not tokenizer.chat_template:
            raise ConfigError(
                [
                    Problem(
                        target,
                        "its tokenizer has no chat template",
                        "chat with a run's merged/ or adapter/ (they keep the run's template), "
                        "or train with model.chat_template set",
                    )
                ]
            )
        self.model, self.tokenizer = model.eval(), tokenizer
        self.system = system
        # The reply ends at the template's end-of-turn token, whatever the target's generation config says:
        # only merged/ carries it there, and a base model's EOS alone lets it write the user's next turn.
        self.generation = {
            "max_new_tokens": max_new_tokens,
            "do_sample": temperature > 0,
            "eos_token_id": stop_token_ids(tokenizer),
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            **({"temperature": temperature, "top_p": top_p} if temperature > 0 else {}),
        }
        self.messages: list[dict[str, str]] = []

    def reset(self) -> None:
        self.messages = []

    def reply(self, text: str, out: TextIO) -> str:
        import torch

        self.messages.append({"role": "user", "content": text})
        conversation = ([{"role": "system", "content": self.system}] if self.system else []) + self.messages
        inputs = self.tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        streamer = streamer_to(out, self.tokenizer)
        with torch.no_grad():
            ids = self.model.generate(**inputs, **self.generation, streamer=streamer)
        answer = self.tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        self.messages.append({"role": "assistant", "content": answer})
        return answer


def streamer_to(out: TextIO, tokenizer):
    """transformers' TextStreamer, writing to `out` instead of print()'s stdout."""
    from transformers import TextStreamer

    class ToStream(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            out.write(text + ("\n" if stream_end else ""))
            out.flush()

    return ToStream(tokenizer, skip_prompt=True, skip_special_tokens=True)


def load_chat(args: argparse.Namespace) -> Chat:
    import torch

    # the model stack (torch, transformers, peft): imported once the arguments are checked
    from hydratune.evaluate.targets import resolve_target

    resolved = resolve_target(args.target, default_cache_root(args.cache_dir), trust_remote_code=args.trust_remote_code)
    model, tokenizer = resolved.tuned.load()
    system = (
        args.system if args.system is not None else (resolved.spec.dataset.system_prompt if resolved.spec else None)
    )
    torch.manual_seed(args.seed)
    return Chat(
        args.target,
        model,
        tokenizer,
        system=system,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
    )


def interactive(chat: Chat, stdin: TextIO, stdout: TextIO) -> None:
    stdout.write("hydratune-chat: /reset starts over, /exit or Ctrl-D leaves\n")
    while True:
        stdout.write("\nyou> ")
        stdout.flush()
        line = stdin.readline()
        if not line or line.strip() == "/exit":
            stdout.write("\n")
            return
        text = line.strip()
        if not text:
            continue
        if text == "/reset":
            chat.reset()
            stdout.write("(conversation cleared)\n")
            continue
        stdout.write("model> ")
        chat.reply(text, stdout)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with user_errors_exit():
        chat = load_chat(args)
        if args.prompt is not None:
            chat.reply(args.prompt, sys.stdout)
        else:
            interactive(chat, sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
