"""One training rank started by `train`'s self-launch: `python -m hydratune.training.rank_worker RUN_DIR`.

It reads the resolved spec the parent wrote (every override included) and runs fit().
It dies with the process that started it, and a failure leaves its traceback in
<run>/errors/rank<N>.txt and one line on stderr, so `train` can report it once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from pathlib import Path

from hydratune.config.environment import detect_environment
from hydratune.config.spec_file import load_spec
from hydratune.run_layout import RunDirectory
from hydratune.training.launch import LAUNCHER_PID
from hydratune.training.upstream_patches import import_bitsandbytes_only_if_used


def die_with_launcher() -> None:
    """SIGKILL this rank when the `train` process that started it dies, even by SIGKILL (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    launcher = os.environ.get(LAUNCHER_PID)
    if launcher and os.getppid() != int(launcher):  # it died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> None:
    die_with_launcher()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][rank %(process)d][%(name)s] %(message)s")
    run_dir = Path(argv[0])
    rank = os.environ.get("RANK", "0")
    try:
        spec = load_spec(run_dir)
        import_bitsandbytes_only_if_used(spec)
        # Imported only now: the training stack imports peft, which may import bitsandbytes.
        from hydratune.training.fit import fit

        fit(spec, detect_environment())
    except Exception as error:
        keep_traceback(RunDirectory(run_dir).errors / f"rank{rank}.txt")
        print(f"rank {rank}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


def keep_traceback(path: Path) -> None:
    """The failing rank's traceback for the launcher to report; on a full disk there is no room for it,
    and the launcher reports the disk instead (launch.describe_failure)."""
    try:
        path.parent.mkdir(exist_ok=True)
        path.write_text(traceback.format_exc())
    except OSError:
        path.unlink(missing_ok=True)  # half a traceback would be reported as the cause


if __name__ == "__main__":
    main(sys.argv[1:])
