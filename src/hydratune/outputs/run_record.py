"""What a run directory records about itself: spec.json at the start, run.json at the end.

Later stages (export, evaluate, relaunched ranks) read spec.json instead of asking again.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydratune.atomic_dir import write_json_atomic
from hydratune.config.spec import RunSpec
from hydratune.url_credentials import restore_from_environment, strip_credentials, without_credentials

SPEC_FILE = "spec.json"
RUN_FILE = "run.json"
PACKAGES = ("hydratune", "torch", "transformers", "peft", "accelerate", "datasets", "deepspeed", "bitsandbytes", "flash-attn", "hydra-core")


def save_spec(spec: RunSpec, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / SPEC_FILE, without_credentials(dataclasses.asdict(spec)))
    return directory / SPEC_FILE


def load_spec(directory: Path) -> RunSpec:
    """The spec a run directory was made with (its output_dir is where the directory is now)."""
    from hydratune.config.spec_builder import build_run_spec

    path = Path(directory) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a hydratune run directory (no {SPEC_FILE})")
    data = restore_from_environment(json.loads(path.read_text()))  # a rank's credentials come from its launcher
    return build_run_spec(data, output_dir=str(Path(directory).resolve()))


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def git_commit(cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=cwd, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def run_command() -> str:
    """The command that reproduces this run: the console script and this job's overrides
    (for a sweep job, its own values), as a shell would take them. Keys are shown as typed:
    the `++` the console scripts add to every known key is theirs to add again."""
    try:
        from hydra.core.hydra_config import HydraConfig
    except ImportError:
        HydraConfig = None
    if HydraConfig is not None and HydraConfig.initialized():
        hydra = HydraConfig.get()
        overrides = [o[2:] if o.startswith("++") else o for o in hydra.overrides.task]
        return " ".join([hydra.job.name, *(shlex.quote(o) for o in overrides)])
    return " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).name, *sys.argv[1:]])


def write_run_record(spec: RunSpec, **sections: Any) -> Path:
    record = {
        "spec": without_credentials(dataclasses.asdict(spec)),
        "command": strip_credentials(run_command()),
        "versions": package_versions(),
        "git_commit": git_commit(),
        **sections,
    }
    write_json_atomic(spec.output_dir / RUN_FILE, record)
    return spec.output_dir / RUN_FILE
