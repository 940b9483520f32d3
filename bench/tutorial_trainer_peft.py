"""The peer: a hand-written HF Trainer + PEFT script of the kind tutorials teach.

Padded batches (DataCollatorForLanguageModeling), every token trained, no packing.
Prints each step's real (non-pad) tokens and duration as JSON. Used by train_throughput.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run by path (runpy): step_clock beside it
from step_clock import StepClock  # noqa: E402


def main(model_dir: str, train_file: str, steps: int, out_dir: str, max_length: int, gpu: bool) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=torch.bfloat16 if gpu else torch.float32,
        attn_implementation="flash_attention_2" if "flash_attention_2" in sys.argv else "sdpa",
    )
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    )

    ds = load_dataset("json", data_files=train_file, split="train")

    def tokenize(batch):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False
            )
            for q, a in zip(batch["question"], batch["answer"])
        ]
        return tokenizer(texts, truncation=True, max_length=max_length)

    ds = ds.map(tokenize, batched=True, remove_columns=ds.column_names)

    real_tokens, computed_tokens = [], []  # non-pad tokens, and all positions, of each training forward

    def count(module, args, kwargs):
        if module.training and kwargs.get("attention_mask") is not None:
            real_tokens.append(int(kwargs["attention_mask"].sum()))
            computed_tokens.append(int(kwargs["attention_mask"].numel()))

    model.register_forward_pre_hook(count, with_kwargs=True)
    clock = StepClock()  # synchronized with the GPU, as every side's

    args = TrainingArguments(
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
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ds,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[clock],
    )
    trainer.train()
    durations = clock.durations()
    print(
        "BENCH_RESULT "
        + json.dumps(
            {
                "step_tokens": real_tokens[:steps],
                "step_seconds": durations,
                "step_computed_tokens": computed_tokens[:steps],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), "gpu" in sys.argv[6:])
