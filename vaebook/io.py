"""Atomic writes: an interrupted run never leaves a half-written file (tmp file ``.<name>.*.tmp``, fsync,
``os.replace``, fsync of the folder). Checked reads of cache files: :func:`load_torch_file` turns a truncated,
corrupt or planted file into one :class:`CorruptCacheError` naming it and the fix."""
from __future__ import annotations

import os
import pickle
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


class CorruptCacheError(RuntimeError):
    """A cache file (trained model, checkpoint, cached evaluation) is cut short, damaged or holds objects a
    weights-only load refuses; the message names the file and how to rebuild it."""


def load_torch_file(path: str | os.PathLike, fix: str, map_location="cpu"):
    """``torch.load(path, weights_only=True)``; a truncated, corrupt or planted file raises
    :class:`CorruptCacheError` ("corrupt cache entry <path>: <why>. Delete it or <fix>") instead of PyTorch's
    raw zip or unpickling error. A missing or unreadable (permissions) file raises its ``OSError`` unchanged."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except pickle.UnpicklingError:
        why = ("it holds objects other than tensors and plain containers, which a weights-only load refuses "
               "(the file may have been planted)")
    except Exception as e:  # noqa: BLE001 - any other failure to parse the file means it is damaged
        first = (str(e).strip().splitlines() or [""])[0][:160]
        why = f"it is truncated or not a file torch.save wrote ({type(e).__name__}: {first})"
    raise CorruptCacheError(f"corrupt cache entry {os.fspath(path)}: {why}. Delete it or {fix}.")


def discard(path: str | os.PathLike) -> bool:
    """Remove ``path`` if it exists (a corrupt cache entry before its rebuild); True when something was removed."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False
