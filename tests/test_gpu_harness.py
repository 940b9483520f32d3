"""bench/gpu_harness.py on this CPU: its kit is written, every GPU part is skipped and named in
its JSON, the commands it would run validate on a GPU machine, and the kit's model trains."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO, cpu_env
from .training.runs import train

GPU = {"cuda": True, "cuda_bf16": True, "gpu_count": 1}
PARTS = ["quickstart", "gsm8k_qlora", "training_bench", "grpo_vllm"]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    kit = tmp_path_factory.mktemp("kit")
    harness = [sys.executable, str(REPO / "bench" / "gpu_harness.py")]
    done = subprocess.run([*harness, "--prepare", str(kit)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return kit


def harness_parts(kit):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from gpu_harness import parts

        return parts(kit)
    finally:
        sys.path.remove(str(REPO / "bench"))


def test_without_cuda_every_part_is_skipped_and_named(kit, tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_harness.py"), "--kit", str(kit), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["device"].startswith("no CUDA device")
    assert [p["name"] for p in results["parts"]] == PARTS
    assert all(p["status"] == "skipped" and p["why"] == "no CUDA device" for p in results["parts"])
    assert (kit / "smollm2" / "tokenizer.json").is_file() and not list(kit.glob("smollm2/*.safetensors"))
    assert sum(1 for _ in open(kit / "gsm8k" / "test.jsonl")) == 200


def test_the_commands_it_runs_validate_on_a_gpu_machine(kit):
    from hydratune.commands.cli import compose_spec

    for part in harness_parts(kit):
        if part["reads"] != "run":
            continue
        overrides = part["command"][3:]  # after `python -m hydratune.commands.train`
        spec = compose_spec(overrides, env=cpu_env(**GPU, packages=cpu_env().packages | {"vllm"}))
        assert spec.model.random_init and spec.train.precision == "auto", part["name"]
    qlora = compose_spec(harness_parts(kit)[1]["command"][3:], env=cpu_env(**GPU))
    assert qlora.model.config_overrides["hidden_size"] == 2048 and qlora.method.weights == "qlora"


@pytest.mark.slow
def test_the_kits_model_trains_here(kit, tmp_path):
    """The parts' model folder (SmolLM2's config and tokenizer, random weights), at tiny_llama's size."""
    train(tmp_path, f"model.name={kit / 'smollm2'}", "model.random_init=true", "train.max_steps=2", "eval=[none]")
    assert (tmp_path / "merged" / "config.json").is_file()
