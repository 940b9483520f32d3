"""A full disk, tried as a new user meets it through the `train` console script: a run directory too
small for the run is refused before any work (exit 2, the space needed and free); a disk that fills
during the run ends in one line (exit 1), with nothing half-written left for a later command to read
and an earlier run on the same disk untouched."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hydratune.disk_space import DiskFullError, disk_full_exits, free_bytes, is_disk_full

from ..training.runs import TINY, command, train
from .test_machine_faults import assert_one_message, small_filesystem

SAVING = ("train.max_steps=2", "train.save_steps=1")


@pytest.mark.slow
def test_a_run_directory_too_small_is_refused_before_training(tmp_path):
    run_dir = tmp_path / "small" / "run"
    with small_filesystem(tmp_path / "small", "6m"):
        result = train(run_dir, "+experiment=quickstart", "eval=[loss]", "train.max_steps=2", check=False, timeout=300)
        assert_one_message(result, 2, f"hydra.run.dir={run_dir}", "the run needs about", "MB free")
        assert "hydra.run.dir=<a directory on a bigger disk>" in result.stderr
        assert "it/s" not in result.stdout + result.stderr  # refused before preprocessing or training ran
        assert not any(run_dir.iterdir()), list(run_dir.iterdir())
    # The fix it names: the same command with the run directory on a bigger disk.
    train(tmp_path / "big" / "run", "+experiment=quickstart", "eval=[loss]", "train.max_steps=2", timeout=600)
    assert (tmp_path / "big" / "run" / "merged" / "model.safetensors").is_file()


@pytest.mark.slow
def test_fewer_checkpoints_is_named_where_checkpoints_would_not_fit(tmp_path):
    with small_filesystem(tmp_path / "small", "24m"):
        result = train(tmp_path / "small" / "run", "train.max_steps=4", "train.save_steps=1", check=False, timeout=300)
        assert_one_message(result, 2, "train.save_total_limit=1", "train.save_steps=null")
        # the fix it names: the run fits with no checkpoints kept
        train(tmp_path / "small" / "run", "train.max_steps=4", "train.save_steps=null", timeout=300)


@pytest.mark.slow
def test_a_disk_filling_during_export_ends_in_one_line_and_keeps_the_earlier_run(tmp_path):
    mount = tmp_path / "disk"
    with small_filesystem(mount, "64m"):
        train(mount / "earlier", "train.max_steps=2", "train.save_steps=1", timeout=300)
        before = file_digests(mount / "earlier")
        run_dir = mount / "run"
        status, output = train_filling_disk(run_dir, "merged/: loading the base model", mount / "filler")
        assert status == 1, output[-4000:]
        assert "Traceback" not in output, output[-4000:]
        assert output.count("no space left on device writing") == 1, output[-4000:]
        assert f"writing {run_dir / 'merged'} (" in output and "free" in output, output[-4000:]
        assert not (run_dir / "merged").exists() and not list(run_dir.glob(".merged.*tmp*")), os.listdir(run_dir)
        assert not (run_dir / "run.json").exists()
        assert file_digests(mount / "earlier") == before  # the earlier run on the same disk is byte-identical
        # The way on it names: space freed, the same command with train.resume=auto finishes the run.
        (mount / "filler").unlink()
        train(run_dir, "train.max_steps=2", "train.save_steps=1", "train.resume=auto", timeout=300)
        assert (run_dir / "run.json").is_file() and (run_dir / "merged" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_checkpoint_its_save_left_unfinished_is_not_exported(tmp_path):
    run_dir = tmp_path / "run"
    train(run_dir, "train.max_steps=2", "train.save_steps=1", timeout=300)
    marker = run_dir / "checkpoints" / "checkpoint-2" / "hydratune-complete.json"
    marker.unlink()  # what a save the disk stopped leaves: no marker
    result = command("hydratune-export", str(marker.parent))
    assert_one_message(result, 2, "is not a complete checkpoint")


def train_filling_disk(run_dir: Path, marker: str, filler: Path, *overrides: str) -> tuple[int, str]:
    """Run `train` (the console script); when `marker` appears in its output, fill the disk that holds
    `run_dir` but for 256 kB (another program's file). Returns (exit status, output)."""
    process = subprocess.Popen(
        [
            shutil.which("train"),
            *TINY,
            "train.max_steps=2",
            "train.save_steps=1",
            *overrides,
            f"hydra.run.dir={run_dir}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    started, filled = time.monotonic(), False
    while process.poll() is None and time.monotonic() - started < 300:
        if not filled and marker in "".join(lines):
            with open(filler, "wb") as out:
                os.posix_fallocate(out.fileno(), 0, free_bytes(run_dir) - (256 << 10))
            filled = True
        time.sleep(0.02)
    process.wait(timeout=60)
    reader.join(timeout=10)
    assert filled, "".join(lines)[-3000:]
    return process.returncode, "".join(lines)


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device", "/run/adapter/adapter_model.safetensors"),
        RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
    ],
)
def test_the_shapes_of_a_full_disk_are_recognized(error, tmp_path):
    assert is_disk_full(error)
    with pytest.raises(DiskFullError) as info, disk_full_exits(tmp_path, fix="rerun it"):
        raise error
    message = info.value.describe()
    assert "\n" not in message and "free" in message and message.endswith("rerun it")
    named = error.filename if isinstance(error, OSError) and error.filename else str(tmp_path)
    assert f"writing {named} (" in message


def test_other_errors_pass_through(tmp_path):
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    with pytest.raises(ValueError), disk_full_exits(tmp_path):
        raise ValueError("not a disk")


def test_a_rank_the_disk_stopped_is_reported_as_a_full_disk(tmp_path):
    """torchrun's ranks: the launcher's one message says the disk is full (the rank's traceback names
    only safetensors' error), and a rank with no room for its traceback exits 1 without a second error."""
    from types import SimpleNamespace

    from hydratune.training.launch import describe_failure

    (tmp_path / "errors").mkdir()
    (tmp_path / "errors" / "rank0.txt").write_text(
        "Traceback ...\nSafetensorError: Error while serializing: I/O error: No space left on device (os error 28)"
    )
    failure = SimpleNamespace(timestamp=1, exitcode=1, pid=7, signal_name=lambda: "")
    message = describe_failure(SimpleNamespace(failures={0: failure}), tmp_path)
    assert "rank 0 (pid 7)" in message and f"no space left on device writing {tmp_path} (" in message
    assert "\n" not in message


def test_a_rank_without_room_for_its_traceback_exits_1(tmp_path, monkeypatch, capsys):
    from hydratune.training import rank_worker

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rank_worker, "die_with_launcher", lambda: None)
    monkeypatch.setattr(rank_worker, "load_spec", lambda run_dir: full())
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(SystemExit) as stopped:
        rank_worker.main([str(tmp_path)])
    assert stopped.value.code == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "errors" / "rank0.txt").exists()
