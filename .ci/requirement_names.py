"""Prints setup.cfg's requirements by name alone, one a line: the package's and those of the extras named
in argv[1] (comma-separated). `.ci/try-newest` installs them so, to get the newest releases past the
upper bounds. An exact pin (ruff's: a formatter release restyles code) stays as it is, and torch is
left out: the newest torch on the registry is a CUDA build."""

import configparser
import re
import sys
from pathlib import Path

config = configparser.ConfigParser()
config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
lines = config["options"]["install_requires"].splitlines()
for extra in filter(None, sys.argv[1].split(",") if len(sys.argv) > 1 else []):
    lines += config["options.extras_require"][extra].splitlines()
for line in lines:
    line = line.split("#")[0].strip()
    name = re.match(r"[A-Za-z0-9_.-]+(\[[A-Za-z0-9_,.-]+\])?", line)
    if name and name.group(0) != "torch":
        print(line if "==" in line else name.group(0))
