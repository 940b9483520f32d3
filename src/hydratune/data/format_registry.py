"""Every row format by name: the SFT ones (formats.py), the post-training ones
(preference_formats.py), or the user's own `module:function`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from hydratune.config.registry import import_custom, is_custom, resolve
from hydratune.data.errors import RowError
from hydratune.data.formats import SFT_FORMATS, Example, FormatOptions, with_system
from hydratune.data.preference_formats import POST_TRAINING_FORMATS, POST_TRAINING_ROWS

Converter = Callable[[Mapping[str, Any], FormatOptions], Any]

FORMATS: dict[str, Converter] = {**SFT_FORMATS, **POST_TRAINING_FORMATS}


def resolve_format(name: str) -> Converter:
    """A built-in format by name, or a user's `module:function` whose result is checked row by row."""
    fn = resolve("dataset.format", name, FORMATS)
    if not is_custom(name):
        return fn

    def custom(row: Mapping[str, Any], options: FormatOptions) -> Example:
        result = fn(row, options)
        if isinstance(result, (Example, *POST_TRAINING_ROWS)):
            return result
        if isinstance(result, list):
            return Example(messages=with_system(list(result), options))
        raise RowError(
            "bad custom format",
            f"{name} returned {type(result).__name__}",
            "return an Example (or PreferencePair, UnpairedExample, PromptExample) or a list of {role, content}",
        )

    return custom


def format_source_text(name: str) -> str:
    """The source of the module that defines the converter (the whole file, so a change in a
    helper it calls counts too): part of the cache key, so editing a format rebuilds."""
    fn = FORMATS.get(name) or import_custom(name)
    module = inspect.getmodule(fn)
    try:
        return inspect.getsource(module) if module is not None else inspect.getsource(fn)
    except (OSError, TypeError):
        return name
