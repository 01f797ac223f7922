"""On-disk cache of preprocessed image tensors (CelebA-64, CelebA-HQ-128).

Location: ``$VAEBOOK_CACHE`` if set, else ``<data root>/.cache/vaebook`` when the root is
writable, else ``~/.cache/vaebook`` (the shared data folder is read-only).  Entries are keyed
by a SHA-256 of everything that determines their content (file names, sizes, mtimes and the
preprocessing parameters) and are written atomically (temporary file + ``os.replace``), so an
interrupted run never leaves a partial entry behind.  Writing an entry removes the entries it supersedes
(same recipe, older file signatures), so a data folder copied afresh each session (new mtimes) keeps
one entry, not one per session.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path

import torch

CACHE_ENV_VAR = "VAEBOOK_CACHE"
CACHE_FORMAT_VERSION = 1


def _mode_allows_write(path: Path) -> bool:
    """Write permission by the mode bits *and* ``os.access``: root ignores the bits, but a folder
    marked read-only (like the shared data folder) must not receive a cache."""
    st = os.stat(path)
    if st.st_uid == os.geteuid():
        bit = stat.S_IWUSR
    elif st.st_gid == os.getegid() or st.st_gid in os.getgroups():
        bit = stat.S_IWGRP
    else:
        bit = stat.S_IWOTH
    return bool(st.st_mode & bit) and os.access(path, os.W_OK | os.X_OK)


def _usable(path: Path, guard: Path | None = None) -> bool:
    """Create ``path`` if needed and say whether it is writable; with ``guard``, the existing
    ``guard`` folder must itself be writable by its mode bits before anything is created in it."""
    try:
        if guard is not None and not (guard.is_dir() and _mode_allows_write(guard)):
            return False
        path.mkdir(parents=True, exist_ok=True)
        return _mode_allows_write(path)
    except OSError:
        return False


def cache_dir(root: Path) -> Path:
    """The cache folder for data under ``root`` (created if needed)."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        candidates = [(Path(env).expanduser(), None)]
    else:
        candidates = [(Path(root) / ".cache" / "vaebook", Path(root))]
    candidates += [(Path.home() / ".cache" / "vaebook", None),
                   (Path(tempfile.gettempdir()) / "vaebook-cache", None)]
    for c, guard in candidates:
        if _usable(c, guard):
            return c
    raise OSError(f"no writable cache folder among {[str(c) for c, _ in candidates]}; set {CACHE_ENV_VAR}.")


def cache_key(payload: dict) -> str:
    """SHA-256 (hex, 24 chars) of a JSON-serialisable description of the inputs."""
    blob = json.dumps({"v": CACHE_FORMAT_VERSION, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def file_signature(paths) -> list:
    """``[name, size, mtime_ns]`` for each path: cheap and changes when a file does."""
    out = []
    for p in paths:
        st = os.stat(p)
        out.append([os.path.basename(p), st.st_size, st.st_mtime_ns])
    return out


def load_cached(path: Path):
    """Return the cached object at ``path`` or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        # memory-mapped: a hit costs no copy; the file is only ever replaced, never rewritten in place
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a corrupt entry is recomputed, never trusted
        return None


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def prune_superseded(path: Path, slot: str) -> list[Path]:
    """Remove the other entries named ``<slot>*.pt`` beside ``path`` (same recipe, other inputs); return them."""
    gone = []
    for old in Path(path).parent.glob(f"{slot}*.pt"):
        if old.name != Path(path).name:
            try:
                old.unlink()
                gone.append(old)
            except OSError:
                pass
    return gone
