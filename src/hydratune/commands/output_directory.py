"""The run's (or sweep's) output directory, made before Hydra makes it.

Hydra creates `hydra.run.dir` inside its job runner, where a failure (a path under /proc, a read-only
mount, no permission, a file in the way) ends in its traceback and exit 1. This callback runs first,
when the directory is known, makes it, and on failure exits 2 with one message naming the key and path.
Creating it here changes nothing on success: Hydra would create the same directory a moment later.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hydratune.config.problems import ConfigError, Problem


class OutputDirectoryCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        make_output_directory("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        make_output_directory("hydra.sweep.dir", config.hydra.sweep.dir)


def make_output_directory(key: str, directory: str) -> None:
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        problem = Problem(
            f"{key}={directory}", f"cannot be created ({reason})", f"set {key}= to a directory you can write"
        )
        print(ConfigError([problem]).render(), file=sys.stderr)
        sys.exit(ConfigError.exit_code)
