"""Compares a resolved environment (`pip list --format=freeze`) with the tested set (constraints.txt).

    python .ci/compare_releases.py constraints.txt RESOLVED [--write NEW_CONSTRAINTS]

Prints each package whose release differs, was added or is gone; with --exact, any such is an error. With --write, writes the resolved set
in constraints.txt's form (its header kept, hydratune itself left out, torch's local build tag dropped so
one line serves the CPU and CUDA wheels): what to copy over constraints.txt once the suite passed on it.
"""

import argparse
import re
from pathlib import Path


def read(path: Path) -> tuple[list[str], dict[str, str]]:
    header, pins = [], {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            header.append(line)
        elif "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return header, pins


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("tested", type=Path)
    parser.add_argument("resolved", type=Path)
    parser.add_argument("--write", type=Path)
    parser.add_argument("--exact", action="store_true", help="exit 1 if anything differs")
    args = parser.parse_args()
    header, tested = read(args.tested)
    _, resolved = read(args.resolved)
    for name in ("hydratune", "pip", "setuptools", "wheel"):  # the package itself, and the venv's own tools
        resolved.pop(name, None)
    if "torch" in resolved:
        resolved["torch"] = resolved["torch"].split("+")[0]
    changes = [
        f"  {name}: {tested.get(name, 'absent')} -> {resolved.get(name, 'absent')}"
        for name in sorted(set(tested) | set(resolved))
        if tested.get(name) != resolved.get(name)
    ]
    print(f"releases differing from {args.tested}: {len(changes)}", *changes, sep="\n")
    if args.write:
        lines = [*header, *(f"{name}=={version}" for name, version in sorted(resolved.items()))]
        args.write.write_text("\n".join(lines) + "\n")
        print(f"this environment as a constraints file: {args.write}")
    if args.exact and changes:
        raise SystemExit(f"the environment is not the tested set in {args.tested}")


if __name__ == "__main__":
    main()
