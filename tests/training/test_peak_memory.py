"""The measured peak memory recorded in run.json, on a GPU through torch.cuda's counters."""

from __future__ import annotations

import types


def test_on_a_gpu_the_reserved_peak_is_recorded_beside_the_allocated(monkeypatch):
    """The caching allocator's reserved peak (what runs out on a full GPU) next to the live tensors'
    peak, both above what was there before the model was built; run.json's memory record carries both."""
    import torch

    from hydratune.pipeline.run_training import memory_record
    from hydratune.training.peak_memory import PeakMemory

    counters = {
        "memory_allocated": 100,
        "memory_reserved": 300,
        "max_memory_allocated": 1100,
        "max_memory_reserved": 1800,
    }
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    for name, value in counters.items():
        monkeypatch.setattr(torch.cuda, name, lambda value=value: value)
    peak = PeakMemory()
    peak.start()
    measured = peak.measured()
    assert measured["bytes"] == 1000 and measured["as"] == "torch.cuda.max_memory_allocated"
    assert measured["reserved_bytes"] == 1500
    plan = types.SimpleNamespace(memory=types.SimpleNamespace(total=2000.0, chunked_loss=False, loss_positions=None))
    record = memory_record(plan, measured)
    assert record["measured_peak_bytes"] == 1000 and record["measured_reserved_bytes"] == 1500
    assert record["measured_over_estimate"] == 0.5
