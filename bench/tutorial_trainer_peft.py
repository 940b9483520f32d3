"""The peer: a hand-written HF Trainer + PEFT script of the kind tutorials teach.

Padded batches (DataCollatorForLanguageModeling), every token trained, no packing.
Prints real (non-pad) tokens/s over steps 2..N as JSON. Used by train_throughput.py.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from datasets import load_dataset
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForLanguageModeling, Trainer,
                          TrainerCallback, TrainingArguments)


def main(model_dir: str, train_file: str, steps: int, out_dir: str) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"))

    ds = load_dataset("json", data_files=train_file, split="train")

    def tokenize(batch):
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False)
                 for q, a in zip(batch["question"], batch["answer"])]
        return tokenizer(texts, truncation=True, max_length=512)

    ds = ds.map(tokenize, batched=True, remove_columns=ds.column_names)

    real_tokens = []  # non-pad tokens of each training forward

    def count(module, args, kwargs):
        if module.training and kwargs.get("attention_mask") is not None:
            real_tokens.append(int(kwargs["attention_mask"].sum()))

    model.register_forward_pre_hook(count, with_kwargs=True)
    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    args = TrainingArguments(output_dir=out_dir, per_device_train_batch_size=4, max_steps=steps, learning_rate=2e-4,
                             logging_steps=1, report_to=[], use_cpu=True, save_strategy="no", seed=42)
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
                      callbacks=[Clock()])
    trainer.train()
    tokens = sum(real_tokens[1:steps])
    print("BENCH_RESULT " + json.dumps({"tokens_per_second": tokens / (stamps[-1] - stamps[0]), "steps_timed": steps - 1}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
