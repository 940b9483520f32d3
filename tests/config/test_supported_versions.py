"""A release older than the oldest supported one is refused at start, naming it; setup.cfg agrees."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess

from hydratune.config.supported_versions import OLDEST, OLDEST_OPTIONAL, version_problems

from ..conftest import REPO


def setup_cfg_floors() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    lines += config["options.extras_require"]["deepspeed"].splitlines()
    floors = {}
    for line in lines:
        match = re.match(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", line.strip())
        if match:
            floors[match.group(1)] = match.group(2)
    return floors


def test_setup_cfg_lower_bounds_are_the_checked_floors():
    floors = setup_cfg_floors()
    assert {name: floors.get(name) for name in {**OLDEST, **OLDEST_OPTIONAL}} == {**OLDEST, **OLDEST_OPTIONAL}


def test_every_requirement_of_the_stack_has_an_upper_bound():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    requirements = {
        re.match(r"[A-Za-z0-9_.-]+", line.strip()).group(0): line.strip()
        for line in config["options"]["install_requires"].splitlines()
        if line.strip()
    }
    for name in OLDEST:
        assert "<" in requirements[name], requirements[name]


def test_older_releases_are_problems_and_tested_ones_are_not():
    old = (("torch", "2.13.0+cpu"), ("transformers", "5.17.0"), ("peft", "0.22.0"), ("deepspeed", "0.16.4"))
    problems = version_problems(old, used=set())
    assert [p.key for p in problems] == ["package transformers"]
    assert "5.17.0 is installed, hydratune needs 5.24 or newer" in str(problems[0])
    # deepspeed's floor holds only for the runs that use it
    assert [p.key for p in version_problems(old, used={"deepspeed"})] == ["package transformers", "package deepspeed"]
    assert version_problems((("transformers", "5.24.0.dev0"), ("torch", "2.11.0")), used=set()) == []


def test_train_refuses_an_old_release_at_start_and_runs_once_it_is_gone(tmp_path):
    """Through the console script: a transformers whose metadata says 5.17.0 (as on the lent GPU
    machines' image) stops `train` with exit 2 before any work; without it the same command runs."""
    fake = tmp_path / "site"
    (fake / "transformers-5.17.0.dist-info").mkdir(parents=True)
    (fake / "transformers-5.17.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: transformers\nVersion: 5.17.0\n"
    )
    args = [shutil.which("train"), "+experiment=quickstart", "model=tiny_llama", "run.dry_run=true"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(fake), os.environ.get("PYTHONPATH")])))
    refused = subprocess.run(
        [*args, f"hydra.run.dir={tmp_path / 'old'}"], capture_output=True, text=True, env=env, timeout=300
    )
    assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
    assert "package transformers: 5.17.0 is installed, hydratune needs 5.24 or newer" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "old" / "plan.json").exists()

    ran = subprocess.run([*args, f"hydra.run.dir={tmp_path / 'new'}"], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
