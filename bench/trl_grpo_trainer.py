"""The peer: a plain TRL GRPOTrainer script, as a user would write it for the arithmetic GRPO job.

Same start model, LoRA (rank 8, alpha 16, all linear layers, no dropout), prompts (the generated
arithmetic training questions as one user turn), group size, completion length, temperature,
beta, loss and reward (the number after `####` equals the reference's) as
`train +experiment=arithmetic_grpo`. Prints the steps, TRL's train_runtime, each step's
seconds on the synchronized clock (step_clock.py) and the groups trained on whose rewards
differed, as JSON.
Used by grpo_step.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run by path (runpy): step_clock beside it
from step_clock import StepClock  # noqa: E402

FINAL = re.compile(r"####\s*\$?\s*(-?[\d,]*\.?\d+)")


def number(text: str) -> float | None:
    match = FINAL.search(text)
    try:
        return float(match.group(1).replace(",", "")) if match else None
    except ValueError:
        return None


def correct(completions, answer, **_):
    return [
        float(number(c[0]["content"]) is not None and number(c[0]["content"]) == number(a))
        for c, a in zip(completions, answer)
    ]


def main(model_dir: str, train_file: str, steps: int, out_dir: str, settings: dict) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    rows = load_dataset("json", data_files=train_file, split="train")
    rows = rows.map(
        lambda r: {"prompt": [{"role": "user", "content": r["question"]}], "answer": r["answer"]},
        remove_columns=rows.column_names,
    )
    config = GRPOConfig(
        output_dir=out_dir,
        max_steps=steps,
        per_device_train_batch_size=settings["completions_per_step"],
        num_generations=settings["num_generations"],
        max_completion_length=settings["max_completion_length"],
        temperature=settings["temperature"],
        beta=settings["beta"],
        loss_type=settings["loss_type"],
        learning_rate=settings["learning_rate"],
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=settings["seed"],
        use_cpu=True,
        gradient_checkpointing=False,
        bf16=False,
    )
    clock = StepClock()  # synchronized with the GPU, as every side's
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[correct],
        args=config,
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
        callbacks=[clock],
    )
    result = trainer.train()
    timed = {"train_runtime": result.metrics["train_runtime"], "step_seconds": clock.durations()}
    # the groups each step trained on whose rewards differed (the rest had zero advantage)
    groups = settings["completions_per_step"] // settings["num_generations"]
    spread = [
        groups * (1 - e["frac_reward_zero_std"]) for e in trainer.state.log_history if "frac_reward_zero_std" in e
    ]
    print("RESULT " + json.dumps({"steps": result.global_step, **timed, "groups_with_spread": round(sum(spread))}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5]))
