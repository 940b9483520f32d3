"""Generation throughput on GSM8K test problems: hydratune's batched decoding vs a plain loop.

    python bench/generation_gsm8k.py [--problems 64] [--max-new-tokens 256]

Both sides: the embedded SmolLM2-135M-Instruct, fp32 on the CPU, greedy, the same chat
prompts, stopping at <|im_end|>. The peer calls `model.generate` once per problem (the
loop most evaluation scripts write); hydratune sorts prompts by length, left-pads them
into batches and stops each sequence at its end-of-turn token.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k")
    args = parser.parse_args()

    from hydratune.cache_dirs import cache_root
    from hydratune.config.spec import ModelSpec
    from hydratune.evaluate.generate import generate_hf
    from hydratune.evaluate.tasks.gsm8k import Gsm8kTaskSpec, build_prompt, load_problems, score
    from hydratune.models.chat_templates import stop_token_ids
    from hydratune.models.model_loading import load_base_model, load_tokenizer

    model_spec = ModelSpec(name="embedded:smollm2-135m-instruct")
    root = cache_root()
    tokenizer = load_tokenizer(model_spec, root)
    model = load_base_model(model_spec, root, dtype=torch.float32, attn_implementation="sdpa").eval()
    problems = load_problems(Gsm8kTaskSpec(path=str(args.data), max_samples=args.problems), root)
    conversations = [build_prompt(p, [], None) for p in problems]

    start = time.perf_counter()
    loop_texts = []
    with torch.no_grad():
        for conversation in conversations:
            inputs = tokenizer.apply_chat_template(
                conversation, add_generation_prompt=True, return_dict=True, return_tensors="pt"
            )
            out = model.generate(
                **inputs, max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=stop_token_ids(tokenizer)
            )
            loop_texts.append(
                tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
            )
    loop_seconds = time.perf_counter() - start

    batched = generate_hf(
        model, tokenizer, conversations, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size
    )

    def accuracy(texts):
        return sum(score(t, p)["strict_accuracy"] for t, p in zip(texts, problems)) / len(problems)

    print(
        json.dumps(
            {
                "problems": len(problems),
                "max_new_tokens": args.max_new_tokens,
                "one_at_a_time": {
                    "seconds": loop_seconds,
                    "problems_per_second": len(problems) / loop_seconds,
                    "strict_accuracy": accuracy(loop_texts),
                },
                "hydratune_batched": {
                    "seconds": batched.seconds,
                    "problems_per_second": batched.per_second,
                    "batch_size": args.batch_size,
                    "strict_accuracy": accuracy(batched.texts),
                },
                "speedup": loop_seconds / batched.seconds,
                "identical_replies": sum(a == b for a, b in zip(loop_texts, batched.texts)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
