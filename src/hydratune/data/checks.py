"""The data stage's check of a spec: every source's format trains the chosen method (and is a
format at all), the trained roles are roles, mixtures are SFT's, and a held-out split exists."""

from __future__ import annotations

from pathlib import Path

from hydratune.config.problems import Problem, did_you_mean
from hydratune.config.registry import choice_problem, is_custom
from hydratune.config.spec import RunSpec
from hydratune.data.format_registry import FORMATS
from hydratune.data.formats import ROLES
from hydratune.data.preference_formats import FORMATS_FOR_KIND, ROW_KINDS


def data_problems(spec: RunSpec) -> list[Problem]:
    out = []
    m, ds = spec.method, spec.dataset
    kind = ROW_KINDS[m.name]
    for src in (ds, *ds.mix):
        unknown = choice_problem("dataset.format", src.format, FORMATS)
        if unknown is not None:
            out.append(unknown)
        elif not is_custom(src.format) and src.format not in FORMATS_FOR_KIND[kind]:
            out.append(
                Problem(
                    f"dataset.format={src.format}",
                    f"method={m.name} cannot train on it",
                    f"set dataset.format= to one of: {', '.join(FORMATS_FOR_KIND[kind])}, and dataset.path= to rows "
                    f"of that kind (offline pairs: generated:arithmetic_preferences); or pick a method that trains on "
                    f"{src.format} rows",
                )
            )
    if ds.mix and m.name != "sft":
        out.append(
            Problem(
                "dataset.mix",
                f"mixtures are built for SFT only, not method={m.name}",
                "train on one source (dataset.mix=[])",
            )
        )
    for role in ds.train_roles:
        if role not in ROLES:
            out.append(
                Problem(
                    f"dataset.train_roles={role}",
                    "not a role, so no turn would be trained",
                    did_you_mean(role, ROLES) or f"use roles among: {', '.join(ROLES)}",
                )
            )
    if ds.eval_split and Path(ds.path).expanduser().is_file():
        out.append(
            Problem(
                f"dataset.eval_split={ds.eval_split}",
                f"{ds.path} is a single file: it has no '{ds.eval_split}' split",
                "set dataset.eval_split=null dataset.eval_fraction=0.05, or point dataset.path at a folder with train "
                "and test files",
            )
        )
    return out
