"""What every section driver and notebook shares: parameter validation, the results folder of a
run (:class:`Run`), finding the best results present (:func:`latest_results`), comparing with the
paper (:func:`verdict`) and labelling results with their provenance (:func:`provenance_label`).

Results layout (stable, user-facing)::

    results/<preset>/<notebook>/
        table*.csv        one row per paper row; columns include paper, ours, verdict, reason
        metrics.json      everything else the notebook shows
        *.png             figures
        provenance.json   written LAST by Run.finish(): a folder without it is an incomplete run

A run writes into ``results/<preset>/<notebook>.partial/`` and :meth:`Run.finish` swaps that folder
into place, so an interrupted re-run never damages the previous complete results.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from vaebook.io import atomic_write_bytes, atomic_write_text

PRESET_ORDER = ("full", "medium", "smoke")  # largest scale first
PRESETS = ("smoke", "medium", "full")
MODES = ("report", "compute")
NOTEBOOKS = ("theory", "smoothness", "noise_variance", "generation", "interpolation", "celebahq", "nll")
VERDICTS = ("match", "trend holds", "differs")
PROVENANCE = "provenance.json"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")
_MISSING = object()


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------
class ParameterError(ValueError):
    """A notebook/driver parameter is unknown or out of range; the message names it and what is allowed."""


@dataclass(frozen=True)
class ParamSpec:
    """What one parameter may be.

    ``kind``: ``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"list"`` (a list/tuple of items each
    checked against ``choices``/``min``/``max``/``item_kind``). ``choices``: the allowed values.
    ``min``/``max``: inclusive bounds (``min_exclusive`` makes ``min`` strict). ``allow_none``: None is
    allowed. ``pattern``: a regular expression a string must match. ``default``: used when the key is
    absent (absent and no default → error). ``doc``: a short description used in messages.
    """

    kind: str = "str"
    choices: Optional[tuple] = None
    min: Optional[float] = None
    max: Optional[float] = None
    min_exclusive: bool = False
    allow_none: bool = False
    pattern: Optional[str] = None
    item_kind: Optional[str] = None
    default: Any = _MISSING
    doc: str = ""

    def allowed(self) -> str:
        """Human description of the allowed values."""
        if self.choices is not None:
            s = "one of " + ", ".join(repr(c) for c in self.choices)
            if self.kind == "list":
                s = "a list of values from " + s[len("one of "):]
        else:
            kind = {"int": "an integer", "float": "a number", "str": "a string", "bool": "True or False",
                    "list": f"a list of {self.item_kind or 'values'}"}.get(self.kind, self.kind)
            bits = []
            if self.min is not None:
                bits.append(f"{'>' if self.min_exclusive else '>='} {self.min}")
            if self.max is not None:
                bits.append(f"<= {self.max}")
            if self.pattern:
                bits.append(f"matching {self.pattern}")
            s = kind + (" " + " and ".join(bits) if bits else "")
        return s + (" (or None)" if self.allow_none else "")


def _check_scalar(name: str, value, spec: ParamSpec, kind: str):
    def fail(why=""):
        raise ParameterError(f"parameter {name!r} = {value!r} is not allowed{why}; expected {spec.allowed()}"
                             + (f" ({spec.doc})" if spec.doc else "") + ".")

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                fail()
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            fail()
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            fail()
    elif kind == "str":
        if not isinstance(value, str):
            fail()
    if spec.choices is not None and value not in spec.choices:
        fail()
    if spec.min is not None and (value < spec.min or (spec.min_exclusive and value == spec.min)):
        fail()
    if spec.max is not None and value > spec.max:
        fail()
    if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
        fail()
    return value


def validate_params(params: dict, spec: dict) -> dict:
    """Check ``params`` against ``spec`` (name → :class:`ParamSpec`) and return a clean copy with defaults
    filled in. Unknown names and bad values raise :class:`ParameterError` naming the parameter and the
    allowed values."""
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; the known parameters are {sorted(spec)}.")
    out = {}
    for name, s in spec.items():
        if name in params:
            value = params[name]
        elif s.default is not _MISSING:
            value = s.default
        else:
            raise ParameterError(f"parameter {name!r} is required; expected {s.allowed()}.")
        if value is None:
            if not s.allow_none:
                raise ParameterError(f"parameter {name!r} may not be None; expected {s.allowed()}.")
            out[name] = None
            continue
        if s.kind == "list":
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ParameterError(f"parameter {name!r} = {value!r} is not a list; expected {s.allowed()}.")
            item_kind = s.item_kind or "str"
            out[name] = [_check_scalar(f"{name}[{i}]", v, s, item_kind) for i, v in enumerate(value)]
        else:
            out[name] = _check_scalar(name, value, s, s.kind)
    return out


COMMON_PARAMS: dict[str, ParamSpec] = {
    "preset": ParamSpec("str", choices=PRESETS, default="smoke",
                        doc="smoke = seconds on CPU (a test, not a result), medium = minutes on CPU, full = the paper"),
    "mode": ParamSpec("str", choices=MODES, default="report",
                      doc="report = read results/, compute = train and evaluate"),
    "device": ParamSpec("str", pattern=_DEVICE_RE.pattern, default="auto", doc="torch device"),
    "seed": ParamSpec("int", min=0, default=0),
    "data_root": ParamSpec("str", allow_none=True, default=None, doc="data folder; None = $VAEBOOK_DATA or ./data"),
    "results_dir": ParamSpec("str", default="results"),
    "epochs": ParamSpec("int", min=1, allow_none=True, default=None, doc="override the preset's epochs"),
}


def param_spec(**section: ParamSpec) -> dict:
    """``COMMON_PARAMS`` plus a section's own knobs."""
    return {**COMMON_PARAMS, **section}


# --------------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------------
def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def git_revision(root: Optional[Path] = None) -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository holding vaebook."""
    root = root or _repo_root()
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
    """The resolved device: ``{"device": "cpu"|"cuda:0", "name": ..., "threads": ...}``."""
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
    return info


def library_versions() -> dict:
    import numpy
    import sklearn
    import torch

    import vaebook

    return {"python": platform.python_version(), "torch": torch.__version__, "vaebook": vaebook.__version__,
            "numpy": numpy.__version__, "sklearn": sklearn.__version__}


def provenance_label(prov: dict) -> str:
    """One line for the book, e.g. ``preset medium · cpu (2 threads) · 2026-11-24 · rev abc1234``."""
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
    wall_s = f" · {_fmt_duration(wall)}" if isinstance(wall, (int, float)) else ""
    return f"preset {prov.get('preset', '?')} · {d} · {date} · {rev_s}{wall_s}"


def _fmt_duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


# --------------------------------------------------------------------------------------------
# a run's results folder
# --------------------------------------------------------------------------------------------
def _jsonable(obj):
    """Make numpy/torch scalars, Paths and tuples JSON-serialisable (NaN/inf → None)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class Run:
    """The results folder of one notebook run at one preset.

    ``Run(notebook, params)`` (``params`` validated, holding at least preset/device/seed/results_dir)
    creates ``results_dir/<preset>/<notebook>.partial/`` and writes there; :meth:`finish` writes
    ``provenance.json`` and moves the folder to ``results_dir/<preset>/<notebook>/`` (replacing an older
    run). ``out_dir`` is the folder being written during the run and the final one after ``finish``.
    As a context manager, ``finish`` runs on a clean exit; on an exception the partial folder stays
    (it is never read as results).
    """

    def __init__(self, notebook: str, params: dict):
        if notebook not in NOTEBOOKS:
            raise ParameterError(f"notebook {notebook!r} is unknown; expected one of {NOTEBOOKS}.")
        self.notebook = notebook
        self.params = dict(params)
        self.preset = self.params.get("preset", "smoke")
        if self.preset not in PRESETS:
            raise ParameterError(f"parameter 'preset' = {self.preset!r}; expected one of {PRESETS}.")
        self.results_dir = Path(self.params.get("results_dir") or "results")
        self.final_dir = self.results_dir / self.preset / notebook
        self.partial_dir = self.results_dir / self.preset / f"{notebook}.partial"
        if self.partial_dir.exists():
            shutil.rmtree(self.partial_dir)
        self.partial_dir.mkdir(parents=True)
        self.out_dir = self.partial_dir
        self.start_time = _dt.datetime.now(_dt.timezone.utc)
        self._t0 = time.perf_counter()
        self.finished = False
        self.tables: dict = {}
        self.extra_provenance: dict = {}

    # -- writing -------------------------------------------------------------------------------
    def _check_open(self):
        if self.finished:
            raise RuntimeError(f"Run({self.notebook!r}) is finished; its results are in {self.final_dir}")

    def path(self, name: str) -> Path:
        """A path inside the run's folder (for files the helpers below do not cover)."""
        self._check_open()
        return self.out_dir / name

    def write_table(self, name: str, df) -> Path:
        """Write ``df`` as ``<name>.csv`` (``name`` should start with ``table``)."""
        self._check_open()
        if "verdict" in getattr(df, "columns", []):
            bad = sorted(set(df["verdict"].dropna()) - set(VERDICTS))
            if bad:
                raise ValueError(f"table {name!r} has verdicts {bad}; expected only {VERDICTS}")
        stem = name[:-4] if name.endswith(".csv") else name
        self.tables[stem] = df
        return atomic_write_text(self.out_dir / f"{stem}.csv", df.to_csv(index=False))

    def write_metrics(self, d: dict, name: str = "metrics.json") -> Path:
        """Write a JSON dict (merged into an existing ``metrics.json``)."""
        self._check_open()
        p = self.out_dir / name
        old = json.loads(p.read_text()) if p.exists() else {}
        old.update(_jsonable(d))
        return atomic_write_text(p, json.dumps(old, indent=1, sort_keys=True))

    def save_figure(self, fig, name: str, dpi: int = 110) -> Path:
        """Save a matplotlib figure as ``<name>.png``."""
        self._check_open()
        stem = name[:-4] if name.endswith(".png") else name
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        return atomic_write_bytes(self.out_dir / f"{stem}.png", buf.getvalue())

    # -- closing -------------------------------------------------------------------------------
    def provenance(self) -> dict:
        end = _dt.datetime.now(_dt.timezone.utc)
        try:
            dev = device_description(self.params.get("device", "auto"))
        except Exception as e:  # noqa: BLE001 - provenance must not fail the run
            dev = {"device": str(self.params.get("device")), "error": str(e)}
        return _jsonable({
            "notebook": self.notebook, "preset": self.preset, "parameters": self.params,
            "device": dev, "versions": library_versions(), "git": git_revision(),
            "host": platform.node(), "start_time": self.start_time.isoformat(timespec="seconds"),
            "end_time": end.isoformat(timespec="seconds"), "wall_s": round(time.perf_counter() - self._t0, 2),
            **self.extra_provenance,
        })

    def finish(self) -> Path:
        """Write ``provenance.json`` last, then move the folder into place. Returns the final folder."""
        self._check_open()
        atomic_write_text(self.out_dir / PROVENANCE, json.dumps(self.provenance(), indent=1))
        old = self.results_dir / self.preset / f"{self.notebook}.old"
        if old.exists():
            shutil.rmtree(old)
        if self.final_dir.exists():
            os.replace(self.final_dir, old)
        os.replace(self.partial_dir, self.final_dir)
        if old.exists():
            shutil.rmtree(old)
        self.out_dir = self.final_dir
        self.finished = True
        return self.final_dir

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and not self.finished:
            self.finish()
        return False


# --------------------------------------------------------------------------------------------
# reading results
# --------------------------------------------------------------------------------------------
def latest_results(results_dir, notebook: str) -> Optional[tuple[str, Path]]:
    """``(preset, folder)`` of the largest-scale complete results of ``notebook`` (full > medium > smoke),
    or None. Only folders holding ``provenance.json`` count (a run writes it last)."""
    root = Path(results_dir)
    for preset in PRESET_ORDER:
        d = root / preset / notebook
        if (d / PROVENANCE).is_file():
            return preset, d
    return None


@dataclass
class Results:
    """A complete results folder, loaded: tables by stem, metrics, provenance, figure paths."""

    preset: str
    path: Path
    provenance: dict
    metrics: dict
    tables: dict
    figures: dict

    @property
    def label(self) -> str:
        return provenance_label(self.provenance)

    @property
    def preset_independent(self) -> bool:
        """True for computations that are identical at every preset (the theory checks)."""
        return bool(self.provenance.get("preset_independent"))

    @property
    def is_smoke(self) -> bool:
        """Smoke-preset numbers that must not be read as results."""
        return self.preset == "smoke" and not self.preset_independent


def load_results(path) -> Results:
    """Load the folder ``path`` (``results/<preset>/<notebook>``)."""
    import pandas as pd

    path = Path(path)
    prov_p = path / PROVENANCE
    if not prov_p.is_file():
        raise FileNotFoundError(f"{path} holds no {PROVENANCE}: it is not a complete run (re-run the notebook "
                                "in compute mode).")
    prov = json.loads(prov_p.read_text())
    metrics = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").is_file() else {}
    tables = {p.stem: pd.read_csv(p) for p in sorted(path.glob("*.csv"))}
    figures = {p.stem: p for p in sorted(path.glob("*.png"))}
    return Results(prov.get("preset", path.parent.name), path, prov, metrics, tables, figures)


def find_results(results_dir, notebook: str) -> Optional[Results]:
    """:func:`latest_results` then :func:`load_results`; None when there is none."""
    hit = latest_results(results_dir, notebook)
    return None if hit is None else load_results(hit[1])


SMOKE_WARNING = ("**SMOKE TEST — not a result.** These numbers come from the `smoke` preset (a few optimisation "
                 "steps on a few hundred images) that only checks the code runs end to end. They say nothing about "
                 "the paper's claims. Run `make reproduce PRESET=medium` (CPU, minutes) or `PRESET=full` (GPU) for "
                 "results.")


def results_banner(res: Optional[Results], notebook: str = "") -> str:
    """Markdown stating where the shown numbers come from (loud for smoke; plain when there are none)."""
    if res is None:
        return (f"**No results yet** for `{notebook}`: nothing under `results/` for any preset. Run this notebook "
                "in compute mode (see *How to re-run*) to produce them.")
    head = f"Results: `{res.label}`"
    if res.preset_independent:
        head += " (these computations are identical at every preset)"
    return f"{SMOKE_WARNING}\n\n{head}" if res.is_smoke else head


def status_table(results_dir, notebooks: Sequence[str] = NOTEBOOKS):
    """One row per comparison table of each notebook's best results (see :func:`latest_results`):
    notebook, table, preset, provenance, cells and verdict counts, and a note (smoke = not a result)."""
    import pandas as pd

    rows = []
    for nb in notebooks:
        res = find_results(results_dir, nb)
        if res is None:
            rows.append({"notebook": nb, "table": "–", "preset": "none", "provenance": "no results yet", "cells": 0,
                         **{v: 0 for v in VERDICTS}, "note": "run the notebook in compute mode"})
            continue
        tabs = {k: t for k, t in res.tables.items() if k.startswith("table") and "verdict" in t.columns}
        if not tabs:
            rows.append({"notebook": nb, "table": "–", "preset": res.preset, "provenance": res.label, "cells": 0,
                         **{v: 0 for v in VERDICTS}, "note": "no comparison table"})
        for name, t in tabs.items():
            rows.append({"notebook": nb, "table": name, "preset": res.preset, "provenance": res.label,
                         "cells": len(t), **verdict_counts(t),
                         "note": "SMOKE TEST - not a result" if res.is_smoke
                         else ("same at every preset" if res.preset_independent else "")})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# notebook helpers (display + myst-nb glue)
# --------------------------------------------------------------------------------------------
def fmt(v, spec: str = ".3g", missing: str = "n/a") -> str:
    """Format a number for prose; ``missing`` for None/NaN."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return missing if v is None else str(v)
    if math.isnan(f):
        return missing
    if spec and spec[-1] in "bcdoxXn":
        return format(int(round(f)), spec)
    return format(f, spec)


def glue_all(values: dict) -> None:
    """``myst_nb.glue`` every ``key -> str`` without displaying it (use ``{glue:text}`key``` in prose)."""
    from myst_nb import glue

    for k, v in values.items():
        glue(k, str(v), display=False)


def verdict_counts(df) -> dict:
    """``{"match": n, "trend holds": n, "differs": n}`` of a comparison table."""
    if df is None or "verdict" not in getattr(df, "columns", []):
        return {v: 0 for v in VERDICTS}
    vc = df["verdict"].value_counts()
    return {v: int(vc.get(v, 0)) for v in VERDICTS}


def verdict_line(df) -> str:
    c = verdict_counts(df)
    return " · ".join(f"{n} {v}" for v, n in c.items())


def show_table(df, caption: str = "", precision: int = 3, max_rows: Optional[int] = None):
    """Display ``df`` as an HTML table with ``caption`` (put the provenance label in it)."""
    from IPython.display import HTML, display

    if df is None:
        return
    d = df if max_rows is None else df.head(max_rows)
    fmt_num = lambda v: fmt(v, f".{precision}g", "–")  # noqa: E731
    html = d.to_html(index=False, na_rep="–", float_format=fmt_num, escape=True, border=0,
                     classes="vaebook-table")
    cap = f"<p><em>{_html_escape(caption)}</em></p>" if caption else ""
    display(HTML(cap + html))


def _html_escape(s: str) -> str:
    import html

    return html.escape(str(s))


def show_figure(res: "Results", stem: str, caption: str = "") -> bool:
    """Display a results figure (embedded PNG) with a caption; False when the run has no such figure."""
    from IPython.display import Image, Markdown, display

    if res is None or stem not in res.figures:
        return False
    display(Image(filename=str(res.figures[stem])))
    if caption:
        display(Markdown(f"*{caption}* ({res.label})"))
    return True


# --------------------------------------------------------------------------------------------
# comparing with the paper
# --------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    v = float(v)
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 or v == 0 else f"{v:.2e}"


def verdict(paper, ours, rel_tol: float = 0.1, abs_tol: float = 0.0, trend=None, note: str = "") -> tuple[str, str]:
    """Compare one number with the paper's.

    * ``match``: ``|ours − paper| <= rel_tol·|paper| + abs_tol``;
    * otherwise ``trend holds`` when ``trend`` is truthy (a bool, or ``(bool, "why")``), else ``differs``.

    Returns ``(verdict, reason)``; ``note`` is appended to the reason (e.g. a known paper issue).
    """
    why = ""
    if isinstance(trend, tuple):
        trend, why = bool(trend[0]), str(trend[1])
    reasons = []
    missing = paper is None or ours is None or any(isinstance(v, float) and math.isnan(v) for v in (paper, ours))
    if missing:
        v = "trend holds" if trend else "differs"
        reasons.append(f"no value to compare (paper {_fmt(paper)}, ours {_fmt(ours)})")
    else:
        p, o = float(paper), float(ours)
        tol = rel_tol * abs(p) + abs_tol
        if abs(o - p) <= tol:
            v = "match"
            reasons.append(f"ours {_fmt(o)} vs paper {_fmt(p)}: within {rel_tol:.0%}"
                           + (f" + {abs_tol:g}" if abs_tol else ""))
        else:
            v = "trend holds" if trend else "differs"
            rel = abs(o - p) / abs(p) if p != 0 else math.inf
            reasons.append(f"ours {_fmt(o)} vs paper {_fmt(p)} ({rel:.0%} apart)" if math.isfinite(rel)
                           else f"ours {_fmt(o)} vs paper {_fmt(p)}")
    if trend is not None and why:
        reasons.append(("trend holds: " if trend else "trend does not hold: ") + why)
    if note:
        reasons.append(note)
    return v, "; ".join(reasons)


def monotone(values: Sequence[float], direction: str, tol: float = 0.0) -> bool:
    """Whether ``values`` move in ``direction`` (``"increasing"``/``"decreasing"``), allowing steps against
    it of at most ``tol`` (relative to the series' range)."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if len(vals) < 2:
        return False
    span = (max(vals) - min(vals)) or 1.0
    sign = 1 if direction == "increasing" else -1
    if direction not in ("increasing", "decreasing"):
        raise ValueError(f"direction must be 'increasing' or 'decreasing', got {direction!r}")
    return all(sign * (b - a) >= -tol * span for a, b in zip(vals, vals[1:]))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (scipy), NaN when undefined."""
    from scipy.stats import spearmanr

    if len(x) < 2:
        return float("nan")
    r = spearmanr(x, y).statistic
    return float(r)


# --------------------------------------------------------------------------------------------
# training helpers shared by the drivers
# --------------------------------------------------------------------------------------------
def set_threads(device: str = "auto") -> None:
    """On CPU use every core torch sees unless ``$VAEBOOK_THREADS`` says otherwise."""
    import torch

    n = os.environ.get("VAEBOOK_THREADS")
    if n:
        torch.set_num_threads(int(n))


def train_config(params: dict, setting: str, **overrides):
    """The :class:`~vaebook.train.TrainConfig` for ``setting`` at ``params['preset']``, with the notebook's
    ``epochs``/``seed``/``device`` overrides."""
    from vaebook.train import preset_config

    kw = dict(seed=params.get("seed", 0), device=params.get("device", "auto"))
    if params.get("epochs") is not None:
        kw["epochs"] = params["epochs"]
    kw.update(overrides)
    return preset_config(params["preset"], setting, **kw)


def seed_for(*parts) -> int:
    """A stable 31-bit seed for one model of a sweep (``seed_for(params["seed"], "table1", -0.3, "stochastic")``)."""
    from vaebook.data import mix_seed

    return mix_seed(*parts) % (2**31 - 1)


def mnist_subset(split: str, n: Optional[int], seed: int, root=None, device="cpu"):
    """``(images, labels)`` of ``n`` MNIST images of ``split`` (all when ``n`` is None), a seeded random subset,
    images float32 in [0, 1] on ``device`` (``N×1×28×28``), labels int64 on the CPU."""
    import torch

    from vaebook.data import load_mnist

    x, y = load_mnist(split, root, as_float=True)
    if n is not None and n < len(x):
        g = torch.Generator().manual_seed(seed_for(seed, "mnist-subset", split))
        idx = torch.randperm(len(x), generator=g)[:n].sort().values
        x, y = x[idx], y[idx]
    return x.to(device), torch.as_tensor(y).long()


def train_many(models: Sequence, data, cfg, val_data=None, on_done: Optional[Callable] = None,
               batched: Optional[bool] = None) -> list:
    """Train each model in ``models`` (in place) and return their histories.

    ``data``: one training tensor for all models, or a list with one tensor per model (e.g. the noisy
    datasets of Table 3). ``cfg``: one :class:`TrainConfig` or a list. ``on_done(i, model, history)``
    runs after each model (progress).

    ``batched``: train models that share an architecture and optimiser settings together through
    :func:`vaebook.train.train_many` (``torch.func.vmap``; models it can not batch, e.g. with per-group
    learning rates, still go one by one). ``None`` = batch on CUDA only: there one vmapped step replaces
    K small kernel launches; on CPU it measured the same speed as the plain loop
    (``results/benchmarks/cpu/``), and the plain loop reports progress model by model. Validation
    sets (per-run features of :class:`~vaebook.train.Trainer`) force the plain loop.
    """
    from vaebook.train import fit, resolve_device
    from vaebook.train import train_many as batched_train_many

    n = len(models)
    datas = list(data) if isinstance(data, (list, tuple)) else [data] * n
    cfgs = list(cfg) if isinstance(cfg, (list, tuple)) else [cfg] * n
    vals = list(val_data) if isinstance(val_data, (list, tuple)) else [val_data] * n
    if not (len(datas) == len(cfgs) == len(vals) == n):
        raise ValueError(f"train_many: {n} models but {len(datas)} datasets / {len(cfgs)} configs / "
                         f"{len(vals)} validation sets")
    if batched is None:
        batched = n > 1 and all(resolve_device(c.device).type == "cuda" for c in cfgs)
    if batched and all(v is None for v in vals):
        histories = batched_train_many(models, datas, cfgs, batched=True)
        if on_done is not None:
            for i, (m, h) in enumerate(zip(models, histories)):
                on_done(i, m, h)
        return histories
    histories = []
    for i, (m, d, c, v) in enumerate(zip(models, datas, cfgs, vals)):
        h = fit(m, d, c, v)
        histories.append(h)
        if on_done is not None:
            on_done(i, m, h)
    return histories


__all__ = ["ParameterError", "ParamSpec", "validate_params", "COMMON_PARAMS", "param_spec", "PRESETS",
           "PRESET_ORDER", "MODES", "NOTEBOOKS", "VERDICTS", "Run", "latest_results", "load_results",
           "find_results", "Results", "results_banner", "SMOKE_WARNING", "verdict", "monotone", "spearman",
           "provenance_label", "git_revision", "device_description", "library_versions", "train_config",
           "train_many", "set_threads", "seed_for", "mnist_subset", "fmt", "glue_all", "verdict_counts", "verdict_line",
           "show_table", "show_figure", "status_table"]
