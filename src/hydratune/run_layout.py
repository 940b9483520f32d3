"""The layout of a run directory: every path a run writes, named once.

Training, export, evaluation, tracking, the summary and the model card take their paths from
here, and `run.overwrite=true` clears only what is named here: anything else in a run
directory is the user's, and hydratune never deletes it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

# The commands that log into a run directory (hydra_entry's job names): their logs are the only
# `*.log` files a run writes, so a user's `console.log` beside them is never cleared.
JOB_NAMES = ("train", "preprocess")

# Besides the entries RunDirectory names: what an interrupted export leaves beside merged/ (its
# scratch, the previous merged/ moved aside).
PATTERNS = (".merged.tmp-*", ".merged.old-*", ".consolidated.tmp-*")


def written_by_a_run(name: str) -> bool:
    """Whether an entry of a run directory is one a hydratune run writes."""
    return name in _NAMED or any(fnmatch.fnmatchcase(name, p) for p in PATTERNS)


@dataclass(frozen=True)
class RunDirectory:
    """The paths of one run directory."""

    root: Path

    @property
    def spec(self) -> Path:
        """The resolved spec, written when the run starts: what export, evaluation and the ranks read."""
        return self.root / "spec.json"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def record(self) -> Path:
        """run.json: written when the run finishes, so its presence means the run finished."""
        return self.root / "run.json"

    @property
    def train_result(self) -> Path:
        return self.root / "train_result.json"

    @property
    def parity_rows(self) -> Path:
        """The held-out tokens merged/ is checked on against base+adapter, kept so export needs no data."""
        return self.root / "parity_rows.safetensors"

    @property
    def data_report(self) -> Path:
        """The data stage's report of the rows trained on (sources, rows, tokens), kept for the model card."""
        return self.root / "data_report.json"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def mlflow_run(self) -> Path:
        return self.root / "mlflow_run.json"

    @property
    def job_status(self) -> Path:
        return self.root / "job_status.json"

    @property
    def hydra(self) -> Path:
        return self.root / ".hydra"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    @property
    def trained(self) -> Path:
        return self.root / "trained"

    def weights(self, method_weights: str) -> Path:
        """Where training leaves the trained weights: the adapter, or the full model."""
        return self.trained if method_weights == "full" else self.adapter

    @property
    def merged(self) -> Path:
        return self.root / "merged"

    @property
    def merge_lock(self) -> Path:
        return self.root / ".merged.lock"

    @property
    def eval(self) -> Path:
        """The evaluation made at the end of training; a later `hydratune-eval` writes beside it."""
        return self.root / "eval"

    @property
    def eval_metrics(self) -> Path:
        return self.eval / "metrics.json"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def errors(self) -> Path:
        """errors/rank<N>.txt: the traceback of a training rank that failed."""
        return self.root / "errors"

    @property
    def wandb(self) -> Path:
        """W&B's runs (offline with WANDB_MODE=offline), unless WANDB_DIR is set."""
        return self.root / "wandb"

    def log(self, job_name: str) -> Path:
        return self.root / f"{job_name}.log"

    @property
    def logs(self) -> tuple[Path, ...]:
        """The logs of the commands that write into a run directory (and no other `*.log`)."""
        return tuple(self.log(name) for name in JOB_NAMES)

    @property
    def run_lock(self) -> Path:
        """Locked by the command working in the directory for as long as it does (run_lock.py)."""
        return self.root / ".hydratune-run.lock"

    def is_run(self) -> bool:
        """Whether the directory holds a hydratune run (it has the spec every run writes first)."""
        return self.spec.is_file()

    def finished(self) -> bool:
        return self.record.is_file()


# The top-level entries the properties above name: with PATTERNS, all that run.overwrite=true may clear.
_NAMED = frozenset(
    getattr(RunDirectory(Path()), name).parts[0]
    for name, value in vars(RunDirectory).items()
    if isinstance(value, property) and name != "logs"
) | {p.name for p in RunDirectory(Path()).logs}
