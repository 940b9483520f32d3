"""Make, print and record the plan of a run (shared by `train` and its dry run)."""

from __future__ import annotations

import logging

from .cache_dirs import cache_root
from .environment import detect_environment
from .plan import Plan, make_plan, render_plan, write_plan
from .problems import ConfigError, Problem
from .spec import RunSpec

log = logging.getLogger(__name__)


def plan_run(spec: RunSpec, *, quiet: bool = False) -> Plan:
    """The plan from the model's config alone (no weights, no data), printed and saved as plan.json."""
    from .model_loading import load_model_config

    try:
        config = load_model_config(spec.model, cache_root(spec.run.cache_dir), convert=False)
    except (OSError, ValueError) as error:  # Hub unreachable, gated, misspelled, or not a model directory
        raise ConfigError([Problem(f"model.name={spec.model.name}", f"cannot read the model's config ({str(error).splitlines()[0]})",
                                   "check the name and your network or HF token (huggingface-cli login), or use a local directory")]) from None
    plan = make_plan(spec, detect_environment(), config)
    if not quiet:
        print(render_plan(spec, plan), flush=True)
    write_plan(spec, plan, spec.output_dir)
    return plan
