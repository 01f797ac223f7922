"""Results on disk: the run folder (:class:`Run`), its provenance, and finding the largest-scale results.

Layout (user-facing, stable)::

    <results_dir>/<preset>/<experiment>/
        table*.csv        long comparison rows: paper, ours, verdict, reason
        metrics.json      everything else the page shows
        *.png             figures
        provenance.json   written LAST: a folder without it is not a complete run

A run writes into its own ``<experiment>.partial-<id>/`` folder while holding ``<experiment>.lock``
(a second run of the same experiment into the same folder is refused), then swaps it into place:
final → ``.old``, partial → final, ``.old`` removed. A crash between the two renames is repaired the
next time the folder is read (``.old`` is restored). Paths in provenance are relative to the repository.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import platform
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from vaebook.io import atomic_write_bytes, atomic_write_text
from vaebook.lab.untrusted import check_run_folder, read_results_files

PROVENANCE = "provenance.json"
REPO = Path(__file__).resolve().parents[2]


class RunInProgressError(RuntimeError):
    """Another run holds the lock of this results folder."""


# -- provenance -------------------------------------------------------------------------------
def repo_relative(path) -> str:
    """``path`` relative to the repository when inside it; else only its last two parts (no machine path)."""
    p = Path(os.path.expanduser(str(path))).resolve()
    try:
        return p.relative_to(REPO).as_posix() or "."
    except ValueError:
        return "…/" + "/".join(p.parts[-2:])


def git_revision(root: Optional[Path] = None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding vaebook."""
    root = root or REPO
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                            capture_output=True, text=True, timeout=10)
        dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        sha, dirty = None, None
    return {"commit": sha, "dirty": dirty}


def device_description(device: str = "auto") -> dict:
    """The resolved device: ``{"device": "cpu"|"cuda:0", "name": ..., "threads": ...}`` (and on a CPU its
    ``capability``, e.g. ``"AVX512"``: machines of this project differ in it, and speed with it)."""
    import torch

    from vaebook.train import resolve_device

    dev = resolve_device(device)
    info = {"device": str(dev), "threads": torch.get_num_threads()}
    if dev.type == "cuda":
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        info["device"] = f"cuda:{idx}"
        info["name"] = torch.cuda.get_device_name(idx)
    else:
        info["name"] = platform.processor() or platform.machine() or "cpu"
        info["capability"] = torch.backends.cpu.get_cpu_capability()  # e.g. AVX2 or AVX512: fp32/bf16 speed differ
    return info


def library_versions() -> dict:
    import numpy
    import sklearn
    import torch

    import vaebook

    return {"python": platform.python_version(), "torch": torch.__version__, "vaebook": vaebook.__version__,
            "numpy": numpy.__version__, "sklearn": sklearn.__version__}


def fmt_duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def provenance_label(prov: dict) -> str:
    """One line for the book, e.g. ``preset medium · cpu (2 threads) · 2026-11-24 · rev abc1234 · 20.9 min``."""
    dev = prov.get("device", {}) or {}
    if str(dev.get("device", "cpu")).startswith("cuda"):
        d = f"{dev.get('device')} ({dev.get('name', 'GPU')})"
    else:
        n = dev.get("threads", "?")
        d = f"cpu ({n} thread{'' if n == 1 else 's'})"
    date = str(prov.get("end_time") or prov.get("start_time") or "?")[:10]
    rev = (prov.get("git") or {}).get("commit")
    rev_s = f"rev {rev[:7]}" if rev else "rev unknown"
    if (prov.get("git") or {}).get("dirty"):
        rev_s += "+changes"
    wall = prov.get("wall_s")
    wall_s = f" · this sitting {fmt_duration(wall)}" if isinstance(wall, (int, float)) else ""
    tr = prov.get("training")
    if isinstance(tr, dict) and isinstance(tr.get("train_wall_s"), (int, float)) and tr.get("models"):
        miss = len(tr.get("not_recorded") or [])
        wall_s += (f" · training {fmt_duration(tr['train_wall_s'])} over {tr['models']} model"
                   f"{'' if tr['models'] == 1 else 's'} ({tr.get('reused', 0)} reused"
                   + (f", {miss} not recorded" if miss else "") + ")")
    return f"preset {prov.get('preset', '?')} · {d} · {date} · {rev_s}{wall_s}"


def jsonable(obj):
    """numpy/torch scalars, Paths and tuples made JSON-serialisable (NaN/inf → None)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return repo_relative(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# -- the run folder ---------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(final_dir: Path) -> None:
    """Repair a swap cut short: ``final`` missing but ``.old`` complete → restore ``.old``."""
    old = final_dir.with_name(final_dir.name + ".old")
    if final_dir.is_symlink() or old.is_symlink():
        return  # never rename or delete through a link (reading refuses one that points outside)
    if old.is_dir() and not (final_dir / PROVENANCE).is_file() and (old / PROVENANCE).is_file():
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(old, final_dir)


PATH_PARAMS = ("results_dir", "data_root")


class Run:
    """The results folder of one experiment run at one preset (see the module docstring).

    Use as a context manager: on a clean exit :meth:`finish` swaps the results into place; on an error the
    partial folder is removed and the previous complete results stay.
    """

    def __init__(self, name: str, params: dict, results_dir=None):
        self.name = name
        self.params = dict(params)
        self.preset = str(self.params.get("preset", "smoke"))
        self.results_dir = Path(os.path.expanduser(str(results_dir or self.params.get("results_dir") or "results")))
        root = self.results_dir / self.preset
        self.final_dir = root / name
        check_run_folder(root, self.final_dir, self.results_dir)  # before anything is written
        root.mkdir(parents=True, exist_ok=True)
        self.lock = root / f"{name}.lock"
        self._take_lock()
        recover(self.final_dir)
        for stale in root.glob(f"{name}.partial-*"):  # left by a crashed run (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        self.partial_dir = root / f"{name}.partial-{uuid.uuid4().hex[:8]}"
        self.partial_dir.mkdir()
        self.out_dir = self.partial_dir
        self.start_time = _dt.datetime.now(_dt.timezone.utc)
        self._t0 = time.perf_counter()
        self.finished = False
        self.tables: dict = {}
        self.extra_provenance: dict = {}

    def _take_lock(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.lock.read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    pid = -1
                if pid > 0 and _pid_alive(pid):
                    raise RunInProgressError(
                        f"another run of {self.name!r} (pid {pid}) is writing {repo_relative(self.final_dir)}; wait "
                        f"for it to end, or use another results_dir. If no such run exists, delete "
                        f"{repo_relative(self.lock)}.") from None
                self.lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(f"{os.getpid()}\n")
            return
        raise RunInProgressError(f"could not take {repo_relative(self.lock)}; delete it if no run is active.")

    def _release(self) -> None:
        try:
            if self.lock.read_text().split()[0] == str(os.getpid()):
                self.lock.unlink()
        except (OSError, IndexError):
            pass

    def _check_open(self):
        if self.finished:
            raise RuntimeError(f"Run({self.name!r}) is finished; its results are in {repo_relative(self.final_dir)}")
        if not self.partial_dir.is_dir():
            raise RuntimeError(f"the run folder {repo_relative(self.partial_dir)} vanished while {self.name!r} was "
                               "writing it; nothing was published. Re-run.")

    def path(self, name: str) -> Path:
        self._check_open()
        return self.out_dir / name

    def write_table(self, name: str, df) -> Path:
        from vaebook.lab.compare import VERDICTS

        self._check_open()
        if "verdict" in getattr(df, "columns", []):
            bad = sorted(set(df["verdict"].dropna()) - set(VERDICTS))
            if bad:
                raise ValueError(f"table {name!r} has verdicts {bad}; expected only {VERDICTS} (or none: not run)")
        stem = name[:-4] if name.endswith(".csv") else name
        self.tables[stem] = df
        return atomic_write_text(self.out_dir / f"{stem}.csv", df.to_csv(index=False))

    def write_metrics(self, d: dict, name: str = "metrics.json") -> Path:
        """Merge ``d`` into ``metrics.json``."""
        self._check_open()
        p = self.out_dir / name
        old = json.loads(p.read_text()) if p.exists() else {}
        old.update(jsonable(d))
        return atomic_write_text(p, json.dumps(old, indent=1, sort_keys=True))

    def save_figure(self, fig, name: str, dpi: int = 200) -> Path:
        import matplotlib.pyplot as plt

        self._check_open()
        stem = name[:-4] if name.endswith(".png") else name
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        return atomic_write_bytes(self.out_dir / f"{stem}.png", buf.getvalue())

    def provenance(self) -> dict:
        end = _dt.datetime.now(_dt.timezone.utc)
        try:
            dev = device_description(self.params.get("device", "auto"))
        except Exception as e:  # noqa: BLE001 - provenance must not fail the run
            dev = {"device": str(self.params.get("device")), "error": str(e)}
        params = {k: (repo_relative(v) if k in PATH_PARAMS and v is not None else v) for k, v in self.params.items()}
        return jsonable({
            "notebook": self.name, "preset": self.preset, "parameters": params, "device": dev,
            "versions": library_versions(), "git": git_revision(),
            "start_time": self.start_time.isoformat(timespec="seconds"),
            "end_time": end.isoformat(timespec="seconds"), "wall_s": round(time.perf_counter() - self._t0, 2),
            **self.extra_provenance})

    def finish(self) -> Path:
        """Write ``provenance.json`` last, swap the folder into place, release the lock."""
        self._check_open()
        atomic_write_text(self.out_dir / PROVENANCE, json.dumps(self.provenance(), indent=1))
        old = self.final_dir.with_name(self.final_dir.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if self.final_dir.exists():
            os.replace(self.final_dir, old)
        os.replace(self.partial_dir, self.final_dir)
        shutil.rmtree(old, ignore_errors=True)
        self.out_dir = self.final_dir
        self.finished = True
        self._release()
        return self.final_dir

    def abort(self) -> None:
        shutil.rmtree(self.partial_dir, ignore_errors=True)
        self._release()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and not self.finished:
            self.finish()
        elif exc_type is not None:
            self.abort()
        return False


# -- reading ----------------------------------------------------------------------------------
@dataclass
class Results:
    """A complete results folder, loaded."""

    preset: str
    path: Path
    provenance: dict
    metrics: dict
    tables: dict
    figures: dict
    smoke: bool = False

    @property
    def label(self) -> str:
        return provenance_label(self.provenance)

    @property
    def preset_independent(self) -> bool:
        return bool(self.provenance.get("preset_independent"))

    @property
    def is_smoke(self) -> bool:
        """Smoke numbers: never results."""
        return self.smoke and not self.preset_independent


def load_results(path, smoke_presets: Sequence[str] = ("smoke",)) -> Results:
    """The results folder ``path``, read through :mod:`vaebook.lab.untrusted` (links, schema, no markup):
    :class:`~vaebook.lab.untrusted.ResultsFileError` names the file and field at fault."""
    path = Path(path)
    recover(path)
    prov_p = path / PROVENANCE
    if not prov_p.is_file():
        raise FileNotFoundError(f"{repo_relative(path)} holds no {PROVENANCE}: not a complete run (re-run it in "
                                "compute mode).")
    prov, metrics, tables, figures = read_results_files(path)  # untrusted input: checked before any use
    preset = prov.get("preset", path.parent.name)
    return Results(preset, path, prov, metrics, tables, figures, smoke=preset in smoke_presets)


def find_results(results_dir, name: str, presets_largest_first: Sequence[str],
                 smoke_presets: Sequence[str] = ("smoke",), table: Optional[str] = None) -> Optional[Results]:
    """The largest-scale complete results of ``name`` (presets tried in the given order), or None. With
    ``table``, only results that hold that table count (a run of part of an experiment, e.g. one of its
    tables, leaves the others to a smaller preset's results)."""
    root = Path(os.path.expanduser(str(results_dir)))
    for preset in presets_largest_first:
        d = root / preset / name
        recover(d)
        if (d / PROVENANCE).is_file() and (table is None or (d / f"{table}.csv").is_file()):
            return load_results(d, smoke_presets)
    return None


__all__ = ["Run", "Results", "RunInProgressError", "load_results", "find_results", "provenance_label",
           "git_revision", "device_description", "library_versions", "jsonable", "repo_relative", "recover",
           "PROVENANCE", "REPO", "fmt_duration"]
