"""One validator above the stages: every stage's check of the spec, gathered and raised together
before any download, tokenization or training starts.

Each stage knows its own rules (a format registry, a reward registry, the support matrix,
the harness's tasks); the configuration layer below them knows none of it.
"""

from __future__ import annotations

from hydratune.config.environment import Environment
from hydratune.config.problems import raise_if_any
from hydratune.config.spec import RunSpec
from hydratune.config.supported_versions import version_problems
from hydratune.data.checks import data_problems
from hydratune.evaluate.checks import eval_problems
from hydratune.models.checks import model_problems
from hydratune.rewards import reward_problems
from hydratune.training.checks import training_problems


def check_run_spec(spec: RunSpec, env: Environment) -> None:
    """ConfigError listing every problem of the spec on this machine, whichever stage found it."""
    raise_if_any(
        [
            *version_problems(env.versions, packages_used(spec)),
            *model_problems(spec, env),
            *data_problems(spec),
            *reward_problems(spec),
            *training_problems(spec, env),
            *eval_problems(spec, env),
        ]
    )


def packages_used(spec: RunSpec) -> set[str]:
    """The optional packages of the stack this run imports."""
    used = set()
    if spec.sharding.strategy == "deepspeed":
        used.add("deepspeed")
    if spec.method.weights == "qlora" or spec.optim.name == "adamw_8bit":
        used.add("bitsandbytes")
    return used
