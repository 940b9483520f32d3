"""hydratune-export killed with SIGKILL while it writes merged/: the next export succeeds, and
merged/ is then the trained model, the same tensors the run's own export wrote."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import pytest
from safetensors.torch import load_file

from ..training.runs import command, train


@pytest.mark.slow
def test_an_export_killed_while_writing_leaves_a_re_export_that_succeeds(tmp_path):
    run = tmp_path / "run"
    train(run, "train.max_steps=2", "eval=[none]")
    exported = load_file(run / "merged" / "model.safetensors")

    export = subprocess.Popen(
        [shutil.which("hydratune-export"), str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not list(run.glob(".merged.tmp-*")) and export.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert export.poll() is None, "the export ended before it wrote its scratch merged/"
    export.send_signal(signal.SIGKILL)
    export.wait()
    assert list(run.glob(".merged.tmp-*")), "killed while writing: its scratch is left behind"

    again = command("hydratune-export", str(run))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert not [*run.glob(".merged.tmp-*"), *run.glob(".merged.old-*")]  # the scratch is cleared
    rebuilt = load_file(run / "merged" / "model.safetensors")
    assert rebuilt.keys() == exported.keys()
    assert all((rebuilt[name] == exported[name]).all() for name in exported)
