"""Throughput of the evaluation metrics on this machine (images per second).

    python benchmarks/eval_speed.py                       # small counts, a few seconds each
    python benchmarks/eval_speed.py --fid-images 50 --iwae-images 20 --threads 2
    python benchmarks/eval_speed.py --mnist-fid 2000      # one-off: FID(MNIST train[:n], test[:n])

Measures: Inception feature extraction for FID (28×28 greyscale → 299×299, pool3 2048-d),
the IWAE bound with k = 500 on the paper's MNIST network (App. I.1, d_z = 16, untrained),
and the exact-Jacobian ELS on the same decoder. Timings exclude one warm-up call.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "VAEBOOK_DATA" not in os.environ and (ROOT.parent / "shared" / "data" / "MNIST").is_dir():
    os.environ["VAEBOOK_DATA"] = str(ROOT.parent / "shared" / "data")  # as the Makefile does

import vaebook  # noqa: E402,F401


def _mnist_model():
    """The paper's MNIST Gaussian VAE (App. I.1 networks, d_z = 16), untrained."""
    from vaebook.models import build_model

    return build_model("vae-gaussian", "mnist"), "vae-gaussian/mnist"


def _rate(fn, n_items: int, repeats: int = 1) -> float:
    fn()  # warm-up (model construction, caches)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_items * repeats / (time.perf_counter() - t)


def bench_fid(n: int, batch_size: int) -> float:
    from vaebook.metrics.fid import fid_features

    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    return _rate(lambda: fid_features(x, batch_size=batch_size, dims=2048), n)


def bench_iwae(model, n: int, k: int, k_chunk: int) -> float:
    from vaebook.metrics import iwae_nll

    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    return _rate(lambda: iwae_nll(model, x, k=k, batch_size=n, k_chunk=k_chunk), n)


def bench_els(model, n: int) -> float:
    from vaebook.metrics import expected_local_smoothness

    x = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    return _rate(lambda: expected_local_smoothness(model, x, batch_size=n), n)


def mnist_fid(n: int, batch_size: int, dims: int = 2048) -> None:
    from vaebook.data import load_mnist
    from vaebook.metrics.fid import FIDStats, fid_features, frechet_distance, weights_source

    xtr, _ = load_mnist("train", as_float=True, download=False)
    xte, _ = load_mnist("test", as_float=True, download=False)
    t = time.perf_counter()
    ftr = fid_features(xtr[:n], batch_size=batch_size, dims=dims)
    fte = fid_features(xte[:n], batch_size=batch_size, dims=dims)
    a, b = FIDStats.from_features(ftr), FIDStats.from_features(fte)
    value = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    dt = time.perf_counter() - t
    print(f"FID(MNIST train[:{n}], test[:{n}]) = {value:.3f}  (dims={dims}, weights={weights_source()}, "
          f"{dt:.0f} s, {2 * n / dt:.1f} img/s)")
    half = n // 2
    if half >= 2:
        a1, a2 = FIDStats.from_features(ftr[:half]), FIDStats.from_features(ftr[half:2 * half])
        print(f"FID(train[:{half}], train[{half}:{2 * half}]) = {frechet_distance(a1.mu, a1.sigma, a2.mu, a2.sigma):.3f}"
              "  (same-distribution baseline at this sample size)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fid-images", type=int, default=8)
    p.add_argument("--fid-batch", type=int, default=8)
    p.add_argument("--iwae-images", type=int, default=8)
    p.add_argument("--iwae-k", type=int, default=500)
    p.add_argument("--iwae-k-chunk", type=int, default=100)
    p.add_argument("--els-images", type=int, default=16)
    p.add_argument("--mnist-fid", type=int, default=0, help="also compute FID(train[:n], test[:n]) on MNIST")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)")
    if args.fid_images:
        r = bench_fid(args.fid_images, args.fid_batch)
        print(f"FID features (28x28 grey -> 299, 2048-d): {r:.2f} img/s  ({1 / r:.3f} s/img)")
    if args.iwae_images or args.els_images:
        model, what = _mnist_model()
        model.eval()
        if args.iwae_images:
            r = bench_iwae(model, args.iwae_images, args.iwae_k, args.iwae_k_chunk)
            print(f"IWAE k={args.iwae_k} ({what}): {r:.2f} img/s")
        if args.els_images:
            r = bench_els(model, args.els_images)
            print(f"ELS exact Jacobian ({what}, d_z={model.d_z}): {r:.1f} img/s")
    if args.mnist_fid:
        mnist_fid(args.mnist_fid, batch_size=50)


if __name__ == "__main__":
    main()
