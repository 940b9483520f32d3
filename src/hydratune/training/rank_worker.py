"""One training rank started by `train`'s self-launch: `python -m hydratune.training.rank_worker RUN_DIR`.

It reads the resolved spec the parent wrote (every override included) and runs fit().
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydratune.config.environment import detect_environment
from hydratune.outputs.run_record import load_spec
from hydratune.training.fit import fit


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][rank %(process)d][%(name)s] %(message)s")
    fit(load_spec(Path(argv[0])), detect_environment())


if __name__ == "__main__":
    main(sys.argv[1:])
