"""Two real processes (gloo, CPU) per run, self-launched by `train` under torchrun."""

from __future__ import annotations

import pytest

from .runs import (
    assert_loss_falls,
    assert_merged_is_the_trained_model,
    assert_merged_loads_and_generates,
    free_port,
    losses,
    record,
    train,
)
from .test_sharded_post_training import GRPO_CELLS, PREFERENCE

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

STEPS = ["train.max_steps=10", "optim.warmup_ratio=0"]


# Every "yes" cell of the README's support matrix, and every shipped sharding preset that runs on one
# machine, at least once: (method, sharding preset, learning rate, extra overrides).
# lora + ddp runs in the DDP-equals-single, resume and process tests below and beside; full + the
# plain `fsdp` and `deepspeed_zero3` presets in examples/multi_gpu, whose test checks their exports
# the same way (full FSDP2 here under its offload and hybrid presets).
MATRIX = [
    ("full", "ddp", "3e-3", []),
    ("qlora", "ddp", "1e-2", []),
    ("lora", "fsdp", "1e-2", []),
    ("full", "fsdp_offload", "3e-3", []),
    ("lora", "fsdp_shard_grad_op", "1e-2", []),
    ("full", "fsdp_hybrid", "3e-3", ["sharding.nnodes=1", "sharding.nproc_per_node=4", "sharding.fsdp.replicas=2"]),
    ("lora", "deepspeed_zero1", "1e-2", []),
    ("lora", "deepspeed_zero2", "1e-2", []),
    ("lora", "deepspeed_zero3_offload", "1e-2", []),
]


# Cells whose last checkpoint is exported too: FSDP2 saves checkpoints sharded, ZeRO-3 gathered.
CHECKPOINT_EXPORTS = {("lora", "fsdp"), ("full", "fsdp_offload"), ("lora", "deepspeed_zero3_offload")}


@pytest.mark.parametrize("method,sharding,lr,extra", MATRIX, ids=[f"{m}-{s}" for m, s, _, _ in MATRIX])
def test_multi_process_run(method, sharding, lr, extra, tmp_path):
    saves = ["train.save_steps=10"] if (method, sharding) in CHECKPOINT_EXPORTS else []
    train(tmp_path, f"method={method}", f"sharding={sharding}", f"optim.learning_rate={lr}", *STEPS, *extra, *saves)
    rec = record(tmp_path)
    assert rec["world_size"] == (4 if sharding == "fsdp_hybrid" else 2)
    assert_loss_falls(tmp_path)
    assert_merged_loads_and_generates(tmp_path)
    # FSDP2 gathers and ZeRO-3 consolidates the shards at save: what they export must be what trained
    assert_merged_is_the_trained_model(tmp_path, quantized=method == "qlora")
    if saves:
        assert_the_last_checkpoint_exports_the_trained_weights(tmp_path)


def assert_the_last_checkpoint_exports_the_trained_weights(run_dir) -> None:
    """The checkpoint at the last step holds the weights that trained, whatever the strategy wrote:
    exported through the console script (from another working directory), merged/ is the run's own."""
    from safetensors.torch import load_file

    from .runs import command

    trained = load_file(run_dir / "merged" / "model.safetensors")
    out = command("hydratune-export", str(run_dir / "checkpoints" / "checkpoint-10"), cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    exported = load_file(run_dir / "merged" / "model.safetensors")
    assert exported.keys() == trained.keys()
    assert max(float((exported[k] - trained[k]).abs().max()) for k in trained) < 1e-6


@pytest.mark.parametrize("sharding", ["fsdp", "deepspeed_zero3"])
def test_chunked_loss_under_sharding_equals_the_plain_loss(sharding, tmp_path):
    """The head's weight is sharded under FSDP2 and ZeRO-3; the chunked loss runs inside the head's
    call, where the strategy gathers it: full weights (the head trains too), the same losses, and
    after 3 steps the same weights."""
    from safetensors.torch import load_file

    common = ["method=full", f"sharding={sharding}", "optim.learning_rate=3e-3", "train.max_steps=3"]
    for kernel in ("chunked", "plain"):
        train(tmp_path / kernel, *common, f"train.loss_kernel={kernel}", "optim.warmup_ratio=0")
        assert record(tmp_path / kernel)["plan"]["memory"]["chunked_loss"] == (kernel == "chunked")
    assert losses(tmp_path / "chunked") == pytest.approx(losses(tmp_path / "plain"), abs=1e-5)
    chunked, plain = (load_file(tmp_path / k / "merged" / "model.safetensors") for k in ("chunked", "plain"))
    assert max(float((chunked[k] - plain[k]).abs().max()) for k in plain) < 1e-4


def test_matrix_covers_every_supported_cell():
    from hydratune.training.support_matrix import SUPPORT_MATRIX, supported

    presets = {
        "ddp": "ddp",
        "fsdp": "fsdp",
        "fsdp_offload": "fsdp",
        "fsdp_shard_grad_op": "fsdp",
        "fsdp_hybrid": "fsdp",
        "deepspeed_zero1": "deepspeed",
        "deepspeed_zero2": "deepspeed",
        "deepspeed_zero3": "deepspeed",
        "deepspeed_zero3_offload": "deepspeed",
    }
    covered = {(m, presets[s]) for m, s, _, _ in MATRIX}
    covered.add(("lora", "ddp"))  # test_ddp_matches_single_process_with_same_global_batch, test_resume, test_processes
    covered |= {("full", "fsdp"), ("full", "deepspeed")}  # examples/multi_gpu (test_examples.check_multi_gpu)
    covered |= {("dpo", "ddp"), ("kto", "ddp"), ("grpo", "ddp")}  # test_post_training
    for _, overrides, strategies in PREFERENCE:  # test_sharded_post_training
        rows = [o.split("=", 1)[1] for o in overrides if o.startswith(("method=", "method.weights="))]
        assert len(rows) == 2
        covered |= {(row, presets[s]) for s in strategies for row in rows}
    covered |= {(row, presets[s]) for weights, s in GRPO_CELLS for row in ("grpo", weights)}
    wanted = {(m, s) for m, row in SUPPORT_MATRIX.items() for s in row if s != "single" and supported(m, s)}
    assert wanted <= covered


def test_ddp_matches_single_process_with_same_global_batch(tmp_path):
    common = [
        "train.data_order=sequential",
        "optim.learning_rate=1e-2",
        "train.max_steps=6",
        "method.lora.dropout=0",
        "optim.warmup_ratio=0",
    ]
    train(tmp_path / "single", *common, "train.micro_batch_size=4")
    train(tmp_path / "ddp", *common, "sharding=ddp", "train.micro_batch_size=2")
    single, ddp = losses(tmp_path / "single"), losses(tmp_path / "ddp")
    # Same rows per optimizer step (4), loss averaged over the step's supervised tokens on
    # both sides: only float summation order differs.
    assert single == pytest.approx(ddp, rel=1e-4), (single, ddp)


def test_two_nodes_on_localhost_through_a_rendezvous_endpoint(tmp_path):
    import os
    import subprocess
    import sys

    from ..conftest import REPO
    from .runs import TINY

    endpoint = f"127.0.0.1:{free_port()}"
    run = tmp_path / "run"  # one directory for both nodes, as on a shared filesystem

    def node(rank: int) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hydratune.commands.train",
                *TINY,
                "sharding=ddp",
                "sharding.nproc_per_node=1",
                "sharding.nnodes=2",
                f"sharding.node_rank={rank}",
                f"sharding.rdzv_endpoint={endpoint}",
                "sharding.rendezvous_timeout=300",
                *STEPS,
                f"hydra.run.dir={run}",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, OMP_NUM_THREADS="1"),
        )

    # Node 1 first, until it waits for node 0: whatever it wrote by then must not make node 0
    # take the directory for an earlier run's.
    second = node(1)
    seen = []
    for line in second.stdout:
        seen.append(line)
        if "waiting for node 0" in line:
            break
    first = node(0)
    procs = [first, second]
    outputs = [first.communicate(timeout=600)[0], "".join(seen) + second.communicate(timeout=600)[0]]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    assert record(run)["world_size"] == 2
