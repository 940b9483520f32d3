"""Preprocessing benchmark on GSM8K train: hydratune vs plain `datasets.map(batched=True)`.

    python bench/preprocess_gsm8k.py [--data ../shared/data/gsm8k]

Both sides read the same rows and render them with the same chat template and
tokenizer (the embedded SmolLM2). The baseline tokenizes only (no loss masks, no
packing, no cache); hydratune also computes assistant-only labels, packs rows and
writes verified shards. Each side starts from a cold cache.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def baseline(train_file: Path, tokenizer, cache_dir: str) -> tuple[float, int]:
    import datasets

    start = time.perf_counter()
    ds = datasets.load_dataset("json", data_files=str(train_file), split="train", cache_dir=cache_dir)

    def tokenize(batch):
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False
            )
            for q, a in zip(batch["question"], batch["answer"])
        ]
        return tokenizer(texts, add_special_tokens=False)

    out = ds.map(tokenize, batched=True, remove_columns=ds.column_names)
    tokens = sum(len(ids) for ids in out["input_ids"])
    return time.perf_counter() - start, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k")
    args = parser.parse_args()

    from hydratune.cache_dirs import cache_root
    from hydratune.commands.cli import compose_spec
    from hydratune.data.prepare_data import run_preprocess
    from hydratune.models.model_loading import load_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        spec = compose_spec(
            [
                "+experiment=gsm8k_lora",
                f"dataset.path={args.data}",
                "dataset.max_length=512",
                "dataset.strip_calculator_annotations=false",
                "dataset.eval_split=null",
                "eval=[none]",
                f"run.cache_dir={tmp}/ht",
            ]
        )
        tokenizer = load_tokenizer(spec.model, cache_root())

        base_s, base_tokens = baseline(args.data / "train.jsonl", tokenizer, f"{tmp}/hf")
        start = time.perf_counter()
        cold = run_preprocess(spec, tokenizer=tokenizer)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        hit = run_preprocess(spec, tokenizer=tokenizer)
        hit_s = time.perf_counter() - start
        assert hit.cache_hit and not cold.cache_hit
        tokens = cold.report["train"]["tokens"]
        result = {
            "rows": cold.report["sources"]["train"][0]["rows_read"],
            "datasets_map": {"seconds": base_s, "tokens": base_tokens, "tokens_per_second": base_tokens / base_s},
            "hydratune_cold": {
                "seconds": cold_s,
                "tokens": tokens,
                "tokens_per_second": tokens / cold_s,
                "packing_efficiency": cold.manifest["packing"]["train"]["efficiency"],
            },
            "hydratune_cache_hit": {"seconds": hit_s},
            "speed_ratio_cold": (tokens / cold_s) / (base_tokens / base_s),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
