"""Named choices with a way out: a built-in name, or the user's own `module:function`.

Data formats and GRPO rewards are chosen this way (`dataset.format=alpaca` or
`dataset.format=my_pkg.rows:convert`). A name that is neither, or a `module:function`
that does not import, is one problem naming the key and the choices, found at validation.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Optional

from hydratune.config.problems import ConfigError, Problem, did_you_mean


def is_custom(name: str) -> bool:
    """A user's `module:function` rather than a built-in name."""
    return ":" in name


def import_custom(name: str) -> Any:
    """The object `module:function` names (ImportError or AttributeError when it does not load)."""
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def choice_problem(key: str, name: str, builtins: Mapping[str, Any]) -> Optional[Problem]:
    """Why `name` chooses nothing among `builtins` or by `module:function` (None when it does)."""
    if name in builtins:
        return None
    if not is_custom(name):
        return Problem(
            f"{key}={name}",
            "unknown name",
            did_you_mean(name, builtins) or f"use one of: {', '.join(builtins)}, or module:function",
        )
    try:
        import_custom(name)
    except (ImportError, AttributeError) as exc:
        return Problem(
            f"{key}={name}",
            f"cannot import it ({exc})",
            "make the module importable (on PYTHONPATH) and define the function in it",
        )
    return None


def resolve(key: str, name: str, builtins: Mapping[str, Any]) -> Any:
    """The built-in `name`, or what `module:function` names; ConfigError with the choices otherwise."""
    problem = choice_problem(key, name, builtins)
    if problem is not None:
        raise ConfigError([problem])
    return builtins[name] if name in builtins else import_custom(name)
