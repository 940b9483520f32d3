"""What a run records about itself when it finishes: run.json (the resolved spec, the command as
typed, versions, metrics, the objective, the parent run it started from). spec.json, written
when it starts, is config/spec_file.py's.
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
from typing import Any, Optional

from hydratune.atomic_dir import write_json_atomic
from hydratune.config.spec import RunSpec
from hydratune.models.earlier_run import earlier_run_dir
from hydratune.run_layout import RunDirectory
from hydratune.url_credentials import strip_credentials, without_credentials

PACKAGES = (
    "hydratune",
    "torch",
    "transformers",
    "peft",
    "trl",  # dpo, kto and grpo run its trainers, whose defaults change between releases
    "accelerate",
    "datasets",
    "deepspeed",
    "bitsandbytes",
    "flash-attn",
    "hydra-core",
)


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
    layout = RunDirectory(spec.output_dir)
    write_json_atomic(layout.record, record)
    return layout.record


def parent_record(model_name: str) -> Optional[dict[str, Any]]:
    """What run.json says about the run this one started from (None for a base model)."""
    run_dir = earlier_run_dir(model_name)
    if run_dir is None:
        return None
    layout = RunDirectory(run_dir)
    record = json.loads(layout.record.read_text()) if layout.finished() else {}
    spec = record.get("spec") or json.loads(layout.spec.read_text())
    return {
        "run_dir": str(run_dir),
        "model": spec["model"]["name"],
        "random_init": spec["model"].get("random_init", False),
        "revision": spec["model"].get("revision"),
        "method": spec["method"].get("name"),
        "weights": spec["method"].get("weights"),
        "objective": record.get("objective"),
        "parent": record.get("parent"),
    }
