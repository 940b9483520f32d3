"""The bytes a run writes into its run directory, from the plan's sizes, checked against the free space.

Checked before preprocessing or training writes anything, so that a disk too small is refused
(exit 2) with the space needed, instead of a write failing at export, an hour in. At the run's end
everything below lies in the run directory at once:

- checkpoints: each holds the trained weights (the adapter, or the whole model in fp32), the
  optimizer's state (AdamW: two fp32 moments per trainable parameter; 8-bit: two bytes; DeepSpeed
  adds its fp32 copy) and the tokenizer. MarkCompleteCheckpoints prunes to train.save_total_limit
  only after the newest is marked, so one more than the limit exists at a time;
- adapter/ (or trained/): the weights and the tokenizer;
- merged/: every parameter in the saved dtype (bf16 after a bf16 run, fp32 otherwise) and the
  tokenizer;
- records: logs, run.json, plan.json, eval/, curves, TensorBoard events.

The tokenizer's files are sized from its vocabulary, rounded up: a BPE tokenizer.json (vocabulary
and merges) takes about 72 bytes per entry (SmolLM2's: 3,522,871 bytes for 49,152 entries), and
its config and special-token files a little more.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import RunSpec
from hydratune.disk_space import free_bytes, human_bytes
from hydratune.run_layout import RunDirectory

TOKENIZER_BYTES_PER_ENTRY = 80
RECORDS_BYTES = 1 << 20
CHECKPOINT_EXTRA_BYTES = 64 << 10  # trainer state, scheduler, RNG states, training arguments


@dataclass(frozen=True)
class DiskEstimate:
    checkpoints: int
    checkpoints_kept: int
    weights: int  # adapter/ or trained/
    merged: int
    records: int

    @property
    def total(self) -> int:
        return self.checkpoints + self.weights + self.merged + self.records

    def to_dict(self) -> dict:
        return asdict(self) | {"total": self.total}

    def parts(self) -> str:
        return (
            f"merged/ {human_bytes(self.merged)}, trained weights {human_bytes(self.weights)}, "
            f"{self.checkpoints_kept} checkpoint(s) {human_bytes(self.checkpoints)}, "
            f"records {human_bytes(self.records)}"
        )


def estimate_disk(spec: RunSpec, plan) -> DiskEstimate:
    """Bytes the run leaves in its run directory at its end (when the most lies there at once)."""
    shape = plan.shape
    tokenizer = TOKENIZER_BYTES_PER_ENTRY * shape.vocab_size
    full = spec.method.weights == "full"
    weights = 4 * (shape.total_params if full else shape.lora_params)
    per_trainable = 2 if spec.optim.name == "adamw_8bit" else 8
    if spec.sharding.strategy == "deepspeed":
        per_trainable += 4  # DeepSpeed's own fp32 copy of what trains, saved beside the optimizer state
    checkpoint = weights + per_trainable * plan.trainable_params + tokenizer + CHECKPOINT_EXTRA_BYTES
    kept = checkpoints_kept(spec)
    merged_bytes = 2 if plan.precision == "bf16" else 4
    return DiskEstimate(
        checkpoints=kept * checkpoint,
        checkpoints_kept=kept,
        weights=weights + tokenizer,
        merged=merged_bytes * shape.total_params + tokenizer,
        records=RECORDS_BYTES,
    )


def checkpoints_kept(spec: RunSpec) -> int:
    """The most checkpoints on disk at once: none without train.save_steps; else one more than
    train.save_total_limit, or as many as the step budget makes (the Trainer also saves at the end)."""
    t = spec.train
    if not t.save_steps:
        return 0
    most = t.save_total_limit + 1
    return most if t.max_steps is None else min(most, math.ceil(t.max_steps / t.save_steps))


def _bytes_under(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else 0


def check_disk_space(spec: RunSpec, estimate: DiskEstimate, run_dir: Path) -> None:
    """ConfigError (exit 2) when the run's estimate does not fit in the free space where it writes. A run
    continued (train.resume) already holds its checkpoints and trained weights, which it writes over or
    prunes: they count as free up to the estimate's share (merged/ is rewritten beside the old one)."""
    free = free_bytes(run_dir)
    layout = RunDirectory(run_dir)
    held = sum(_bytes_under(d) for d in (layout.checkpoints, layout.weights(spec.method.weights)))
    reused = min(held, estimate.checkpoints + estimate.weights)
    free_text = f"{human_bytes(free)} free" + (f", {human_bytes(reused)} it holds already" if reused else "")
    if estimate.total <= free + reused:
        print(f"disk         about {human_bytes(estimate.total)} into {run_dir} ({free_text})", flush=True)
        return
    fewer = ""
    if estimate.checkpoints_kept:
        limit = "train.save_total_limit=1, " if spec.train.save_total_limit > 1 else ""
        fewer = f"; or keep fewer checkpoints ({limit}train.save_steps=null to save none)"
    raise ConfigError(
        [
            Problem(
                f"hydra.run.dir={run_dir}",
                f"the run needs about {human_bytes(estimate.total)} there ({estimate.parts()}), {free_text}",
                f"free space on that disk, or set hydra.run.dir=<a directory on a bigger disk>{fewer}",
            )
        ]
    )
