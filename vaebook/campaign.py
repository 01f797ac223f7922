"""The MNIST campaign: the MNIST parts of the book at the paper's scale, in one resumable command.

    make campaign                                   # DEVICE=cuda PRESET=full
    python -m vaebook.campaign --device cuda --preset full [--dry-run] [--only nll ...] [-p NAME=JSON ...]

Steps, in this order (later steps reuse the models earlier ones trained: Tables 5 and 7 score Table 4's models):

==  ================  ==========================  =================================
1   smoothness        Tables 1 and E.8            43 Section-4 models (App. D.1 nets)
2   noise_variance    Table 3                     33 MLE models on noisy/clean MNIST
3   generation        Table 4, MNIST              one model per paper row
4   interpolation     Table 5, MNIST              the same models
5   nll               Table 7, MNIST              the same models (rows with a likelihood)
==  ================  ==========================  =================================

Each step is one call of :func:`vaebook.lab.experiment.run` (what ``python -m vaebook.lab run`` does) with
``datasets=["mnist"]`` where the experiment takes a ``datasets`` parameter. **Resume** comes from that loop:
the zoo writes each model (on CUDA: each vmapped group) when it finishes and loads it on a re-run, a model
trained alone resumes from its epoch checkpoint, and each unit's evaluation is written when it finishes and
skipped on a re-run; so a campaign cut anywhere is resumed by running the same command again.

**Estimate** (printed first; ``--dry-run`` prints only it, plans and counts but trains nothing). Every count
comes from the experiments' own plans at the chosen preset:

* training: per model not yet in the zoo, optimiser steps (epochs × ⌊n_train / batch⌋, capped by
  ``max_steps``) × batch × FLOPs per image of one training step (forward + backward of the model's own loss,
  counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the model: 0.2009 GFLOP for the App. I.1
  MNIST net, 0.156 for the App. D.1 net); a model shared by several steps is counted once;
* evaluation: the FLOP-heavy metrics, each counted the same way on a few inputs and scaled linearly
  (ELS + expected gaps, MSE/KL, the IWAE bound in k, decoding), FID/KID as images × 11.46 GFLOP (Inception
  pool3 at 299²) plus the decoding, the second-stage VAE's training; reference features counted once per
  dataset. Not counted: t-SNE, GMM fitting and the tables' reports (CPU, seconds to minutes).

Time = FLOPs / an assumed sustained throughput (:func:`assumed_throughput`, stated in the output), but at least
a per-step latency for every sequential optimiser loop (a training run or vmapped group, a second-stage VAE):
small MNIST steps are bound by kernel launches, not FLOPs. Both figures are assumptions, not measurements on a
GPU; ``--tflops`` and ``--step-latency-ms`` replace them.

(This module lives outside :mod:`vaebook.lab` on purpose: every file there is part of each experiment's
evaluation-cache key, so tuning the estimate would re-evaluate every cached unit.)
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Step:
    experiment: str
    what: str
    params: tuple = ()  # sorted (name, value) pairs, applied where the experiment takes the parameter

    @property
    def param_dict(self) -> dict:
        return {k: v for k, v in self.params}


STEPS = (
    Step("smoothness", "Tables 1, E.8"),
    Step("noise_variance", "Table 3"),
    Step("generation", "Table 4 (MNIST)", (("datasets", ["mnist"]),)),
    Step("interpolation", "Table 5 (MNIST)", (("datasets", ["mnist"]),)),
    Step("nll", "Table 7 (MNIST)", (("datasets", ["mnist"]),)),
)

#: Inception-v3 up to pool3 on one 299×299 image, counted with FlopCounterMode (the FID network)
INCEPTION_GFLOP = 11.46
#: H100 / H200 SXM dense peaks (TFLOP/s; the H200 has the H100's GH100 compute, more memory)
H100_PEAK_TFLOPS = {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}
#: the share of the fp32 peak assumed sustained (training runs fp32: no autocast; cuDNN may use TF32 for
#: convolutions by PyTorch's default, which is not credited here)
CUDA_SUSTAINED_FRACTION = 0.30
#: assumed floor per optimiser step of one loop on a GPU: ~100-200 kernel launches (forward, backward, Adam)
#: at ~5-10 µs each, no CUDA graphs; the second-stage VAE also reads its loss each step
CUDA_STEP_LATENCY_S = 1.0e-3
CPU_FALLBACK_TFLOPS = 0.10
TARGET_S = 15 * 60


# -- assumptions --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Throughput:
    tflops: float  # sustained, for every counted FLOP
    step_latency_s: float  # floor per optimiser step of one sequential loop
    label: str


def assumed_throughput(device: str, tflops: Optional[float] = None,
                       step_latency_ms: Optional[float] = None) -> Throughput:
    """The throughput the estimate divides by. CUDA: :data:`CUDA_SUSTAINED_FRACTION` of the H100/H200 fp32
    dense peak and :data:`CUDA_STEP_LATENCY_S` per step. CPU: the training throughput measured by
    ``benchmarks/train_speed.py`` on this project's CPU (``results/benchmarks/cpu/train_speed.csv``), no floor."""
    if str(device).startswith("cuda"):
        tf = CUDA_SUSTAINED_FRACTION * H100_PEAK_TFLOPS["fp32"]
        label = (f"{tf:.1f} TFLOP/s sustained = {CUDA_SUSTAINED_FRACTION:.0%} of the H100/H200 SXM fp32 dense peak "
                 f"({H100_PEAK_TFLOPS['fp32']:g} TFLOP/s; the campaign runs fp32, so neither the TF32 peak "
                 f"{H100_PEAK_TFLOPS['tf32']:g} nor the bf16 peak {H100_PEAK_TFLOPS['bf16']:g} is credited)")
        lat = CUDA_STEP_LATENCY_S
    else:
        tf, src = _measured_cpu_tflops()
        label = f"{tf * 1e3:.0f} GFLOP/s sustained ({src})"
        lat = 0.0
    if tflops is not None:
        tf, label = float(tflops), f"{float(tflops):g} TFLOP/s sustained (--tflops)"
    if step_latency_ms is not None:
        lat = float(step_latency_ms) / 1e3
    label += (f"; at least {lat * 1e3:g} ms per optimiser step of a sequential loop (assumed: kernel launches)"
              if lat else "; no per-step floor")
    return Throughput(tf, lat, label)


def _measured_cpu_tflops() -> tuple[float, str]:
    f = REPO / "results" / "benchmarks" / "cpu" / "train_speed.csv"
    try:
        with open(f) as fh:
            vals = [float(r["achieved_tflops"]) for r in csv.DictReader(fh) if r.get("net") == "mnist"]
        if vals:
            return sorted(vals)[len(vals) // 2], "median MNIST training throughput of benchmarks/train_speed.py"
    except (OSError, KeyError, ValueError):
        pass
    return CPU_FALLBACK_TFLOPS, "assumed: no CPU benchmark found"


# -- FLOP counting ------------------------------------------------------------------------------
def count_gflop(fn: Callable) -> float:
    """GFLOP of ``fn()`` (matmuls and convolutions, :class:`~torch.utils.flop_counter.FlopCounterMode`)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() / 1e9


def linear_gflop(fn: Callable[[int], object], a: int = 2, b: int = 4) -> tuple[float, float]:
    """``(base, per_item)`` GFLOP of ``fn(n)``, from two counts (``n`` = ``a`` and ``b``) assumed linear in n."""
    fa, fb = count_gflop(lambda: fn(a)), count_gflop(lambda: fn(b))
    slope = (fb - fa) / (b - a)
    return max(0.0, fa - a * slope), slope


def _struct(job) -> tuple:
    """What of a job fixes its FLOPs: model, dataset, builder arguments with float values reduced to their type
    (a fixed σx² changes no FLOP count; d_z, modes and penalty directions do)."""
    kw = tuple(sorted((k, type(v).__name__ if isinstance(v, float) else repr(v)) for k, v in job.builder_kwargs().items()))
    return (job.model, job.dataset, kw)


@dataclass
class Component:
    step: str
    kind: str  # "train" or "eval"
    label: str
    gflop: float
    loop_steps: int = 0  # sequential optimiser steps with the per-step floor

    def seconds(self, tp: Throughput) -> float:
        return max(self.gflop / (tp.tflops * 1e3), self.loop_steps * tp.step_latency_s)


@dataclass
class StepEstimate:
    step: Step
    preset: str
    models: int = 0  # distinct models the plan needs
    models_cached: int = 0  # already in the zoo
    models_shared: int = 0  # counted by an earlier step
    units: int = 0
    units_cached: int = 0
    published: bool = False
    components: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def models_new(self) -> int:
        return self.models - self.models_cached - self.models_shared

    def gflop(self, kind: str) -> float:
        return sum(c.gflop for c in self.components if c.kind == kind)

    def seconds(self, tp: Throughput, kind: Optional[str] = None) -> float:
        return sum(c.seconds(tp) for c in self.components if kind is None or c.kind == kind)


class Estimator:
    """Plans each step at the chosen preset and counts what is still to do (see the module docstring)."""

    def __init__(self, preset: str, device: str, results_dir="results", data_root=None, seed: int = 0,
                 extra: Optional[dict] = None):
        self.preset, self.device, self.results_dir, self.data_root, self.seed = preset, device, results_dir, \
            data_root, seed
        self.extra = dict(extra or {})
        self.seen_jobs: set = set()
        self.seen_refs: set = set()
        self._cache: dict = {}
        self._models: dict = {}

    # -- parameters and plan -------------------------------------------------------------------------
    def params(self, exp, step: Step) -> dict:
        spec = exp.spec()
        p = {"preset": self.preset, "device": self.device, "seed": self.seed, "results_dir": str(self.results_dir),
             "data_root": self.data_root, "mode": "compute"}
        p.update({k: v for k, v in step.param_dict.items() if k in spec})
        p.update({k: v for k, v in self.extra.items() if k in spec})
        return p

    def model(self, job):
        """An untrained instance of ``job``'s model (FLOPs do not depend on the weights), one per structure."""
        key = _struct(job)
        if key not in self._models:
            self._models[key] = job.build()
        return self._models[key]

    def memo(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def train_gflop_per_image(self, job) -> float:
        """One training step (forward + backward of the model's loss) per image, counted on a batch of 4."""
        import torch

        from vaebook.data import dataset_spec

        def count():
            m = job.build().train()
            x = torch.rand(4, *dataset_spec(job.dataset).x_shape, generator=torch.Generator().manual_seed(0))
            return count_gflop(lambda: m.loss(x).total.backward()) / 4

        return self.memo(("train",) + _struct(job), count)

    def estimate(self, step: Step) -> StepEstimate:
        import torch

        from vaebook.lab.experiment import Context, _unit_key
        from vaebook.lab.page import get_experiment
        from vaebook.lab.zoo import Zoo

        exp = get_experiment(step.experiment)
        p = exp.resolve(self.params(exp, step))
        ctx = Context(exp, p, log=lambda *_: None)
        units = exp.plan(ctx)
        root = Path(p["results_dir"]).expanduser() / p["preset"]
        zoo = Zoo(root / "models", ctx.job_data, "cpu", log=None)
        est = StepEstimate(step, p["preset"], published=(root / exp.name / "provenance.json").is_file())
        cuda = str(self.device).startswith("cuda")

        # training: one component per sequential loop (on CUDA the zoo vmaps models of one structure together)
        groups: dict = {}
        for job in dict.fromkeys(j for u in units for j in u.jobs):
            est.models += 1
            if job in self.seen_jobs:
                est.models_shared += 1
                continue
            self.seen_jobs.add(job)
            if zoo.cached(job):
                est.models_cached += 1
                continue
            t = job.train_dict
            n, bs = len(ctx.job_data(job)), int(t.get("batch_size", 64))
            steps = int(t.get("epochs", 1)) * (n // bs)
            if t.get("max_steps"):
                steps = min(steps, int(t["max_steps"]))
            gf = steps * bs * self.train_gflop_per_image(job)
            key = job
            if cuda:  # the zoo's own grouping: models that can share one vmapped loop
                from vaebook.train.batched import batch_blockers, batch_key

                m, cfg = job.build(), job.config("cpu")
                if not batch_blockers(m, cfg):
                    key = batch_key(m, ctx.job_data(job), cfg)
            g = groups.setdefault(key, {"gflop": 0.0, "steps": steps, "n": 0, "label": job.model})
            g["gflop"] += gf
            g["n"] += 1
        for g in groups.values():
            est.components.append(Component(step.experiment, "train", f"train {g['n']} × {g['label']} "
                                            f"({g['steps']:,} steps)", g["gflop"], g["steps"]))

        # evaluation of the units not yet cached
        cost = EVAL_COSTS.get(exp.name)
        if cost is None:
            est.notes.append(f"{exp.name}: evaluation cost not modelled")
        for u in units:
            est.units += 1
            f = root / "evals" / exp.name / f"{u.id}.pt"
            if f.is_file():
                try:
                    if torch.load(f, map_location="cpu", weights_only=True).get("key") == _unit_key(exp, u, p, ctx):
                        est.units_cached += 1
                        continue
                except Exception:  # noqa: BLE001 - unreadable: the run evaluates it again
                    pass
            if cost is not None:
                est.components += cost(self, exp, u, ctx)
        return est


# -- evaluation costs per experiment (the FLOP-heavy parts of each ``evaluate`` / ``report``) -------------
def _x(job, n: int):
    import torch

    from vaebook.data import dataset_spec

    return torch.rand(n, *dataset_spec(job.dataset).x_shape, generator=torch.Generator().manual_seed(1))


def _recon(e: Estimator, job) -> float:
    """GFLOP per image of encoding + decoding (MSE, reconstruction variance, partition estimates)."""
    from vaebook.metrics.recon import mean_mse

    m = e.model(job).eval()
    return e.memo(("recon",) + _struct(job), lambda: linear_gflop(lambda n: mean_mse(m, _x(job, n)))[1])


def _cost_smoothness(e: Estimator, exp, u, ctx) -> list:
    from vaebook.experiments.smoothness import GAP_S2
    from vaebook.metrics import mean_kl, smoothness_report

    p, job = ctx.p, u.jobs[0]
    n = len(ctx.job_data(job))
    n_eval, n_smooth = p["n_eval"] or n, p["n_smooth"] or n
    m = e.model(job).eval()
    stochastic = not getattr(m, "deterministic", False)
    kl = e.memo(("kl",) + _struct(job), lambda: linear_gflop(lambda k: mean_kl(m, _x(job, k)))[1]) if stochastic else 0
    sm = e.memo(("els",) + _struct(job),
                lambda: linear_gflop(lambda k: smoothness_report(m, _x(job, k), s2_values=GAP_S2))[1])
    return [Component(exp.name, "eval", "MSE, KL, MI", n_eval * (_recon(e, job) + 2 * kl)),
            Component(exp.name, "eval", f"ELS + gaps ({n_smooth:,} images)", n_smooth * sm)]


def _cost_noise_variance(e: Estimator, exp, u, ctx) -> list:
    job = u.jobs[0]
    n = min(len(ctx.job_data(job)), ctx.p.get("n_estimate") or len(ctx.job_data(job)))
    return [Component(exp.name, "eval", "partition estimates, reconstruction variance", (n + 1000) * _recon(e, job))]


def _s6(e: Estimator, ctx, u):
    from vaebook.experiments import _section6 as scale

    job = u.jobs[0]
    data = scale.load(ctx, u.meta["dataset"])
    return scale, job, data, e.model(job).eval()


def _reference_costs(e: Estimator, exp, d: str, n_test: int, n_floor: int, dims: int) -> list:
    """Inception features of the test reference and of the real-vs-real floor, once per dataset and size (both
    are cached on disk by content)."""
    out = []
    for what, n in (("test reference", n_test), ("real-vs-real floor", n_floor)):
        key = (d, what, n, dims)
        if key not in e.seen_refs:
            e.seen_refs.add(key)
            out.append(Component(exp.name, "eval", f"FID {what} features ({n:,})", n * INCEPTION_GFLOP))
    return out


def _cost_generation(e: Estimator, exp, u, ctx) -> list:
    import torch

    from vaebook._util import encode_means
    from vaebook.posterior import SecondStageVAE, source_skip_reason

    scale, job, data, m = _s6(e, ctx, u)
    p, d = ctx.p, u.meta["dataset"]
    n_tr, n_te = len(data.train), len(data.test)
    n_fid, dims = int(scale.per_dataset(p, "fid_samples", d)), int(p["fid_dims"])
    out = [Component(exp.name, "eval", "MSE, reconstruction variance", (n_te + 1000) * _recon(e, job))]
    enc = e.memo(("enc",) + _struct(job), lambda: linear_gflop(lambda k: encode_means(m, _x(job, k)))[1])
    dec = max(_recon(e, job) - enc, 0.0)  # decoding one latent
    srcs = [s for s in exp.sources_for(p, d) if not source_skip_reason(m, s, n_tr)]
    if any(s != "prior" for s in srcs):
        out.append(Component(exp.name, "eval", "training codes", n_tr * enc))
    for s in srcs:
        out.append(Component(exp.name, "eval", f"FID {s} ({n_fid:,} samples)", n_fid * (INCEPTION_GFLOP + dec)))
        if s == "2nd-vae":
            ss = dict(p["second_stage"])
            bs, ep = int(ss.get("batch_size", 64)), int(ss.get("epochs", 50))
            steps = ep * math.ceil(n_tr / bs)
            if ss.get("max_steps"):
                steps = min(steps, int(ss["max_steps"]))
            d_z = int(encode_means(m, _x(job, 2)).shape[1])

            def per_code():
                v = SecondStageVAE(d_z, width=int(ss.get("width", 1024)), depth=int(ss.get("depth", 3)))
                z = torch.randn(bs, d_z)
                return count_gflop(lambda: v.loss(z).backward()) / bs

            g = e.memo(("2nd", d_z, ss.get("width"), ss.get("depth")), per_code)
            out.append(Component(exp.name, "eval", f"2nd-stage VAE ({steps:,} steps)", steps * bs * g, steps))
    if srcs:
        out += _reference_costs(e, exp, d, n_te, min(n_fid, n_tr), dims)
    return out


def _cost_interpolation(e: Estimator, exp, u, ctx) -> list:
    from vaebook.experiments.interpolation import RATIOS
    from vaebook._util import encode_means

    scale, job, data, m = _s6(e, ctx, u)
    p, d = ctx.p, u.meta["dataset"]
    n_pairs, dims = int(scale.per_dataset(p, "fid_samples", d)), int(p["fid_dims"])
    recon = _recon(e, job)
    enc = e.memo(("enc",) + _struct(job), lambda: linear_gflop(lambda k: encode_means(m, _x(job, k)))[1])
    dec = max(recon - enc, 0.0)
    out = [Component(exp.name, "eval", "reconstruction variance", 1000 * recon),
           Component(exp.name, "eval", f"interpolation FIDs ({len(RATIOS)} × {n_pairs:,} pairs)",
                     len(RATIOS) * n_pairs * (2 * enc + dec + INCEPTION_GFLOP))]
    return out + _reference_costs(e, exp, d, len(data.test), min(n_pairs, len(data.train)), dims)


def _cost_nll(e: Estimator, exp, u, ctx) -> list:
    from vaebook.metrics.nll import TRAIN_FIT_N, iwae_nll, needs_train_fit

    scale, job, data, m = _s6(e, ctx, u)
    k = int(ctx.p["iwae_k"])
    x1 = _x(job, 1)
    base, per_k = e.memo(("iwae",) + _struct(job),
                         lambda: linear_gflop(lambda kk: iwae_nll(m, x1, k=kk, k_chunk=kk, batch_size=1)))
    n_te = len(data.test)
    out = [Component(exp.name, "eval", "reconstruction variance", 1000 * _recon(e, job)),
           Component(exp.name, "eval", f"IWAE k={k} ({n_te:,} images)", n_te * (base + k * per_k))]
    if needs_train_fit(m):  # a second bound with Σx fitted on training images
        out.append(Component(exp.name, "eval", "IWAE, valid-Σx bound",
                             n_te * (base + k * per_k) + min(TRAIN_FIT_N, len(data.train)) * _recon(e, job)))
    return out


EVAL_COSTS = {"smoothness": _cost_smoothness, "noise_variance": _cost_noise_variance,
              "generation": _cost_generation, "interpolation": _cost_interpolation, "nll": _cost_nll}


# -- output -------------------------------------------------------------------------------------
def hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def estimate_table(ests: Sequence[StepEstimate], tp: Throughput, device: str) -> str:
    """The printed estimate: one line per step, the total against the 15-minute target, and what dominates."""
    n = len(ests)
    head = (f"{'step':<5} {'experiment':<15} {'what':<16} {'models new/cached/shared':>24} {'units todo/all':>15} "
            f"{'train PFLOP':>12} {'eval PFLOP':>11} {'train':>8} {'eval':>8} {'total':>8}")
    lines = [f"estimate for device {device}: {tp.label}", head, "-" * len(head)]
    for i, e in enumerate(ests, 1):
        lines.append(f"{f'{i}/{n}':<5} {e.step.experiment:<15} {e.step.what:<16} "
                     f"{f'{e.models_new}/{e.models_cached}/{e.models_shared}':>24} "
                     f"{f'{e.units - e.units_cached}/{e.units}':>15} {e.gflop('train') / 1e6:>12.4g} "
                     f"{e.gflop('eval') / 1e6:>11.4g} {hms(e.seconds(tp, 'train')):>8} {hms(e.seconds(tp, 'eval')):>8} "
                     f"{hms(e.seconds(tp)):>8}")
    total = sum(e.seconds(tp) for e in ests)
    lines.append("-" * len(head))
    comps = [c for e in ests for c in e.components]
    lines.append(f"{'total':<38} {'':>24} {'':>15} {sum(c.gflop for c in comps if c.kind == 'train') / 1e6:>12.4g} "
                 f"{sum(c.gflop for c in comps if c.kind == 'eval') / 1e6:>11.4g} "
                 f"{hms(sum(e.seconds(tp, 'train') for e in ests)):>8} {hms(sum(e.seconds(tp, 'eval') for e in ests)):>8} "
                 f"{hms(total):>8}")
    if total <= TARGET_S:
        lines.append(f"within the {TARGET_S // 60}-minute target ({total / TARGET_S:.0%} of it)")
    else:
        lines.append(f"EXCEEDS the {TARGET_S // 60}-minute target {total / TARGET_S:.1f}×")
    if tp.step_latency_s:  # what no precision choice can beat: every FLOP at the bf16 dense peak, the step floors kept
        best = Throughput(H100_PEAK_TFLOPS["bf16"], tp.step_latency_s, "")
        floor = sum(c.seconds(best) for c in comps)
        lines.append(f"lower bound (every FLOP at 100% of the bf16 dense peak, {H100_PEAK_TFLOPS['bf16']:g} TFLOP/s, "
                     f"step floors kept): {hms(floor)}"
                     + (", also above the target" if floor > TARGET_S else ""))
    if comps and total > 0:
        by: dict = {}
        for c in comps:
            k = (c.step, c.kind)
            by[k] = by.get(k, 0.0) + c.seconds(tp)
        (st, kind), s = max(by.items(), key=lambda kv: kv[1])
        lines.append(f"dominant part: {st} {'training' if kind == 'train' else 'evaluation'}, {hms(s)} "
                     f"({s / total:.0%} of the total)")
        top = sorted(comps, key=lambda c: -c.seconds(tp))[:5]
        lines.append("largest items: " + "; ".join(f"{c.step}: {c.label} {hms(c.seconds(tp))}"
                                                   + (" (step floor)" if c.loop_steps * tp.step_latency_s
                                                      > c.gflop / (tp.tflops * 1e3) else "") for c in top))
    for e in ests:
        lines += [f"note: {x}" for x in e.notes]
    lines.append("not counted: t-SNE, GMM fits, reports (CPU); resumed models/units count 0")
    return "\n".join(lines)


# -- the command --------------------------------------------------------------------------------
def _value(s: str):
    try:
        return json.loads(s)
    except json.JSONDecodeError:
        return s


def select(only: Optional[Sequence[str]]) -> list:
    if not only:
        return list(STEPS)
    names = [s.experiment for s in STEPS]
    bad = [o for o in only if o not in names]
    if bad:
        raise SystemExit(f"--only: unknown step(s) {bad}; the steps are {names}")
    return [s for s in STEPS if s.experiment in only]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vaebook.campaign", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="full")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", metavar="EXPERIMENT", help="run only these steps (in campaign order)")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME=JSON",
                    help="a parameter for every step whose experiment takes it")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the estimate; train nothing")
    ap.add_argument("--tflops", type=float, default=None, help="sustained TFLOP/s for the estimate")
    ap.add_argument("--step-latency-ms", type=float, default=None, help="floor per optimiser step (ms)")
    a = ap.parse_args(argv)

    from vaebook.lab.experiment import run
    from vaebook.lab.page import get_experiment
    from vaebook.lab.params import ParameterError, check_device

    extra = {}
    for kv in a.param:
        if "=" not in kv:
            ap.error(f"-p {kv!r}: expected NAME=JSON")
        k, v = kv.split("=", 1)
        extra[k.strip()] = _value(v)
    steps = select(a.only)
    for k in extra:
        if not any(k in get_experiment(s.experiment).spec() for s in steps):
            ap.error(f"-p {k}: no selected step takes this parameter")
    t0 = time.perf_counter()
    say = lambda s: print(s, flush=True)  # noqa: E731
    try:
        if not a.dry_run:
            check_device(a.device)
        est = Estimator(a.preset, a.device, a.results_dir, a.data_root, a.seed, extra)
        tp = assumed_throughput(a.device, a.tflops, a.step_latency_ms)
        say(f"[campaign] MNIST campaign: {len(steps)} step(s), preset {a.preset}, device {a.device}, results in "
            f"{a.results_dir}/{a.preset}/" + (" — dry run: nothing is trained or evaluated" if a.dry_run else ""))
        ests = [est.estimate(s) for s in steps]
        est._models.clear()  # the untrained instances the FLOPs were counted on
        say(estimate_table(ests, tp, a.device))
        say(f"[campaign] plan and estimate took {time.perf_counter() - t0:.0f} s")
        if a.dry_run:
            return 0
        trained = evaluated = 0
        start = time.perf_counter()
        for i, (s, e) in enumerate(zip(steps, ests), 1):
            exp = get_experiment(s.experiment)
            state = (f"{e.models_new} model(s) to train, {e.models_cached + e.models_shared} cached or from an "
                     f"earlier step, {e.units - e.units_cached}/{e.units} unit(s) to evaluate")
            if e.models_new == 0 and e.units_cached == e.units and e.published:
                state = "results exist: nothing to train or evaluate (report only)"
            say(f"[campaign] step {i}/{len(steps)} {s.experiment} ({s.what}): start at +{hms(time.perf_counter() - start)}"
                f"; estimate {hms(e.seconds(tp))}; {state}")
            counts = {"trained": 0, "evaluated": 0}
            unit_line = re.compile(rf"^\[{re.escape(exp.name)}\] \d+/\d+ ")

            def log(line: str, counts=counts, unit_line=unit_line) -> None:
                m = re.match(r"^training (\d+) model\(s\)", line)
                if m:
                    counts["trained"] += int(m.group(1))
                elif unit_line.match(line):
                    counts["evaluated"] += 1
                say(line)

            t = time.perf_counter()
            r = run(exp, est.params(exp, s), log=log)
            trained += counts["trained"]
            evaluated += counts["evaluated"]
            say(f"[campaign] step {i}/{len(steps)} {s.experiment}: done in {hms(time.perf_counter() - t)} (estimate "
                f"{hms(e.seconds(tp))}); trained {counts['trained']} model(s), evaluated {counts['evaluated']} "
                f"unit(s); elapsed {hms(time.perf_counter() - start)}; results {r.final_dir}")
        say(f"[campaign] done in {hms(time.perf_counter() - start)}: trained {trained} model(s), evaluated "
            f"{evaluated} unit(s) (estimate {hms(sum(e.seconds(tp) for e in ests))})")
        return 0
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
