"""The console scripts: one thin module per command (setup.cfg names them).

Ctrl-C ends every command with one line and exit status 130, never a traceback: the commands catch
it (commands/cli.py, `interrupted_exits`), and while a script is still importing, before any command
code runs, the hook installed here does. Every artifact is written to a scratch name and renamed
into place, so an interrupted command leaves nothing half-written that a later one reads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INTERRUPTED = "interrupted; nothing half-written is kept"
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a command Ctrl-C ended

_SCRIPTS = {"train", "preprocess", "hydratune-export", "hydratune-eval", "hydratune-chat", "hydratune-config-reference"}


def _runs_a_console_script() -> bool:
    """A console script of setup.cfg, or `python -m hydratune.commands.<name>` (argv[0] is "-m" while
    the package is imported): a program that merely imports hydratune keeps Python's own Ctrl-C."""
    return Path(sys.argv[0]).name in _SCRIPTS or sys.argv[0] == "-m" if sys.argv else False


def _quiet_interrupt_hook(previous):
    def hook(kind, value, traceback) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            previous(kind, value, traceback)
            return
        print(INTERRUPTED, file=sys.stderr, flush=True)
        sys.stdout.flush()
        # Python itself would print the traceback and die by SIGINT; nothing has started yet to clean up.
        os._exit(INTERRUPTED_EXIT_CODE)

    return hook


if _runs_a_console_script():
    sys.excepthook = _quiet_interrupt_hook(sys.excepthook)
