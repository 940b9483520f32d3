"""The shared shape of every console script: argv check -> Hydra compose -> RunSpec -> stage.

Before Hydra sees the command line, plain `key=value` overrides are checked against
the RunSpec schema (unknown keys are reported with a suggestion, together with the
spec's other problems, exit code 2) and rewritten
as `++key=value`: the YAML files hold only what differs from the spec's defaults, so
a valid key need not exist in the composed config to be set.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import secrets
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from hydratune.commands import INTERRUPTED, INTERRUPTED_EXIT_CODE
from hydratune.config.environment import adopt_slurm_environment, detect_environment
from hydratune.config.local_paths import absolute_paths
from hydratune.config.problems import ConfigError, Problem
from hydratune.config.spec import KEY_ALIASES, RunSpec
from hydratune.config.spec_builder import build_run_spec, check_key
from hydratune.errors import HydratuneError
from hydratune.held_run_files import hold, release, write_held
from hydratune.pipeline.run_directory import held_if_empty
from hydratune.pipeline.validation import check_run_spec
from hydratune.url_credentials import strip_credentials

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # the package's link to configs/
PRIMARY_CONFIG = "config"

log = logging.getLogger(__name__)

# The end of the default run and sweep directory names (configs/hydra/layout.yaml): the process id keeps
# two commands started in one second on one machine apart, the random part those on two machines
# sharing a filesystem. Taken once, so every reading of hydra.run.dir in the process agrees.
_PROCESS_NAME = f"{os.getpid()}-{secrets.token_hex(2)}"


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("hydratune.process"):
        OmegaConf.register_new_resolver("hydratune.process", lambda: _PROCESS_NAME)


def config_groups() -> set[str]:
    return {p.name for p in CONFIG_DIR.iterdir() if p.is_dir()} | {"hydra"}


# Hydra's flags that take a value, and those whose value is optional (`--info [what]`).
_VALUE_FLAGS = {
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--shell-completion",
    "-sc",
}
_INFO_TOPICS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
_OPTIONAL_VALUE_FLAGS = {"--info": _INFO_TOPICS, "-i": _INFO_TOPICS}


def split_hydra_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, Hydra's flags with their values), so each may come anywhere on the command line."""
    overrides, flags = [], []
    i = 0
    while i < len(args):
        arg = args[i]
        takes = arg in _VALUE_FLAGS or (
            arg in _OPTIONAL_VALUE_FLAGS and i + 1 < len(args) and args[i + 1] in _OPTIONAL_VALUE_FLAGS[arg]
        )
        if arg.startswith("-"):  # an override starts with its key (or +, ++, ~), never with a dash
            flags.append(arg)
            if takes and i + 1 < len(args):
                flags.append(args[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return overrides, flags


def normalize_overrides(args: list[str]) -> tuple[list[str], list[Problem]]:
    """Check and rewrite command-line overrides. Unknown keys are left out of the
    returned overrides and reported as problems, to be raised with the spec's own."""

    groups = config_groups()
    out, problems = [], []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            out.append(arg)  # not a key=value override: Hydra's to judge
            continue
        key, value = arg.split("=", 1)
        bare = key.lstrip("+~")
        root = bare.split(".", 1)[0].split("/", 1)[0]
        if root == "hydra" or key.startswith("~") or (("." not in bare) and root in groups):
            out.append(arg)  # group choices (model=tiny_llama, +experiment=...), Hydra's keys, deletions
            continue
        bare = KEY_ALIASES.get(bare, bare)
        problem = check_key(bare)
        if problem is not None:
            problems.append(problem)
            continue
        out.append(f"++{bare}={value}")
    return out, problems


def override_keys(args: list[str]) -> tuple[str, ...]:
    """The keys that `key=value` overrides set (after normalize_overrides: `++key=value`)."""
    return tuple(a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a and not a.startswith("-"))


def exit_on_config_error(error: ConfigError) -> None:
    print(error.render(), file=sys.stderr)
    sys.exit(ConfigError.exit_code)


def add_model_source_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the commands that load a run's, a folder's or the Hub's model: where the cache is, and
    whether the model's own code may run."""
    parser.add_argument("--cache-dir", help="hydratune cache (default $HYDRATUNE_CACHE or ~/.cache/hydratune)")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="run the model's own code from its directory or Hub repository (needed for a run trained with "
        "model.trust_remote_code=true: a run directory never grants it)",
    )


@contextmanager
def interrupted_exits() -> Iterator[None]:
    """Ctrl-C: one line and exit 130, no traceback. What was being written lies under a scratch name
    that no later command reads (atomic_dir.py); `finally` blocks and atexit handlers still run."""
    try:
        yield
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr, flush=True)
        sys.exit(INTERRUPTED_EXIT_CODE)


@contextmanager
def user_errors_exit() -> Iterator[None]:
    """Every console script's contract: a bad config or bad data exits 2 with one message naming
    the key, file or row and the fix; failed ranks exit 1 with one message; never a traceback."""
    with interrupted_exits():
        try:
            yield
        except HydratuneError as error:  # also found by stages before their expensive work (an unreachable model)
            print(error.describe(), file=sys.stderr)
            sys.exit(error.exit_code)


def hydra_entry(
    stage: Callable[[RunSpec], Any], job_name: str, *, claims_run_directory: bool = False
) -> Callable[[], Any]:
    """Build the console-script `main` for a stage: `stage(spec)` gets a checked RunSpec.

    What Hydra would write into the run directory (`.hydra/`, the job's log) is held
    (held_run_files.py): a stage that `claims_run_directory` writes it once the directory is its
    own; any other stage writes it only into a new or empty directory (never over a run's)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig

    _register_resolvers()
    argv_problems: list[Problem] = []

    @hydra.main(config_path=str(CONFIG_DIR), config_name=PRIMARY_CONFIG, version_base="1.3")
    def task(cfg: DictConfig) -> Any:
        hydra_cfg = HydraConfig.get()
        # Hydra has read the command line: what records it from here on (W&B keeps the program's
        # arguments) sees URL settings without their credentials.
        sys.argv[1:] = [strip_credentials(arg) for arg in sys.argv[1:]]
        hold(hydra_files(cfg, HydraConfig.instance().cfg), f"{hydra_cfg.job.name}.log")
        try:
            return _run_stage(stage, cfg, hydra_cfg, argv_problems, claims_run_directory)
        finally:
            release()

    def main() -> Any:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
        overrides, flags = split_hydra_flags(sys.argv[1:])
        overrides, problems = normalize_overrides(overrides)
        argv_problems.extend(problems)
        # Overrides first, flags last: argparse takes no positional after a flag that consumed a value.
        sys.argv[1:] = [f"hydra.job.name={job_name}", *overrides, *flags]
        with interrupted_exits():  # Hydra's composition and job runner, as well as the stage
            task()

    return main


def _run_stage(stage, cfg, hydra_cfg, argv_problems: list[Problem], claims_run_directory: bool) -> Any:
    multirun = hydra_cfg.mode.name == "MULTIRUN"
    try:
        spec = spec_from_config(
            cfg,
            output_dir=hydra_cfg.runtime.output_dir,
            extra_problems=argv_problems,
            argv_keys=override_keys(sys.argv[1:]),
        )
    except ConfigError as error:
        if multirun:
            raise  # one bad job fails alone; the sweep goes on
        exit_on_config_error(error)
    if claims_run_directory:
        return _in_mode(stage, spec, multirun)
    with held_if_empty(spec.output_dir) as empty:
        if empty:
            write_held(spec.output_dir)
        else:  # a run's directory: its .hydra/ and log stay the run's
            log.info("%s holds files already: its config and log are left as they are", spec.output_dir)
        return _in_mode(stage, spec, multirun)


def _in_mode(stage, spec: RunSpec, multirun: bool) -> Any:
    if multirun:
        return stage(spec)  # one failing job fails alone; the sweep goes on
    with user_errors_exit():
        return stage(spec)


def hydra_files(cfg, hydra_root) -> dict[str, str]:
    """What Hydra writes into `.hydra/` of a run (its `output_subdir`, turned off in configs/hydra/layout.yaml):
    the composed config, Hydra's own (`hydra_root`, the config holding only the `hydra` node), the overrides."""
    from omegaconf import OmegaConf

    files = {
        ".hydra/config.yaml": OmegaConf.to_yaml(cfg),
        ".hydra/hydra.yaml": OmegaConf.to_yaml(hydra_root),
        ".hydra/overrides.yaml": OmegaConf.to_yaml(hydra_root.hydra.overrides.task),
    }
    return {name: strip_credentials(text) for name, text in files.items()}


def spec_from_config(
    cfg: Any,
    *,
    output_dir: str | None = None,
    env=None,
    extra_problems: list[Problem] = (),
    argv_keys: tuple[str, ...] = (),
) -> RunSpec:
    """DictConfig -> RunSpec, checked against the support matrix and this machine.
    `extra_problems` (unknown command-line keys) are reported with the spec's own;
    `argv_keys` are the keys set on the command line."""

    cfg = _keep_chosen_eval_tasks(cfg, argv_keys)
    if _select(cfg, "run.output_dir") is not None:
        extra_problems = [
            *extra_problems,
            Problem(
                "run.output_dir",
                "is replaced by Hydra's run directory",
                "set hydra.run.dir=<dir> instead (hydra.sweep.dir for sweeps)",
            ),
        ]
    try:
        spec = absolute_paths(build_run_spec(cfg, output_dir=output_dir))
        if env is None:
            adopt_slurm_environment(spec.sharding.world_size)  # srun's tasks as the ranks, when they are
        check_run_spec(spec, env or detect_environment())
    except ConfigError as error:
        raise ConfigError(removals_to_type([*extra_problems, *error.problems], cfg, argv_keys)) from None
    if extra_problems:
        raise ConfigError(extra_problems)
    return spec


def removals_to_type(problems: list[Problem], cfg: Any, argv_keys: tuple[str, ...]) -> list[Problem]:
    """A fix that says to remove a key an experiment or a config group set names the override that removes
    it, `~key`: the user never typed the key, so "remove method.sft_weight" alone is not a fix they can type."""
    out = []  # checks word a removal "remove <key>", "..., or remove it", "remove the override to keep the default"
    for problem in problems:
        key = problem.key.split("=", 1)[0]
        removal = re.search(rf"remove (it|the override to keep the default|{re.escape(key)})\b", problem.fix)
        if removal and key not in argv_keys and _is_set(cfg, key):
            text = f"remove it with ~{key}, as an experiment or config group sets it"
            problem = dataclasses.replace(
                problem, fix=problem.fix[: removal.start()] + text + problem.fix[removal.end() :]
            )
        out.append(problem)
    return out


def _is_set(cfg: Any, key: str) -> bool:
    """Whether the composed config holds `key` (null included): only then can `~key` remove it."""
    node = cfg
    for part in key.split("."):
        try:
            if part not in node:
                return False
        except TypeError:
            return False
        node = node[part]
    return True


def compose_spec(overrides: list[str] = (), *, output_dir: str | None = None, env=None) -> RunSpec:
    """Compose configs/ with overrides as the console scripts do, without running Hydra's app
    (for tests, notebooks and the benchmark scripts)."""
    from hydra import compose, initialize_config_dir

    args, problems = normalize_overrides(list(overrides))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=PRIMARY_CONFIG, overrides=args)
    return spec_from_config(cfg, output_dir=output_dir, env=env, extra_problems=problems, argv_keys=override_keys(args))


def _keep_chosen_eval_tasks(cfg: Any, argv_keys: tuple[str, ...]) -> Any:
    """The eval group picks the tasks (`eval=[loss,gsm8k]`, `eval=[none]`): options set for a task it
    did not pick (by an experiment, or on the command line next to eval=[none]) do not bring the task
    back. When they were typed on the command line, the log says so and how to run the task."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(cfg, DictConfig) or _select(cfg, "eval.chosen") is None:
        return cfg
    data = OmegaConf.to_container(cfg, resolve=True)
    chosen = data["eval"].pop("chosen") or {}
    for name in list(data["eval"].get("tasks") or {}):
        if chosen.get(name):
            continue
        del data["eval"]["tasks"][name]
        if any(key == f"eval.tasks.{name}" or key.startswith(f"eval.tasks.{name}.") for key in argv_keys):
            picked = [*(n for n in chosen if chosen[n]), name]
            log.warning(
                "eval.tasks.%s: options set, but the eval group does not pick this task, so it does not run "
                "(to run it: eval=[%s])",
                name,
                ",".join(picked),
            )
    return OmegaConf.create(data)


def _select(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        try:
            node = node.get(part) if node is not None else None
        except AttributeError:
            return None
    return node
