"""A run directory through `train`: nothing hydratune did not write is deleted, a refused or dry run
changes nothing, and `run.overwrite=true` clears only a run's own entries."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
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

    (run / "console.log").write_text("mine")  # a log of the user's: not the run's train.log
    refused = train(run, "train.max_steps=2", "run.overwrite=true", "run.dry_run=true", check=False)
    assert refused.returncode == 2 and "holds files hydratune did not write (console.log)" in refused.stderr

    (run / "notes.txt").write_text("mine")
    mine = {"console.log": hashlib.sha256(b"mine").hexdigest(), "notes.txt": hashlib.sha256(b"mine").hexdigest()}
    refused = train(run, "train.max_steps=2", "run.overwrite=true", check=False)
    assert refused.returncode == 2 and "holds files hydratune did not write (console.log, notes.txt)" in refused.stderr
    assert snapshot(run) == {**finished, **mine}
    # a resume would train and export beside them: refused the same way
    resume = ("train.max_steps=4", "train.save_steps=2", "train.resume=auto", "run.dry_run=true")
    refused = train(run, *resume, check=False)
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "holds files hydratune did not write (console.log, notes.txt) beside its run" in refused.stderr
    assert "move those files away, then run this again" in refused.stderr
    assert snapshot(run) == {**finished, **mine}

    for name in mine:  # the fix the message gives: move them away
        (run / name).unlink()
    train(run, "train.max_steps=2", "optim.lr=1e-3", "run.overwrite=true")
    assert not list((run / "checkpoints").glob("checkpoint-*"))  # the earlier run's checkpoint went with it
    assert '"learning_rate": 0.001' in (run / "spec.json").read_text()
    assert "optim.learning_rate=1e-3" in (run / ".hydra" / "overrides.yaml").read_text()  # the new run's own


def start_train(cwd: Path, *overrides: str) -> subprocess.Popen:
    """`train` started and left running (the console script: its process is the run's)."""
    return subprocess.Popen(
        [shutil.which("train"), *TINY, *overrides],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


@pytest.mark.slow
def test_a_live_run_is_never_joined_cleared_or_resumed(tmp_path):
    """Two `train` into one directory started in the same instant: one runs, the other is refused
    naming the live run. While it runs (held stopped, its lock still held), overwrite and resume
    are refused too and change nothing; once it has ended, the way out given works."""
    import signal

    run = tmp_path / "run"
    both = [start_train(tmp_path, f"hydra.run.dir={run}", "train.max_steps=2", "train.save_steps=2") for _ in range(2)]
    while all(p.poll() is None for p in both):  # the refused one ends at its claim, the other trains on
        time.sleep(0.05)
    refused = next(p for p in both if p.poll() is not None)
    live = next(p for p in both if p is not refused)
    assert live.poll() is None, "both ended: " + refused.stderr.read()[-2000:]
    live.send_signal(signal.SIGSTOP)  # a live run, held where it is: it keeps its lock
    try:
        out, err = refused.communicate(timeout=60)
        assert refused.returncode == 2, out[-2000:] + err[-2000:]
        in_use = f"hydra.run.dir: {run} is in use by a live run (process {live.pid} on "
        assert in_use in err and "Traceback" not in err
        before = snapshot(run)
        for extra in (["run.overwrite=true"], ["train.resume=auto", "train.max_steps=4"]):
            out = train_in(tmp_path, f"hydra.run.dir={run}", "train.save_steps=2", *extra)
            assert out.returncode == 2 and in_use in out.stderr, out.stderr[-2000:]
            assert "pick a new hydra.run.dir, or wait for that run to end and run this command again" in out.stderr
            assert snapshot(run) == before
    finally:
        live.send_signal(signal.SIGCONT)
    out, err = live.communicate(timeout=600)
    assert live.returncode == 0, err[-3000:]
    assert not (run / ".hydratune-run.lock").exists()  # let go with the run
    # the way out: the run has ended, so the same command now resumes it
    out = train_in(tmp_path, f"hydra.run.dir={run}", "train.save_steps=2", "train.resume=auto", "train.max_steps=4")
    assert out.returncode == 0, out.stderr[-3000:]
    assert '"global_step": 4' in (run / "run.json").read_text()


def test_default_run_directories_of_commands_started_together_differ(tmp_path):
    """Two `train` with the default directory, started in the same instant (a Slurm array, a loop with &):
    each directory ends in its own process's id, so they differ even within one second."""
    both = [start_train(tmp_path, "run.dry_run=true") for _ in range(2)]
    for p in both:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, out[-2000:] + err[-2000:]
    runs = sorted((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 2 and all((r / "plan.json").is_file() for r in runs)
    assert sorted(r.name.split("_")[-1].split("-")[0] for r in runs) == sorted(str(p.pid) for p in both)


def test_a_resume_never_adopts_a_folder_of_the_users(tmp_path):
    """`train.resume=auto` into the user's folder (`hydra.run.dir=.`), which holds a `merged/` of theirs:
    refused as a new run would be, nothing changed; the way out (a new directory) works."""
    folder = users_folder(tmp_path / "thesis")
    (folder / "merged").mkdir()
    (folder / "merged" / "model.safetensors").write_text("their model")
    before = snapshot(folder)
    for extra in (["run.dry_run=true"], []):
        out = train_in(folder, "hydra.run.dir=.", "train.resume=auto", "train.max_steps=2", *extra)
        assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
        assert "holds files that are not a hydratune run's (mydata/, thesis.tex)" in out.stderr
        assert "pick a new or empty hydra.run.dir" in out.stderr and "Traceback" not in out.stderr
        assert snapshot(folder) == before
    # only the merged/ left: a run's name, but no run (no spec.json) to resume
    (folder / "thesis.tex").unlink()
    shutil.rmtree(folder / "mydata")
    before = snapshot(folder)
    out = train_in(folder, "hydra.run.dir=.", "train.resume=auto", "run.dry_run=true")
    assert out.returncode == 2 and "holds no hydratune run to resume (no spec.json), but merged/" in out.stderr
    assert snapshot(folder) == before
    out = train_in(tmp_path, f"hydra.run.dir={tmp_path / 'new'}", "train.resume=auto", "run.dry_run=true")
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow
def test_a_dry_run_or_preprocess_leaves_the_directory_to_the_run(tmp_path):
    """A dry run into a new directory, then the run itself there: it starts (replacing the dry run's
    plan). `preprocess` into that run's directory leaves its files alone."""
    run = tmp_path / "run"
    train(run, "train.max_steps=2", "run.dry_run=true")
    assert {"plan.json", "spec.json", ".hydra/config.yaml"} <= set(snapshot(run))
    out = train(run, "train.max_steps=2", "optim.lr=1e-3", check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert '"dry_run": false' in (run / "spec.json").read_text()
    assert "optim.learning_rate=1e-3" in (run / ".hydra" / "overrides.yaml").read_text()
    finished = snapshot(run)
    out = subprocess.run(
        [shutil.which("preprocess"), *TINY, "dataset.max_length=64", f"hydra.run.dir={run}"],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert snapshot(run) == finished
