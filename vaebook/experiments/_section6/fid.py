"""FID on the Section-6 scale: whether a score is comparable with the paper's, the note that says so, the test
reference features, the real-vs-real floor (FID's bias at the run's sample size) and the bias a verdict reads."""
from __future__ import annotations

from vaebook.experiments._datasets6 import per_dataset
from vaebook.experiments._section6.jobs import load
from vaebook.experiments._section6.presets import PAPER_FID_DIMS, PAPER_FID_SAMPLES
from vaebook.metrics.fid import FIDStats, frechet_distance, kid_from_features, reference_features


def fid_comparable(n_samples: int, dims: int) -> bool:
    """Whether an FID is on the paper's scale (10,000 samples, 2048-d pool3 features)."""
    return dims == PAPER_FID_DIMS and n_samples >= PAPER_FID_SAMPLES


def fid_note(n_samples: int, dims: int) -> str:
    if fid_comparable(n_samples, dims):
        return ""
    return (f"FID from {n_samples:,} samples with {dims}-d Inception features is not comparable with the paper's "
            f"({PAPER_FID_SAMPLES:,} samples, {PAPER_FID_DIMS}-d): only the ordering is compared")


def data_note(data) -> str:
    return f"{data.source}: the numbers say nothing about the paper" if data.generated else ""


def reference(data, dims: int, device):
    """Inception features of the run's test images, the FID/KID reference (cached on disk by content hash)."""

    return reference_features(f"{data.dataset}-test-{data.test_hash[:16]}", data.test, n=len(data.test), dims=dims,
                              batch_size=fid_batch(device), device=device)


def real_floor(data, n: int, dims: int, device, seed: int = 0) -> dict:
    """The real-vs-real floor: FID and KID of ``n`` *training* images against the test reference, at the sample
    size the models are scored with. A model's score within this of it cannot be told from real data, and FID's
    bias at small ``n`` shows here. ``{"fid", "kid", "kid_std", "n"}``."""
    ref = reference(data, dims, device)
    n = min(int(n), len(data.train))
    feats = reference_features(f"{data.dataset}-train-{data.train_hash[:16]}", data.train, n=n, dims=dims,
                               batch_size=fid_batch(device), device=device)
    a, b = FIDStats.from_features(feats), FIDStats.from_features(ref)
    kid, kid_std = kid_from_features(feats, ref, seed=seed)
    return {"fid": frechet_distance(a.mu, a.sigma, b.mu, b.sigma), "kid": kid, "kid_std": kid_std, "n": n}


def fid_batch(device) -> int:
    return 200 if str(device).startswith("cuda") else 50

def fid_floors(ctx, datasets) -> dict:
    """FID's bias at the run's N per dataset (``{dataset: real_floor(...)}``), for :func:`fid_bias` and the page."""
    p = ctx.p
    return {d: real_floor(load(ctx, d), int(per_dataset(p, "fid_samples", d)), int(p["fid_dims"]), ctx.device,
                          int(p["seed"])) for d in datasets}


def fid_bias(floors: dict):
    """``bias(dataset, metric)`` for :func:`judge`: the real-vs-real FID at the run's N for FID columns (``floors``:
    dataset -> :func:`real_floor`'s dict, as in a page's ``settings[d]["floor"]``), 0 elsewhere."""
    def bias(dataset: str, metric: str) -> float:
        f = (floors or {}).get(dataset) or {}
        return float(f.get("fid") or 0.0) if str(metric).startswith("fid") else 0.0

    return bias



__all__ = ["fid_comparable", "fid_note", "data_note", "reference", "real_floor", "fid_batch", "fid_floors",
           "fid_bias"]
