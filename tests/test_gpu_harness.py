"""bench/gpu_harness.py rehearsed on this CPU: its kit is written, preflight runs (versions,
imports, SDPA backends, attention parity on a packed batch), every CUDA part is skipped and named
in its JSON, the commands it would run validate on a GPU machine, a part past its time is killed
with its whole process group, the kit carries what the parts need, and the kit's model trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, cpu_env
from .training.runs import train

GPU = {"cuda": True, "cuda_bf16": True, "gpu_count": 1}
PARTS = ["preflight", "lora_bf16", "qlora_memory", "full_memory", "compile", "grpo", "grpo_vllm"]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    kit = tmp_path_factory.mktemp("kit")
    harness = [sys.executable, str(REPO / "bench" / "gpu_harness.py")]
    done = subprocess.run([*harness, "--prepare", str(kit)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return kit


def harness():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu_harness

        return gpu_harness
    finally:
        sys.path.remove(str(REPO / "bench"))


def harness_parts(kit):
    return harness().parts(kit)


def test_without_cuda_preflight_runs_and_every_cuda_part_is_skipped_and_named(kit, tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_harness.py"), "--kit", str(kit), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["cuda"] is False
    assert [p["name"] for p in results["parts"]] == PARTS
    preflight, *cuda_parts = results["parts"]
    assert all(p["status"] == "skipped" and p["why"] == "no CUDA device" for p in cuda_parts)
    assert preflight["status"] == "ran", preflight.get("output_tail")
    found = preflight["result"]
    assert found["versions"]["torch"] and found["versions"]["transformers"] and found["cuda"] is False
    assert found["imports"]["transformers"] == "ok" and found["imports"]["hydratune.commands.train"] == "ok"
    assert found["sdpa_backends"]["FLASH_ATTENTION"] == "runs"  # SDPA's flash kernel has a CPU build
    parity = found["packed_parity"]
    assert parity["dtype"] == "float32" and parity["agrees"], parity
    assert max(parity["max_abs_logit_gap_vs_each_sequence_alone"].values()) <= 1e-4
    assert (kit / "smollm2" / "tokenizer.json").is_file() and not list(kit.glob("smollm2/*.safetensors"))
    assert sum(1 for _ in open(kit / "gsm8k" / "test.jsonl")) == 200


def test_a_part_past_its_time_is_killed_with_its_process_group(tmp_path):
    """The part's child (a rank, a compile worker) goes down with it, not only the process started."""
    child = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(child)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    code, _, seconds = harness().run_command([sys.executable, "-c", script], 3, dict(os.environ))
    assert code is None and seconds < 30
    pid = int(child.read_text())
    time.sleep(0.5)
    assert not alive(pid), f"the part's child {pid} outlived the part"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"  # a zombie has ended


def test_the_kit_carries_every_package_the_parts_need(kit):
    gpu_harness = harness()
    needed = {p for part in gpu_harness.parts(kit) for p in part["needs"]}
    assert needed - gpu_harness.carried_packages() <= set(gpu_harness.NOT_CARRIED), needed
    command = gpu_harness.fetch_wheels_command()
    assert command[1].endswith("shared/gpu/fetch-wheels.sh") and {"qlora", "trl==1.16.0"} <= set(command[2:])


def test_the_commands_it_runs_validate_on_a_gpu_machine(kit):
    from hydratune.commands.cli import compose_spec

    for part in harness_parts(kit):
        if part["reads"] != "run":
            continue
        overrides = part["command"][3:]  # after `python -m hydratune.commands.train`
        spec = compose_spec(overrides, env=cpu_env(**GPU, packages=cpu_env().packages | {"vllm"}))
        assert spec.model.random_init and spec.train.precision == "auto", part["name"]
    by_name = {part["name"]: part for part in harness_parts(kit)}
    qlora = compose_spec(by_name["qlora_memory"]["command"][3:], env=cpu_env(**GPU))
    assert qlora.model.config_overrides["hidden_size"] == 2048 and qlora.method.weights == "qlora"
    full = compose_spec(by_name["full_memory"]["command"][3:], env=cpu_env(**GPU))
    assert full.method.weights == "full" and full.model.config_overrides["num_hidden_layers"] == 16
    lora = compose_spec(by_name["lora_bf16"]["command"][3:], env=cpu_env(**GPU))
    assert lora.model.attn_implementation == "auto" and lora.train.compile != "layers"
    assert compose_spec(by_name["compile"]["command"][3:], env=cpu_env(**GPU)).train.compile == "layers"


@pytest.mark.slow
def test_the_kits_model_trains_here(kit, tmp_path):
    """The parts' model folder (SmolLM2's config and tokenizer, random weights), at tiny_llama's size."""
    train(tmp_path, f"model.name={kit / 'smollm2'}", "model.random_init=true", "train.max_steps=2", "eval=[none]")
    assert (tmp_path / "merged" / "config.json").is_file()
