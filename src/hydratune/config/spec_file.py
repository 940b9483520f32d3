"""spec.json: the resolved spec a run is made with, written when it starts.

Later stages (export, evaluation, chat, the training ranks) read it instead of asking again.
Its local paths are absolute (local_paths.py) and its URL settings carry no credentials
(url_credentials.py): a rank started by `train` gets them from its environment.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from hydratune.atomic_dir import write_json_atomic
from hydratune.config.spec import RunSpec
from hydratune.config.spec_builder import build_run_spec
from hydratune.run_layout import RunDirectory
from hydratune.url_credentials import restore_from_environment, without_credentials


def save_spec(spec: RunSpec, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = RunDirectory(directory).spec
    write_json_atomic(path, without_credentials(dataclasses.asdict(spec)))
    return path


def load_spec(directory: Path) -> RunSpec:
    """The spec a run directory was made with (its output_dir is where the directory is now)."""
    path = RunDirectory(Path(directory)).spec
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a hydratune run directory (no {path.name})")
    data = restore_from_environment(json.loads(path.read_text()))  # a rank's credentials come from its launcher
    return build_run_spec(data, output_dir=str(Path(directory).resolve()))
