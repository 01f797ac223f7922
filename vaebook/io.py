"""Atomic writes: an interrupted run never leaves a half-written file (tmp file ``.<name>.*.tmp``, fsync,
``os.replace``, fsync of the folder)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch


def _default_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file (0o666 minus the umask); ``mkstemp`` makes 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _tmp_beside(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _default_mode())  # results are shared files, not private temp files
    finally:
        os.close(fd)
    return tmp


def _fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory`` (best effort: not every OS can open a folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_tmp(directory: str | os.PathLike, names) -> list[Path]:
    """Delete the temp files (``.<name>.*.tmp``) an interrupted atomic write of ``names`` left in ``directory``."""
    d = Path(directory)
    removed = []
    if not d.is_dir():
        return removed
    for name in names:
        for p in d.glob(f".{name}.*.tmp"):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``. torch reports a full disk as
    ``RuntimeError: ... unexpected pos``; that (or any failed write) becomes an ``OSError`` naming the file
    and the free space on its disk."""
    path = Path(path)
    tmp = _tmp_beside(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except (RuntimeError, OSError) as e:
        free = shutil.disk_usage(path.parent).free
        raise OSError(f"could not write {str(path)!r} ({e}); {free / 2**30:.2f} GiB free on its disk. Free space "
                      "there or write elsewhere (results_dir / --results-dir).") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
