"""Every side of the training benches reads a clock that waits for the GPU first, and hydratune's
GPU side trains with its own attention choice: checked on this CPU with CUDA reported by
monkeypatched torch.cuda functions."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from hydratune.training import token_throughput

from .conftest import REPO

BENCH = REPO / "bench"
PEER_SCRIPTS = ["tutorial_trainer_peft.py", "trl_sft_trainer.py", "trl_grpo_trainer.py"]


@pytest.fixture
def bench_modules():
    sys.path.insert(0, str(BENCH))
    try:
        import step_clock
        import train_throughput

        yield step_clock, train_throughput
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture
def events(monkeypatch):
    """CUDA reported as present and started; each synchronize and each clock reading recorded in order."""
    seen: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: seen.append("synchronize"))

    def fake_time(start: float = 0.0):
        clock = iter(range(1, 10**6))
        return types.SimpleNamespace(perf_counter=lambda: seen.append("clock") or start + next(clock))

    return seen, fake_time


def assert_synchronized_before_each_reading(seen: list[str]) -> None:
    readings = [i for i, e in enumerate(seen) if e == "clock"]
    assert readings, seen
    assert all(i > 0 and seen[i - 1] == "synchronize" for i in readings), seen


def test_the_bench_step_clock_synchronizes_before_each_reading(bench_modules, events, monkeypatch):
    step_clock, _ = bench_modules
    seen, fake_time = events
    monkeypatch.setattr(token_throughput, "time", fake_time())  # the clock step_clock reads
    clock = step_clock.StepClock()
    for _ in range(3):
        clock.on_step_begin(None, None, None)
        clock.on_step_end(None, None, None)
    assert seen == ["synchronize", "clock"] * 6
    assert clock.durations() == [1, 1, 1]


def test_without_cuda_in_use_the_clock_does_not_start_it(bench_modules, monkeypatch):
    step_clock, _ = bench_modules
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: pytest.fail("synchronize would start CUDA"))
    step_clock.synchronized_now()


def test_the_matmul_ceiling_is_timed_on_the_synchronized_clock(bench_modules, events, monkeypatch):
    step_clock, train_throughput = bench_modules
    seen, fake_time = events
    monkeypatch.setattr(token_throughput, "time", fake_time())  # the clock step_clock reads
    train_throughput.matmul_flops_per_second(gpu=False, size=64, repeats=1, windows=2)
    assert seen.count("clock") == 4
    assert_synchronized_before_each_reading(seen)


def test_every_peer_times_its_steps_on_the_shared_clock():
    for name in PEER_SCRIPTS:
        text = (BENCH / name).read_text()
        assert "StepClock()" in text and "callbacks=[clock]" in text, name
        assert "perf_counter" not in text, f"{name} reads a clock of its own"


def test_hydratunes_throughput_log_synchronizes_before_each_reading(events, monkeypatch):
    seen, fake_time = events
    monkeypatch.setattr(token_throughput, "time", fake_time())
    throughput = token_throughput.Throughput()
    throughput.tokens = 10
    rates = throughput.measure(torch.device("cpu"))
    assert rates["tokens_per_second"] == 10.0
    first_step = token_throughput.FirstStepTime()
    first_step.on_step_end(None, None, None)
    assert_synchronized_before_each_reading(seen[:4])  # Throughput's start and its reading
    assert seen[-2:] == ["synchronize", "clock"]  # the end of the first step (its start: before any kernel)


def test_hydratunes_gpu_side_trains_with_its_own_attention_choice(bench_modules):
    _, train_throughput = bench_modules
    ours, peers, max_length = train_throughput.side_settings(True, "/m", "sdpa")
    assert "model.attn_implementation=auto" in ours and "train.precision=bf16" in ours
    assert not any(o.startswith("model.attn_implementation=") and not o.endswith("=auto") for o in ours)
    assert peers == ["gpu", "sdpa"] and max_length == 2048
    assert train_throughput.side_settings(False, "/m", "sdpa") == ([], [], 512)
