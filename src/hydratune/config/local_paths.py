"""Local paths in a spec, made absolute: a run's spec.json works from any working directory.

`train` records the resolved spec in spec.json, which export, evaluation, chat and the
training ranks read later, perhaps from another directory. Each setting that names a local
file or folder is resolved against the directory the command ran from; a name that is no
local path (a Hub id, `generated:...`, `embedded:...`, a template name or Jinja text) is
kept as it is. The command as typed stays in run.json.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

from hydratune.config.spec import RunSpec

# Options of evaluation tasks that name a local file or folder when they name one at all.
TASK_PATH_OPTIONS = ("path", "include_path")


def absolute_paths(spec: RunSpec) -> RunSpec:
    replace = dataclasses.replace
    model = replace(spec.model, name=_if_local(spec.model.name), chat_template=_template(spec.model.chat_template))
    dataset = replace(
        spec.dataset,
        path=_if_local(spec.dataset.path),
        mix=tuple(replace(source, path=_if_local(source.path)) for source in spec.dataset.mix),
    )
    deepspeed = replace(spec.sharding.deepspeed, config_file=_absolute(spec.sharding.deepspeed.config_file))
    resume = spec.train.resume if spec.train.resume == "auto" else _absolute(spec.train.resume)
    tasks = {name: _task_paths(options) for name, options in spec.eval.tasks.items()}
    return replace(
        spec,
        model=model,
        dataset=dataset,
        sharding=replace(spec.sharding, deepspeed=deepspeed),
        train=replace(spec.train, resume=resume),
        eval=replace(spec.eval, tasks=tasks),
        run=replace(spec.run, cache_dir=_absolute(spec.run.cache_dir)),
    )


def _absolute(path: Optional[str]) -> Optional[str]:
    return None if path is None else str(Path(path).expanduser().resolve())


def _if_local(name: str) -> str:
    """The absolute path when `name` is an existing file or folder here, else `name` (a Hub id, a generator)."""
    return _absolute(name) if Path(name).expanduser().exists() else name


def _template(choice: Optional[str]) -> Optional[str]:
    if choice is None or "{{" in choice or "{%" in choice:
        return choice
    return _if_local(choice)


def _task_paths(options: Any) -> Any:
    if not dataclasses.is_dataclass(options):
        return options
    changes = {
        name: _if_local(getattr(options, name))
        for name in TASK_PATH_OPTIONS
        if isinstance(getattr(options, name, None), str)
    }
    return dataclasses.replace(options, **changes)
