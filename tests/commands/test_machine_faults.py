"""Faults a machine meets, tried as a new user meets them: an output directory that cannot be made,
a full disk, Ctrl-C. Each ends in one message and a documented exit status, never a traceback, and
leaves nothing half-written that a later run reads."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from ..conftest import REPO
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


def interrupt_train(run_dir: Path, marker: str, *overrides: str, after_seconds: float = 0.0):
    """Start `train` (the console script), send SIGINT once `marker` appears in its output (or after
    `after_seconds` when marker is empty), and return (exit status, output, ids of its children left)."""
    import os
    import shutil
    import signal
    import threading
    import time

    from ..training.runs import TINY

    process = subprocess.Popen(
        [shutil.which("train"), *TINY, *overrides, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    started, sent = time.monotonic(), False
    while process.poll() is None and time.monotonic() - started < 300:
        due = marker in "".join(lines) if marker else time.monotonic() - started >= after_seconds
        if due and not sent:
            process.send_signal(signal.SIGINT)
            sent = True
        time.sleep(0.05)
    process.wait(timeout=60)
    reader.join(timeout=10)
    assert sent, "".join(lines)[-3000:]
    return process.returncode, "".join(lines), processes_naming(run_dir)


def processes_naming(run_dir: Path) -> list[int]:
    """Processes still running whose command line names the run directory (a run's workers, its ranks)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(run_dir).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


INTERRUPTED = "interrupted; nothing half-written is kept"
# Where Ctrl-C lands: (the output line after which it is sent, or seconds after the start; overrides).
MOMENTS = {
    "imports": ("", 0.3, ()),
    "preprocessing": ("train.jsonl: ", 0, ("dataset.max_length=120",)),
    "training": ("it/s]", 0, ()),
    "export": ("merged/: loading the base model", 0, ("train.max_steps=2",)),
}


@pytest.mark.slow
def test_ctrl_c_at_any_moment_is_one_line_and_the_next_run_works(tmp_path):
    for moment, (marker, seconds, overrides) in MOMENTS.items():
        status, output, left = interrupt_train(tmp_path / moment, marker, *overrides, after_seconds=seconds)
        assert status == 130, (moment, output[-3000:])
        assert output.count(INTERRUPTED) == 1 and "Traceback" not in output, (moment, output[-3000:])
        assert left == [], (moment, left)
        assert not list(tmp_path.glob(f"{moment}/.merged.tmp-*")), moment
    # The data an interrupted preprocessing was building, and a new run directory: the run completes.
    train(tmp_path / "next", "train.max_steps=2", "dataset.max_length=120", timeout=300)
    assert (tmp_path / "next" / "run.json").is_file()


def test_the_quiet_ctrl_c_covers_every_console_script():
    """The import-time Ctrl-C hook names the scripts it covers; setup.cfg is where they are declared."""
    import configparser

    from hydratune.commands import _SCRIPTS

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    declared = {line.split("=")[0].strip() for line in config["options.entry_points"]["console_scripts"].splitlines()}
    assert _SCRIPTS == declared - {""}
