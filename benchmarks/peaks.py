"""True peaks of this device per dtype, and how close the project's own kernels come to them.

    python benchmarks/peaks.py                  # CPU: under 5 minutes on 2 cores (slow calls are capped)
    python benchmarks/peaks.py --device cuda
    python benchmarks/peaks.py --quick          # a code check: tiny sizes, seconds, nothing written by default

Writes ``results/benchmarks/<device>/peaks.csv`` and ``peaks_provenance.json`` (``train_speed.py``'s
``provenance.json`` beside it is left alone). One row per measurement:

* ``kind=peak``: square matmuls n ∈ {1024, 2048, 4096} and 3×3 convolutions (stride 1, padding 1) with
  C_in = C_out ∈ {64, 128, 256}, each in fp32 and bf16 (plain bf16 tensors, no autocast). Each row is the best
  of its repeats (the least time: a peak, not a typical value); the dtype's peak, ``peak_tflops``, is its best
  row of either kind. A size whose predicted time per call (from the size before) exceeds ``--max-call-s`` is
  skipped and listed in the provenance (on CPUs without native bf16, bf16 is emulated and very slow);
* ``kind=workload``: the project's kernels, ``fraction_of_peak`` = achieved TFLOP/s / the peak *of the dtype
  the kernel actually runs in* (bf16 rows: under ``torch.autocast``, whose matmuls and convolutions run in
  bf16): a training step of the App. I.1 MNIST net (fp32; bf16 autocast) in images/s; FID features
  (Inception pool3 at 299², fp32 NCHW, fp32 channels-last, bf16 autocast + channels-last) in images/s; the
  IWAE bound with k = 500 (App. I.1 net) and the exact ELS (:func:`vaebook.metrics.smoothness.expected_local_smoothness`,
  same net) per dtype, in images/s. Workload FLOPs are counted once in fp32 with
  :class:`torch.utils.flop_counter.FlopCounterMode` (matmuls and convolutions; the count does not depend on
  the dtype); times are the median of ``--repeats`` timed calls after one warm-up call.

Every number is one machine at one moment: the load average before and after is in the provenance, run it
on a quiet machine. Models are untrained (speed does not depend on the weights); images are uniform noise.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["device", "kind", "name", "dtype", "size", "gflop_per_call", "seconds_per_call", "tflops", "images_per_s",
           "peak_tflops", "fraction_of_peak", "note"]
DTYPES = ("fp32", "bf16")


def _train_speed():
    """``benchmarks/train_speed.py`` as a module (its device label and git helpers)."""
    spec = importlib.util.spec_from_file_location("train_speed", Path(__file__).with_name("train_speed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Bench:
    """Timing with the device synchronised; ``max_call_s`` bounds any one call."""

    def __init__(self, device, repeats: int, max_call_s: float):
        import torch

        self.torch, self.dev, self.repeats, self.max_call_s = torch, device, repeats, max_call_s
        self.skipped: list = []
        self.raw: list = []

    def sync(self):
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def time_once(self, fn) -> float:
        self.sync()
        t = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t

    def times(self, fn, name: str, repeats=None, warm_fn=None) -> list:
        """One warm-up call (``warm_fn``, a smaller call, when given), then up to ``repeats`` timed calls: fewer
        when a call is slow, so that one row's timed calls take at most about 2 × ``max_call_s``."""
        warm = self.time_once(warm_fn or fn)
        n = repeats or self.repeats
        ts = [self.time_once(fn)]
        n = min(n, max(1, int(2 * self.max_call_s / max(ts[0], 1e-9))))
        ts += [self.time_once(fn) for _ in range(n - 1)]
        self.raw.append({"name": name, "warmup_s": warm, "seconds": ts})
        return ts

    def attempt(self, fn, name: str) -> list:
        """``[fn()]``, or ``[]`` with the failure recorded (one failing kernel must not lose the others)."""
        try:
            return [fn()]
        except Exception as e:  # noqa: BLE001
            self.skipped.append({"name": name, "why": f"failed: {type(e).__name__}: {e}"})
            print(f"{name}: failed ({type(e).__name__}: {e})", flush=True)
            return []

    def autocast(self, dtype: str):
        import contextlib

        if dtype == "fp32":
            return contextlib.nullcontext()
        return self.torch.autocast(self.dev.type, dtype=self.torch.bfloat16)


def _dt(torch, name: str):
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


# --- peaks ----------------------------------------------------------------------------------------------
def matmul_rows(b: Bench, sizes) -> list:
    torch = b.torch
    rows = []
    for dt in DTYPES:
        prev = prev_n = None
        for n in sizes:
            flop = 2.0 * n**3
            if prev is not None and prev * (n / prev_n) ** 3 > b.max_call_s:
                b.skipped.append({"name": f"matmul {n}", "dtype": dt, "why": f"predicted {prev * (n / prev_n) ** 3:.1f} s "
                                  f"per call > --max-call-s {b.max_call_s:g}"})
                continue
            g = torch.Generator(device=b.dev).manual_seed(0)
            x = torch.randn(n, n, device=b.dev, generator=g).to(_dt(torch, dt))
            y = torch.randn(n, n, device=b.dev, generator=g).to(_dt(torch, dt))
            ts = b.times(lambda: x @ y, f"matmul {n} {dt}")
            best = min(ts)
            prev, prev_n = best, n
            rows.append({"kind": "peak", "name": "matmul", "dtype": dt, "size": f"{n}x{n}x{n}",
                         "gflop_per_call": flop / 1e9, "seconds_per_call": best, "tflops": flop / best / 1e12,
                         "note": "best of repeats"})
    return rows


def conv_rows(b: Bench, channels, batch: int, hw: int) -> list:
    torch = b.torch
    rows = []
    for dt in DTYPES:
        prev = prev_c = None
        for c in channels:
            flop = 2.0 * batch * c * c * 9 * hw * hw
            if prev is not None and prev * (c / prev_c) ** 2 > b.max_call_s:
                b.skipped.append({"name": f"conv3x3 C={c}", "dtype": dt, "why": f"predicted "
                                  f"{prev * (c / prev_c) ** 2:.1f} s per call > --max-call-s {b.max_call_s:g}"})
                continue
            conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(b.dev, _dt(torch, dt))
            x = torch.randn(batch, c, hw, hw, device=b.dev).to(_dt(torch, dt))
            best_fmt, best = None, float("inf")
            for fmt in (torch.contiguous_format, torch.channels_last):  # the faster layout is the peak
                cf, xf = conv.to(memory_format=fmt), x.contiguous(memory_format=fmt)
                with torch.no_grad():
                    t = min(b.times(lambda: cf(xf), f"conv3x3 C={c} {dt} {fmt}"))
                if t < best:
                    best, best_fmt = t, fmt
            prev, prev_c = best, c
            rows.append({"kind": "peak", "name": "conv3x3", "dtype": dt, "size": f"B{batch} C{c} {hw}x{hw}",
                         "gflop_per_call": flop / 1e9, "seconds_per_call": best, "tflops": flop / best / 1e12,
                         "note": f"forward, best of repeats, {str(best_fmt).replace('torch.', '')}"})
    return rows


# --- workloads ------------------------------------------------------------------------------------------
def _count(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() / 1e9


def _workload(b: Bench, name: str, dt: str, size: str, n_images: int, gflop: float, fn, note: str = "",
              repeats=None, warm_fn=None) -> dict:
    ts = b.times(fn, f"{name} {dt}", repeats, warm_fn)
    s = statistics.median(ts)
    return {"kind": "workload", "name": name, "dtype": dt, "size": size, "gflop_per_call": gflop,
            "seconds_per_call": s, "tflops": gflop / s / 1e3, "images_per_s": n_images / s, "note": note}


def train_rows(b: Bench, batch: int) -> list:
    torch = b.torch
    from vaebook.models import build_model
    from vaebook.train.fast import FastTrainConfig, FastTrainer

    images = torch.randint(0, 256, (max(1024, 8 * batch), 1, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    m = build_model("mle-iso-i", "mnist").to(b.dev)
    x = images[:batch].to(b.dev).float().div(255)
    gflop = _count(lambda: m.loss(x).total.backward())
    rows = []
    for dt in DTYPES:
        torch.manual_seed(0)
        tr = FastTrainer(build_model("mle-iso-i", "mnist"), images,
                         FastTrainConfig(epochs=1000, batch_size=batch, lr=1e-3, device=str(b.dev),
                                         autocast=None if dt == "fp32" else "bf16"))
        step = lambda tr=tr: tr._train_step(tr.batches.next_batch())  # noqa: E731
        rows += b.attempt(lambda dt=dt, step=step: _workload(
            b, "train step mnist (App. I.1, mle-iso-i)", dt, f"batch {batch}", batch, gflop, step,
            "FastTrainer defaults" + ("" if dt == "fp32" else " + autocast bf16"),
            repeats=None if dt == "fp32" else max(1, b.repeats // 2)), f"train step {dt}")
    return rows


def fid_rows(b: Bench, n: dict, batch: int) -> list:
    torch = b.torch
    from vaebook.metrics.fid import fid_features, get_inception

    model, _ = get_inception(2048, b.dev, channels_last=False)
    one = torch.rand(1, 3, 299, 299, device=b.dev)
    with torch.no_grad():
        per_image = _count(lambda: model(one))
    rows = []
    for dt, cl, label in (("fp32", False, "fp32 NCHW"), ("fp32", True, "fp32 channels-last"),
                          ("bf16", True, "bf16 autocast + channels-last")):
        k = n[dt]
        x = torch.rand(k, 1, 28, 28, generator=torch.Generator().manual_seed(0))

        def feats(x=x, cl=cl, dt=dt):
            with b.autocast(dt):
                fid_features(x, batch_size=min(batch, len(x)), device=b.dev, dims=2048, channels_last=cl)

        rows += b.attempt(lambda dt=dt, k=k, x=x, feats=feats, label=label: _workload(
            b, f"FID features ({label})", dt, f"{k} MNIST images -> 299x299", k, k * per_image, feats,
            "Inception pool3, vaebook.metrics.fid.fid_features", repeats=1, warm_fn=lambda: feats(x[:2])),
            f"FID {label}")
    return rows


def iwae_rows(b: Bench, n: dict, k: int) -> list:
    torch = b.torch
    from vaebook.metrics import iwae_nll
    from vaebook.models import build_model

    m = build_model("vae-gaussian", "mnist").to(b.dev).eval()
    rows = []
    x1 = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    per_image = _count(lambda: iwae_nll(m, x1, k=k, k_chunk=100, batch_size=1))
    for dt in DTYPES:
        x = torch.rand(n[dt], 1, 28, 28, generator=torch.Generator().manual_seed(1))

        def run(x=x, dt=dt, kk=k):
            with b.autocast(dt):
                iwae_nll(m, x, k=kk, k_chunk=100, batch_size=len(x))

        rows += b.attempt(lambda dt=dt, x=x, run=run: _workload(
            b, f"IWAE k={k} (App. I.1, vae-gaussian)", dt, f"{len(x)} images", len(x), len(x) * per_image, run,
            "vaebook.metrics.iwae_nll, k_chunk 100" + ("" if dt == "fp32" else ", autocast bf16"), repeats=1,
            warm_fn=lambda: run(x[:1], kk=min(k, 50))), f"IWAE {dt}")
    return rows


def els_rows(b: Bench, n: dict) -> list:
    torch = b.torch
    from vaebook.metrics import expected_local_smoothness
    from vaebook.models import build_model

    m = build_model("vae-gaussian", "mnist").to(b.dev).eval()
    rows = []
    x2 = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    per_image = _count(lambda: expected_local_smoothness(m, x2)) / 2
    for dt in DTYPES:
        x = torch.rand(n[dt], 1, 28, 28, generator=torch.Generator().manual_seed(2))
        # autocast does not cover forward-mode AD (jvp through a convolution mixes fp32 tangents with bf16
        # weights), so the bf16 row runs a bf16 copy of the model
        md = m if dt == "fp32" else copy.deepcopy(m).to(torch.bfloat16)

        def run(x=x, md=md):
            expected_local_smoothness(md, x)

        note = "vaebook.metrics.expected_local_smoothness (jvp)" + ("" if dt == "fp32" else ", model cast to bf16")
        rows += b.attempt(lambda dt=dt, x=x, run=run, note=note: _workload(
            b, "ELS exact (App. I.1, vae-gaussian, d_z 16)", dt, f"{len(x)} images", len(x), len(x) * per_image, run,
            note, repeats=1, warm_fn=lambda: run(x[:2])), f"ELS {dt}")
    return rows


# --- driver ---------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 5 on CPU, 20 on CUDA)")
    ap.add_argument("--max-call-s", type=float, default=None,
                    help="skip a peak size predicted to take longer per call (default 4 s CPU, 1 s CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--only", nargs="+", choices=("matmul", "conv", "train", "fid", "iwae", "els"), default=None)
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes and counts (a code check in seconds; writes only with --out)")
    args = ap.parse_args(argv)

    import torch

    import vaebook  # noqa: F401  (torchvision shim first)
    from vaebook.train.fast import bf16_is_fast
    from vaebook.train.trainer import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    cuda = dev.type == "cuda"
    ts = _train_speed()
    folder, desc = ts.device_label(args.device)
    b = Bench(dev, args.repeats or (20 if cuda else 5), args.max_call_s or (1.0 if cuda else 4.0))
    q = args.quick
    sizes = (128, 256) if q else (1024, 2048, 4096)
    channels = (16, 32) if q else (64, 128, 256)
    # image counts per dtype: bf16 may be emulated (AVX2: ~5x slower for Inception, ~19x for a training step)
    n_fid = {"fp32": 2, "bf16": 1} if q else ({"fp32": 400, "bf16": 400} if cuda else {"fp32": 16, "bf16": 8})
    n_iwae = {"fp32": 1, "bf16": 1} if q else ({"fp32": 200, "bf16": 200} if cuda else {"fp32": 4, "bf16": 2})
    n_els = {"fp32": 2, "bf16": 2} if q else ({"fp32": 2000, "bf16": 2000} if cuda else {"fp32": 32, "bf16": 8})
    want = set(args.only or ("matmul", "conv", "train", "fid", "iwae", "els"))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rows = []
    stages = [("matmul", lambda: matmul_rows(b, sizes)),
              ("conv", lambda: conv_rows(b, channels, 8 if q else (64 if cuda else 16), 16 if q else 32)),
              ("train", lambda: train_rows(b, 8 if q else 64)),
              ("fid", lambda: fid_rows(b, n_fid, 200 if cuda else 50)),
              ("iwae", lambda: iwae_rows(b, n_iwae, 20 if q else 500)),
              ("els", lambda: els_rows(b, n_els))]
    for name, fn in stages:
        if name not in want:
            continue
        t = time.perf_counter()
        try:
            new = fn()
        except Exception as e:  # noqa: BLE001 - one failing kernel must not lose the others
            b.skipped.append({"name": name, "why": f"failed: {type(e).__name__}: {e}"})
            print(f"{name}: failed ({type(e).__name__}: {e})", flush=True)
            continue
        rows += new
        for r in new:
            print(f"{r['kind']:8s} {r['name'][:44]:44s} {r['dtype']:4s} {r['size']:>22s} {r['tflops'] * 1e3:9.1f} GFLOP/s"
                  + (f" {r['images_per_s']:9.2f} img/s" if r.get("images_per_s") else ""), flush=True)
        print(f"  ({name}: {time.perf_counter() - t:.0f} s)", flush=True)

    peaks = {dt: max((r["tflops"] for r in rows if r["kind"] == "peak" and r["dtype"] == dt), default=float("nan"))
             for dt in DTYPES}
    for r in rows:
        r["device"] = folder
        r["peak_tflops"] = peaks[r["dtype"]]
        r["fraction_of_peak"] = r["tflops"] / peaks[r["dtype"]] if peaks[r["dtype"]] == peaks[r["dtype"]] else None
        r.setdefault("images_per_s", None)
    print("peak TFLOP/s: " + ", ".join(f"{dt} {v:.3f}" for dt, v in peaks.items()))
    if q and args.out == ap.get_default("out"):
        print("--quick: nothing written (pass --out to write)")
        return 0

    import pandas as pd

    out_dir = Path(args.out) / folder
    out_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(out_dir / "peaks.csv", index=False, float_format="%.6g")
    ok, why = bf16_is_fast(dev)
    prov = {
        "script": "benchmarks/peaks.py", "argv": sys.argv[1:] if argv is None else list(argv),
        "git_commit": ts._git_commit(), "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": desc, "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_is_fast": {"value": ok, "reason": why}, "repeats": b.repeats, "max_call_s": b.max_call_s,
        "peak_statistic": "least time over the repeats (best of)", "workload_statistic": "median of the timed calls",
        "flops": "torch.utils.flop_counter.FlopCounterMode (matmuls, convolutions), counted once in fp32",
        "bf16": "peaks: bf16 tensors; workloads: torch.autocast(bfloat16) around the fp32 model",
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "THP_MEM_ALLOC_ENABLE")},
        "load_average_before": load0, "load_average_after": os.getloadavg(),
        "total_wall_s": time.perf_counter() - t0, "raw": b.raw, "skipped": b.skipped,
    }
    (out_dir / "peaks_provenance.json").write_text(json.dumps(prov, indent=1, default=str))
    print(f"wrote {out_dir / 'peaks.csv'} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
