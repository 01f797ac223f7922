"""What a dataset left out of a CPU run would cost: FLOP constants and the GPU notice of a page."""
from __future__ import annotations

from vaebook.data import dataset_spec
from vaebook.experiments._section6.presets import PAPER_FID_SAMPLES, PAPER_TRAIN_IMAGES

#: GFLOP of one training step per image (forward + backward, FlopCounterMode; results/benchmarks/cpu/train_speed.csv)
TRAIN_GFLOP = {"mnist": 0.2009, "celeba64": 19.19}
#: GFLOP of Inception pool3 features per image at 299² (pytorch-fid's network)
INCEPTION_GFLOP = 11.46
#: the sustained throughput the GPU estimate assumes (TFLOP/s): one H100/H200 at ~10–20 % of its bf16 peak
GPU_TFLOPS = 100.0
#: what this project's 2-core CPU sustains on these nets (TFLOP/s; train_speed.csv: 0.13–0.16)
CPU_TFLOPS = 0.15


def _span(seconds: float) -> str:
    h = seconds / 3600
    if h < 1:
        return f"{max(1, round(seconds / 60))} min"
    return f"{h:.2g} h" if h < 48 else f"{h / 24:.0f} days"


def gpu_notice(dataset: str, n_models: int, fid_sets: int, name: str, select: bool = True) -> str:
    """Markdown: why ``dataset`` was not run here, what it needs (command, FLOP-based time, hardware).
    ``select``: the experiment takes a ``datasets`` parameter (the command names the dataset)."""
    spec = dataset_spec(dataset)
    cmd = (f"`python -m vaebook.lab run {name} --preset full --device cuda"
           + (f" -p datasets='[\"{dataset}\"]'`" if select else "`"))
    n, ep = PAPER_TRAIN_IMAGES.get(dataset), int(spec.train.get("epochs", 1))
    if dataset not in TRAIN_GFLOP or not n:
        return f"**{spec.label}: not run.** It needs a GPU ({cmd}); its cost is not estimated here."
    train = n_models * ep * n * TRAIN_GFLOP[dataset] * 1e9
    fid = fid_sets * PAPER_FID_SAMPLES * INCEPTION_GFLOP * 1e9
    total = train + fid
    fid_txt = (f", plus {fid_sets} FID sets of {PAPER_FID_SAMPLES:,} images ≈ {fid / 1e15:.2g} PFLOP" if fid_sets
               else " (its evaluation not counted)")
    return (f"**{spec.label}: not run.** At the paper's scale it is {n_models} models × {ep} epochs × {n:,} images × "
            f"{TRAIN_GFLOP[dataset]:g} GFLOP per image-step ≈ {train / 1e18:.2g} EFLOP of training{fid_txt}: about {_span(total / (GPU_TFLOPS * 1e12))} "
            f"on one H100/H200 at a sustained {GPU_TFLOPS:g} TFLOP/s (our estimate from FLOP counts, not measured), "
            f"about {_span(total / (CPU_TFLOPS * 1e12))} on the 2 CPU cores this book was built on. "
            f"Command: {cmd}.")


__all__ = ["TRAIN_GFLOP", "INCEPTION_GFLOP", "GPU_TFLOPS", "CPU_TFLOPS", "gpu_notice"]
