"""Faults a machine meets, tried as a new user meets them: an output directory that cannot be made,
a full disk, Ctrl-C. Each ends in one message and a documented exit status, never a traceback, and
leaves nothing half-written that a later run reads."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from ..training.runs import train


@contextmanager
def small_filesystem(mount_point: Path, size: str, *options: str) -> Iterator[Path]:
    """A tmpfs of `size` at `mount_point` (needs root's mount; the test is skipped, saying so, without it)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    flags = ",".join([f"size={size}", *options])
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", flags, "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs here ({mounted.stderr.decode().strip()}): needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def assert_one_message(result, status: int, *needles: str) -> None:
    assert result.returncode == status, result.stdout[-2000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-4000:]
    for needle in needles:
        assert needle in result.stderr, result.stderr[-4000:]


@pytest.mark.parametrize("where", ["/proc/x", "a file", "a read-only mount"])
def test_an_output_directory_that_cannot_be_made_is_named(tmp_path, where):
    if where == "a file":
        (tmp_path / "file").write_text("the user's")
        run_dir = tmp_path / "file" / "run"
    elif where == "a read-only mount":
        run_dir = Path(str(tmp_path / "ro"), "run")
    else:
        run_dir = Path(where)
    if where == "a read-only mount":
        with small_filesystem(tmp_path / "ro", "1m", "ro"):
            result = train(run_dir, "train.max_steps=1", check=False, timeout=120)
    else:
        result = train(run_dir, "train.max_steps=1", check=False, timeout=120)
    assert_one_message(result, 2, f"hydra.run.dir={run_dir}: cannot be created")
    if where == "a file":
        assert (tmp_path / "file").read_text() == "the user's"


def test_a_sweep_directory_that_cannot_be_made_is_named(tmp_path):
    (tmp_path / "file").write_text("")
    result = subprocess.run(
        [*train_command(), "-m", "train.max_steps=1", f"hydra.sweep.dir={tmp_path / 'file' / 'sweep'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_message(result, 2, "hydra.sweep.dir=", "cannot be created")


def train_command() -> list[str]:
    import sys

    from ..training.runs import TINY

    return [sys.executable, "-m", "hydratune.commands.train", *TINY]
