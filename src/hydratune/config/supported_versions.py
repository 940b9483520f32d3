"""The oldest releases of the fast-moving stack that hydratune runs on, checked at start.

pip holds an installed hydratune to setup.cfg's ranges, but a machine can hold older releases
that pip never saw: a GPU image's own torch and transformers with the package on PYTHONPATH, or a
venv upgraded around it. On those a run is refused before any work, naming the package, the
version found and the one needed, instead of failing halfway with an AttributeError.

Each floor is a release the suite has passed on (constraints.txt holds the newest tested set);
setup.cfg's lower bounds are the same figures, and a test holds them equal.
"""

from __future__ import annotations

import importlib.metadata

from packaging.version import Version

from hydratune.config.problems import Problem

# torch 2.11 is the lent GPU machines' build, where bench/gpu_harness.py runs: not yet run there.
OLDEST = {
    "torch": "2.11",
    "transformers": "5.24",
    "peft": "0.21",
    "trl": "1.16",
    "accelerate": "1.15",
    "datasets": "5.2",
}
# Needed only by the runs that use them.
OLDEST_OPTIONAL = {"deepspeed": "0.19", "bitsandbytes": "0.50"}


def installed_versions() -> tuple[tuple[str, str], ...]:
    """(package, version) of each package above that is installed."""
    found = []
    for name in (*OLDEST, *OLDEST_OPTIONAL):
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            pass
    return tuple(found)


def version_problems(versions: tuple[tuple[str, str], ...], used: set[str]) -> list[Problem]:
    """A problem for each installed package older than its floor; optional ones only if `used`."""
    floors = {**OLDEST, **{name: v for name, v in OLDEST_OPTIONAL.items() if name in used}}
    problems = []
    for name, version in versions:
        floor = floors.get(name)
        # By release alone: '2.13.0+cpu' is 2.13.0, and a pre-release of the floor is the floor.
        if floor is not None and Version(version).release < Version(floor).release:
            problems.append(
                Problem(
                    f"package {name}",
                    f"{version} is installed, hydratune needs {floor} or newer",
                    f"pip install -c constraints.txt '{name}>={floor}' (constraints.txt is the tested set)",
                )
            )
    return problems
