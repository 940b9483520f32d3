"""Where hydratune keeps what it can rebuild: converted models and tokenized shards."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(configured: str | None = None) -> Path:
    """run.cache_dir, else $HYDRATUNE_CACHE, else ~/.cache/hydratune (XDG_CACHE_HOME respected)."""
    if configured:
        return Path(configured).expanduser().resolve()
    if os.environ.get("HYDRATUNE_CACHE"):
        return Path(os.environ["HYDRATUNE_CACHE"]).expanduser().resolve()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (base / "hydratune").resolve()
