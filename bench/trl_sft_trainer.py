"""The peer: TRL's SFTTrainer as a user would set it up for this job, in its best configuration.

Same model, data, LoRA and batch as train_throughput.py: prompt-completion rows (so the loss
is on completions only), packing with TRL's best-fit-decreasing strategy, gradient
checkpointing off (faster than its default on; more memory). `padded` turns packing off.
Prints each step's real tokens and duration as JSON. Used by train_throughput.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run by path (runpy): step_clock beside it
from step_clock import StepClock  # noqa: E402


def main(model_dir: str, train_file: str, steps: int, out_dir: str, max_length: int, variant: str, gpu: bool) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=torch.bfloat16 if gpu else torch.float32,
        attn_implementation="flash_attention_2" if "flash_attention_2" in sys.argv else "sdpa",
    )
    rows = load_dataset("json", data_files=train_file, split="train")
    rows = rows.map(
        lambda r: {
            "prompt": [{"role": "user", "content": r["question"]}],
            "completion": [{"role": "assistant", "content": r["answer"]}],
        },
        remove_columns=rows.column_names,
    )

    real_tokens: list[int] = []

    def count(module, args, kwargs):
        if not module.training:
            return
        mask = kwargs.get("attention_mask")
        real_tokens.append(
            int(mask.sum()) if mask is not None else int(kwargs["input_ids"].numel())
        )  # padding-free: no pads

    clock = StepClock()  # synchronized with the GPU, as every side's

    config = SFTConfig(
        output_dir=out_dir,
        per_device_train_batch_size=4,
        max_steps=steps,
        learning_rate=2e-4,
        logging_steps=1,
        report_to=[],
        use_cpu=not gpu,
        bf16=gpu,
        save_strategy="no",
        seed=42,
        max_length=max_length,
        packing=variant == "packed",
        gradient_checkpointing=False,
        completion_only_loss=True,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=rows,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
        callbacks=[clock],
    )
    trainer.model.register_forward_pre_hook(count, with_kwargs=True)
    trainer.train()
    durations = clock.durations()
    print("BENCH_RESULT " + json.dumps({"step_tokens": real_tokens[:steps], "step_seconds": durations}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6], "gpu" in sys.argv[7:])
