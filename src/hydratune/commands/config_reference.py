"""docs/configuration.md, generated from the RunSpec's fields and their docs.

hydratune-config-reference            # rewrite docs/configuration.md
hydratune-config-reference --check    # exit 1 if it is stale (the tests run this)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

from hydratune.config.spec import KEY_ALIASES, RunSpec
from hydratune.config.spec_builder import _dataclass_in, _registry

DEFAULT_PATH = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return f"{_type_name(inner[0])} or null"
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is tuple:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "section"
    return getattr(tp, "__name__", str(tp))


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return ""
    text = repr(list(value) if isinstance(value, tuple) else value)
    return f"`{text}`".replace("|", "\\|") if len(text) < 60 else f"`{text[:57]}...`"


def _range(meta: dict) -> str:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return ", ".join(f"{words[k]} {meta[k]}" for k in words if k in meta)


def _section(cls: type, prefix: str, out: list[str]) -> None:
    hints = typing.get_type_hints(cls)
    rows, nested = [], []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        inner = _dataclass_in(hints[f.name])
        if inner is not None and get_origin(hints[f.name]) is not tuple:
            nested.append((inner, key, f.metadata.get("doc", "")))
            continue
        if inner is not None:  # a list of sections: document the keys of one item
            nested.append((inner, key + "[]", f"Each item of `{key}` takes these keys."))
        doc = f.metadata.get("doc", "").replace("|", "\\|")
        limits = _range(f.metadata)
        rows.append(
            f"| `{key}` | {_type_name(hints[f.name])} | {_default(f)} | {doc}{f' ({limits})' if limits else ''} |"
        )
        for name, options in _registry(f).items():
            nested.append((options, f"{key}.{name}", f"Options of the `{name}` task."))
    if rows:
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for inner, key, doc in nested:
        out += [f"{'#' * min(2 + key.count('.'), 4)} `{key}`", "", doc, ""]
        _section(inner, key + ".", out)


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the `RunSpec` dataclasses (`src/hydratune/config/spec.py` and the evaluation tasks) by",
        "`hydratune-config-reference`; a test fails when this file is stale. Every key can be set on the",
        "command line (`train optim.learning_rate=1e-4`); YAML files under `configs/` hold only what differs",
        "from these defaults.",
        "",
        "Aliases: " + ", ".join(f"`{a}` means `{t}`" for a, t in KEY_ALIASES.items()) + ".",
        "",
    ]
    _section(RunSpec, "", out)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hydratune-config-reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from what the code generates")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not args.path.is_file() or args.path.read_text() != text:
            print(f"{args.path} is stale: run hydratune-config-reference", file=sys.stderr)
            sys.exit(1)
        return
    args.path.parent.mkdir(parents=True, exist_ok=True)
    args.path.write_text(text)
    print(f"wrote {args.path}")


if __name__ == "__main__":
    main(sys.argv[1:])
