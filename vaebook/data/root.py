"""Where the data lives: an explicit argument, else ``$VAEBOOK_DATA``, else ``./data``."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import ENV_HINT, MissingDataError

ENV_VAR = "VAEBOOK_DATA"


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """Return the data root (not checked for existence): ``root``, ``$VAEBOOK_DATA`` or ``./data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path("data")


def require_dir(path: Path, what: str) -> Path:
    """Raise :class:`MissingDataError` naming ``path`` unless it is a directory."""
    if not path.is_dir():
        raise MissingDataError(f"{what} not found: {str(path)!r} is not a directory. {ENV_HINT}")
    return path
