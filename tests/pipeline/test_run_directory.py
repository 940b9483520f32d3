"""A run directory through `train`: nothing hydratune did not write is deleted, a refused or dry run
changes nothing, and `run.overwrite=true` clears only a run's own entries."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ..training.runs import TINY, train


def snapshot(directory: Path) -> dict[str, str]:
    """Every file below `directory` (hidden ones too) with the hash of its bytes, and every folder."""
    out = {}
    for path in sorted(directory.rglob("*")):
        rel = str(path.relative_to(directory))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def users_folder(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "thesis.tex").write_text("\\section{Results}\n")
    (directory / "mydata").mkdir()
    (directory / "mydata" / "notes.txt").write_text("do not lose\n")
    return directory


def train_in(cwd: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`train` as typed in `cwd` (the console script, so `hydra.run.dir=.` is that folder)."""
    return subprocess.run(
        [shutil.which("train"), *TINY, *overrides],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})),
    )


def test_overwrite_never_clears_the_users_files(tmp_path):
    """The issue's command: in a folder of the user's, overwrite (as a dry run, and for real) is refused."""
    folder = users_folder(tmp_path / "thesis")
    before = snapshot(folder)
    for extra in (["run.dry_run=true"], []):
        out = train_in(folder, "+experiment=quickstart", "hydra.run.dir=.", "run.overwrite=true", *extra)
        assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
        assert (
            "is the directory you run from, which hydratune never clears" in out.stderr
            and "Traceback" not in out.stderr
        )
        assert snapshot(folder) == before
    # from elsewhere: the folder's own files are named, and nothing goes
    out = train_in(tmp_path, "+experiment=quickstart", f"hydra.run.dir={folder}", "run.overwrite=true")
    assert out.returncode == 2
    assert (
        "holds files hydratune did not write (mydata/, thesis.tex)" in out.stderr
        and "move those files away" in out.stderr
    )
    assert snapshot(folder) == before
    # without overwrite: not a run, so not the run's
    out = train_in(tmp_path, f"hydra.run.dir={folder}", "run.dry_run=true")
    assert out.returncode == 2 and "holds files that are not a hydratune run's (mydata/, thesis.tex)" in out.stderr
    assert snapshot(folder) == before


def test_overwrite_never_clears_a_parent_or_the_home_directory(tmp_path):
    home = tmp_path / "home"
    work = home / "project" / "work"
    work.mkdir(parents=True)
    out = train_in(work, "hydra.run.dir=..", "run.overwrite=true", "run.dry_run=true")
    assert out.returncode == 2 and f"is a parent of the directory you run from ({work})" in out.stderr
    out = train_in(tmp_path, f"hydra.run.dir={home}", "run.overwrite=true", "run.dry_run=true", env={"HOME": str(home)})
    assert out.returncode == 2 and "is the home directory, which hydratune never clears" in out.stderr
    assert sorted(p.name for p in home.rglob("*")) == ["project", "work"]


@pytest.mark.slow
def test_overwrite_clears_a_runs_own_entries_and_a_dry_run_writes_nothing(tmp_path):
    run = tmp_path / "run"
    train(run, "train.max_steps=2", "train.save_steps=2")
    finished = snapshot(run)
    assert {"spec.json", "run.json", "train.log", ".hydra/overrides.yaml", "checkpoints/checkpoint-2", "merged"} <= set(
        finished
    )

    dry = train(run, "train.max_steps=2", "optim.lr=1e-3", "run.overwrite=true", "run.dry_run=true")
    assert "dry run: the run clears" in dry.stdout and "nothing was written there" in dry.stdout
    assert snapshot(run) == finished  # not even Hydra's .hydra/ or the log

    refused = train(run, "train.max_steps=2", check=False)
    assert refused.returncode == 2 and "already holds a finished run" in refused.stderr
    assert snapshot(run) == finished

    (run / "notes.txt").write_text("mine")
    refused = train(run, "train.max_steps=2", "run.overwrite=true", check=False)
    assert refused.returncode == 2 and "holds files hydratune did not write (notes.txt)" in refused.stderr
    assert snapshot(run) == {**finished, "notes.txt": hashlib.sha256(b"mine").hexdigest()}

    (run / "notes.txt").unlink()  # the fix the message gives: move them away
    train(run, "train.max_steps=2", "optim.lr=1e-3", "run.overwrite=true")
    assert not list((run / "checkpoints").glob("checkpoint-*"))  # the earlier run's checkpoint went with it
    assert '"learning_rate": 0.001' in (run / "spec.json").read_text()
    assert "optim.learning_rate=1e-3" in (run / ".hydra" / "overrides.yaml").read_text()  # the new run's own
