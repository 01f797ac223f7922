"""Training-speed benchmark: the Appendix I.1 MNIST net and the I.2 CelebA-64 net on this device.

One CSV row per (net, K) in ``results/benchmarks/<device>/train_speed.csv`` plus ``provenance.json``:

* ``gflop_per_image``: one training step (forward + backward of the loss) counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls), divided by the batch size;
* ``images_per_s``: K·batch / seconds per step of our loop — for K = 1 the single-model fast path
  (:class:`vaebook.train.fast.FastTrainer`), for K > 1 the batched loop
  (:class:`vaebook.train.batched.BatchedTrainer`);
* ``achieved_tflops`` = gflop_per_image · images_per_s / 1000; ``matmul_peak_tflops``: a large fp32
  matmul (2048² on CPU, 4096² on CUDA); ``fraction_of_peak`` their ratio;
* ``speedup_vs_sequential``: K sequential single-model fast-path runs (K × its seconds per step)
  divided by ours (1 for K = 1);
* ``speedup_vs_dataloader``: K sequential plain loops over a ``torch.utils.data.DataLoader`` of PIL
  images with ``transforms.ToTensor()`` and a default ``torch.optim.Adam`` (what peer libraries do;
  same net, batch and device) divided by ours;
* ``peak_mem_mb``: CUDA: ``torch.cuda.max_memory_allocated`` of our loop; CPU: peak resident set
  size of the row's process after our loop's warm-up (each row runs in a fresh subprocess; the
  Python/torch baseline is in provenance.json).

Timing: after warm-up, each of ``--steps`` rounds times back to back one step of ours, one step of
the single-model run, one step of the DataLoader loop and one matmul, so that all four see the same
machine load (the CPU is shared); every figure is the median over rounds (raw times in
provenance.json).

The model is the proposed Gaussian VAE with an MLE Iso-I decoder variance (``mle-iso-i``), trained
on synthetic uint8 images of the net's shape (speed does not depend on pixel values).

Usage: ``python benchmarks/train_speed.py [--nets mnist celeba64] [--ks 1 4 11 22] [--steps 3]``.
On CPU, CelebA-64 rows with K > 1 are skipped by default: at 19.2 GFLOP/image/step a K = 1 step
of batch 64 takes ~8 s on 2 cores, so a K = 4 row (warm-up + 3 rounds of ours, single and DataLoader
steps) would take ~3 minutes and K = 22 ~15; ``--celeba-ks`` runs them. The default CPU run takes
~3 minutes. ``THP_MEM_ALLOC_ENABLE=1`` is set for the rows (see below; it changes no numbers).
"""
from __future__ import annotations

import os

# PyTorch's CPU allocator reads this once, at the first tensor allocation: tensors of >= 2 MB get
# transparent huge pages, so a fresh K x (weight size) gradient costs ~500 page faults instead of
# ~25,000 (measured: about 5-10 % of a training step on this CPU). It changes no numbers.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["device", "net", "k", "gflop_per_image", "images_per_s", "achieved_tflops", "matmul_peak_tflops",
           "fraction_of_peak", "speedup_vs_sequential", "speedup_vs_dataloader", "peak_mem_mb"]
IMAGE_SHAPES = {"mnist": (1, 28, 28), "celeba64": (3, 64, 64)}
LR = {"mnist": 1e-3, "celeba64": 2e-4}


# --- measurements (run inside one subprocess per row) ------------------------------------------
def _sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def _matmul_seconds(a, b, dev) -> float:
    _sync(dev)
    t = time.perf_counter()
    a @ b
    _sync(dev)
    return time.perf_counter() - t


def _step_seconds(step, dev) -> float:
    _sync(dev)
    t = time.perf_counter()
    step()
    _sync(dev)
    return time.perf_counter() - t


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def run_row(net: str, k: int, batch: int, warmup: int, steps: int, device: str, n_images: int) -> dict:
    """Measure one (net, K) row. The timed phase is ``steps`` rounds; each round times, back to back,
    one step of ours, one step of a single-model run, one step of the DataLoader loop and one large
    fp32 matmul, so all four see the same machine load; every figure is the median over rounds."""
    import torch

    import vaebook  # noqa: F401  (torchvision shim first)
    from PIL import Image
    from torch.utils.flop_counter import FlopCounterMode
    from torchvision import transforms
    from vaebook.models import build_model
    from vaebook.train import TrainConfig
    from vaebook.train.batched import BatchedTrainer
    from vaebook.train.fast import FastTrainConfig, FastTrainer
    from vaebook.train.trainer import resolve_device

    dev = resolve_device(device)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, *IMAGE_SHAPES[net]), dtype=torch.uint8, generator=gen)
    cfg = dict(epochs=1000, batch_size=batch, lr=LR[net], device=str(dev))

    # FLOPs of one training step (forward + backward), counted by the library
    model = build_model("mle-iso-i", net).to(dev)
    x = images[:batch].to(dev).float().div(255.0)
    with FlopCounterMode(display=False) as fc:
        model.loss(x, generator=torch.Generator(device=dev).manual_seed(0)).total.backward()
    gflop_img = fc.get_total_flops() / batch / 1e9
    del model, x

    # ours: K = 1 the single-model fast path, K > 1 the batched loop; peak memory right after warm-up
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def make_single():
        torch.manual_seed(0)
        tr = FastTrainer(build_model("mle-iso-i", net), images, FastTrainConfig(**cfg))
        return lambda: tr._train_step(tr.batches.next_batch())

    if k == 1:
        ours = make_single()
    else:
        models = []
        for i in range(k):
            torch.manual_seed(i)
            models.append(build_model("mle-iso-i", net))
        bt = BatchedTrainer(models, images, [TrainConfig(**cfg, seed=i) for i in range(k)])
        ours = lambda: bt.train_step(torch.stack([it.next_batch() for it in bt.iters]))  # noqa: E731
    for _ in range(warmup):
        ours()
    _sync(dev)
    peak_mem = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    single = ours if k == 1 else make_single()

    # the peer-library baseline: DataLoader over PIL images + default Adam, one model
    mode = "L" if IMAGE_SHAPES[net][0] == 1 else "RGB"
    pil = [Image.fromarray(im.squeeze(0).numpy() if mode == "L" else im.permute(1, 2, 0).numpy(), mode)
           for im in images]

    class PILDataset(torch.utils.data.Dataset):
        def __init__(self, imgs):
            self.imgs, self.tf = imgs, transforms.ToTensor()

        def __len__(self):
            return len(self.imgs)

        def __getitem__(self, i):
            return self.tf(self.imgs[i])

    loader = torch.utils.data.DataLoader(PILDataset(pil), batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=0, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    dl_model = build_model("mle-iso-i", net).to(dev).train()
    opt = torch.optim.Adam(dl_model.parameters(), lr=LR[net])
    batches = iter(loader)

    def dl_step():
        nonlocal batches
        try:
            xb = next(batches)
        except StopIteration:
            batches = iter(loader)
            xb = next(batches)
        loss = dl_model.loss(xb.to(dev)).total
        opt.zero_grad()
        loss.backward()
        opt.step()

    n_mm = 4096 if dev.type == "cuda" else 2048
    a, b = torch.randn(n_mm, n_mm, device=dev), torch.randn(n_mm, n_mm, device=dev)
    for _ in range(warmup):
        if k > 1:
            single()
        dl_step()
        a @ b
    t_ours, t_single, t_dl, t_mm = [], [], [], []
    for _ in range(steps):
        t_ours.append(_step_seconds(ours, dev))
        t_single.append(t_ours[-1] if k == 1 else _step_seconds(single, dev))
        t_dl.append(_step_seconds(dl_step, dev))
        t_mm.append(_matmul_seconds(a, b, dev))
    to, ts, td, tm = (_median(v) for v in (t_ours, t_single, t_dl, t_mm))
    peak = 2 * n_mm**3 / tm / 1e12
    ips = k * batch / to
    return {
        "device": None, "net": net, "k": k, "gflop_per_image": gflop_img, "images_per_s": ips,
        "achieved_tflops": gflop_img * ips / 1e3, "matmul_peak_tflops": peak,
        "fraction_of_peak": gflop_img * ips / 1e3 / peak, "speedup_vs_sequential": k * ts / to,
        "speedup_vs_dataloader": k * td / to, "peak_mem_mb": peak_mem,
        "_raw": {"s_per_step_ours": t_ours, "s_per_step_single": t_single, "s_per_step_dataloader_single": t_dl,
                 "s_per_matmul": t_mm, "matmul_n": n_mm, "rss_mb_at_start": rss0,
                 "threads": torch.get_num_threads()},
    }


# --- driver --------------------------------------------------------------------------------------
def device_label(device: str) -> tuple[str, str]:
    """(folder name, human description) of the device."""
    import torch

    from vaebook.train.trainer import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"), name
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "cpu", f"{cpu}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=["mnist", "celeba64"], choices=sorted(IMAGE_SHAPES))
    ap.add_argument("--ks", nargs="+", type=int, default=[1, 4, 11, 22])
    ap.add_argument("--celeba-ks", nargs="+", type=int, default=None,
                    help="K values for celeba64 (default: --ks on CUDA, 1 on CPU)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None, help="timed rounds (default 9 on CPU, 20 on CUDA)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 2 on CPU, 5 on CUDA)")
    ap.add_argument("--celeba-steps", type=int, default=None, help="timed rounds for celeba64 (default 3 on CPU)")
    ap.add_argument("--celeba-warmup", type=int, default=None, help="warm-up steps for celeba64 (default 1 on CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(REPO / "results" / "benchmarks"))
    ap.add_argument("--row", nargs=2, metavar=("NET", "K"), help=argparse.SUPPRESS)
    ap.add_argument("--n-images", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    import torch

    import vaebook  # noqa: F401
    from vaebook.train.trainer import resolve_device

    cuda = resolve_device(args.device).type == "cuda"
    steps = args.steps or (20 if cuda else 9)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    if args.row:  # child process: one row, JSON on the last stdout line
        net, k = args.row[0], int(args.row[1])
        row = run_row(net, k, args.batch, warmup, steps, args.device, args.n_images)
        print(json.dumps(row))
        return 0

    folder, desc = device_label(args.device)
    out_dir = Path(args.out) / folder
    out_dir.mkdir(parents=True, exist_ok=True)
    celeba_ks = args.celeba_ks or (args.ks if cuda else [1])
    plan, skipped = [], []
    for net in args.nets:
        ks = celeba_ks if net == "celeba64" else args.ks
        for k in args.ks if net != "celeba64" else sorted(set(args.ks) | set(celeba_ks)):
            if k in ks:
                plan.append((net, k))
            else:
                skipped.append({"net": net, "k": k, "why": "CPU: 19.2 GFLOP/image/step makes a K > 1 step take "
                                "minutes on 2 cores (pass --celeba-ks to run it)"})
    load0 = os.getloadavg()
    rows, raw = [], []
    t_start = time.perf_counter()
    for net, k in plan:
        s = args.celeba_steps or (3 if not cuda else steps) if net == "celeba64" else steps
        w = (args.celeba_warmup if args.celeba_warmup is not None else (1 if not cuda else warmup)
             if net == "celeba64" else warmup)
        n_images = max(1024, args.batch * (w + s) * 2)
        cmd = [sys.executable, __file__, "--row", net, str(k), "--batch", str(args.batch), "--steps", str(s),
               "--warmup", str(w), "--device", args.device, "--n-images", str(n_images)]
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
        if res.returncode != 0:
            print(res.stdout[-2000:], res.stderr[-4000:], file=sys.stderr)
            skipped.append({"net": net, "k": k, "why": f"failed: {res.stderr.strip().splitlines()[-1:]}"})
            continue
        row = json.loads(res.stdout.strip().splitlines()[-1])
        row["device"] = folder
        raw.append({"net": net, "k": k, "steps": s, "warmup": w, "wall_s": time.perf_counter() - t, **row.pop("_raw")})
        rows.append(row)
        print(f"{net:9s} K={k:<3d} {row['gflop_per_image']:.3f} GFLOP/img  {row['images_per_s']:8.1f} img/s  "
              f"{row['achieved_tflops'] * 1e3:7.1f} GFLOP/s  peak {row['matmul_peak_tflops'] * 1e3:6.1f}  "
              f"frac {row['fraction_of_peak']:.2f}  vs seq {row['speedup_vs_sequential']:.2f}x  "
              f"vs DataLoader {row['speedup_vs_dataloader']:.2f}x  mem {row['peak_mem_mb']:.0f} MB", flush=True)

    import pandas as pd

    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.to_csv(out_dir / "train_speed.csv", index=False, float_format="%.6g")
    prov = {
        "script": "benchmarks/train_speed.py", "argv": sys.argv[1:], "git_commit": _git_commit(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": desc,
        "torch": torch.__version__, "python": platform.python_version(), "batch": args.batch,
        "steps": steps, "warmup": warmup, "model": "mle-iso-i (GaussianVAE, MLE Iso-I decoder variance)",
        "data": "synthetic uint8 images (uniform), resident on the device",
        "ours": "K=1: FastTrainer defaults (fused Adam, no torch.compile on CPU); K>1: BatchedTrainer defaults "
                "(vmap over chunks of min(K, 4) models on CPU / all K on CUDA, one fused Adam)",
        "sequential": "K x seconds/step of one FastTrainer run, timed in the same rounds as ours (interleaved)",
        "statistic": "median over the timed rounds of seconds per step (and per matmul)",
        "dataloader_baseline": "DataLoader(PIL images, ToTensor, shuffle, num_workers=0) + torch.optim.Adam defaults",
        "env": {k: os.environ.get(k) for k in ("THP_MEM_ALLOC_ENABLE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "load_average_before": load0, "load_average_after": os.getloadavg(),
        "total_wall_s": time.perf_counter() - t_start, "rows_raw": raw, "skipped": skipped,
    }
    (out_dir / "provenance.json").write_text(json.dumps(prov, indent=1))
    for s_ in skipped:
        print(f"skipped {s_['net']} K={s_['k']}: {s_['why']}")
    print(f"wrote {out_dir / 'train_speed.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
