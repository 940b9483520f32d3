"""GRPO's sampling alone: one `generate` of a step's completions as TRL calls it (every prompt
repeated per completion, the LoRA branch beside each adapted linear) against the same call
through hydratune's fast_sampling (one prompt pass per group, the adapter folded in), in one
process, alternating, on the same adapted model.

    python bench/grpo_sampling.py [--start outputs/quickstart] [--repeats 3]

The prompts are the experiment's first training questions, rendered with the chat template;
the completions run to max_completion_length (no early stop) so both sides decode as many
tokens. Without `--start` the quickstart is trained first (about 8 minutes here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from grpo_step import quickstart, shared_settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=Path, help="the run GRPO starts from (default: train the quickstart)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.start or quickstart(Path(tmp) / "quickstart"), args.repeats)
    for side, median in result["median_seconds"].items():
        print(f"{side:<12} {median:6.2f} s for {result['completions']} completions of {result['new_tokens']} tokens")
    print(f"hydratune: {result['speedup']:.2f}x")
    print(json.dumps(result, indent=2))


def measure(start: Path, repeats: int) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hydratune.data.synthetic_arithmetic import generated_split_file
    from hydratune.training.fast_sampling import can_fold_adapter, fast_sampling

    settings = shared_settings(start)
    groups = settings["completions_per_step"] // settings["num_generations"]
    rank, alpha, dropout = settings["lora"]
    tokenizer = AutoTokenizer.from_pretrained(start / "merged", padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(start / "merged", dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear")
    )
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # a trained adapter, not peft's zero start (which changes nothing)
            torch.nn.init.normal_(param, std=1e-3)
    model.eval()

    rows = Path(generated_split_file("arithmetic", "train", None)).read_text().splitlines()[:groups]
    questions = [json.loads(row)["question"] for row in rows]
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids = encoded.input_ids.repeat_interleave(settings["num_generations"], dim=0)
    mask = encoded.attention_mask.repeat_interleave(settings["num_generations"], dim=0)
    length = settings["max_completion_length"]
    options = dict(
        do_sample=True,
        temperature=settings["temperature"],
        max_new_tokens=length,
        min_new_tokens=length,
        pad_token_id=tokenizer.pad_token_id,
    )

    def timed() -> float:
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=ids, attention_mask=mask, **options)
        return time.perf_counter() - start

    timed()  # warm-up: first-call allocations
    seconds: dict[str, list[float]] = {"TRL's call": [], "hydratune": []}
    for _ in range(repeats):
        seconds["TRL's call"].append(timed())
        with fast_sampling(model, fold_adapter=can_fold_adapter(model)):
            seconds["hydratune"].append(timed())
    medians = {side: statistics.median(times) for side, times in seconds.items()}
    return {
        "completions": len(ids),
        "prompts": groups,
        "new_tokens": length,
        "seconds": seconds,
        "median_seconds": medians,
        "speedup": medians["TRL's call"] / medians["hydratune"],
    }


if __name__ == "__main__":
    main()
