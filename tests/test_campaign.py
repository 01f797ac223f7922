"""The MNIST campaign (``python -m vaebook.campaign``): a smoke run on the CPU resumes to nothing, a dry run
trains nothing, and the FLOP-based estimate equals a hand computation."""
from __future__ import annotations

import pytest

from vaebook import campaign
from vaebook.campaign import INCEPTION_GFLOP, Estimator, Step, Throughput

#: App. I.1 MNIST net, one training step (forward + backward) per image (results/benchmarks/cpu/train_speed.csv)
MNIST_TRAIN_GFLOP = 0.200924
#: its decoder forward per image (a prior sample decoded), counted once with FlopCounterMode
MNIST_DECODE_GFLOP = 0.033575


def _files(root):
    return {f: f.stat().st_mtime_ns for sub in ("models", "evals") for f in (root / "smoke" / sub).rglob("*")
            if f.is_file()}


def test_smoke_campaign_resumes_to_nothing(tmp_path, data_root, capsys):
    """Run one cheap step at preset smoke on the CPU, then again: the second run trains and evaluates nothing
    (from its own counts, the zoo's log and the files' modification times)."""
    argv = ["--device", "cpu", "--preset", "smoke", "--only", "noise_variance", "--results-dir", str(tmp_path),
            "--data-root", str(data_root), "-p", 'models=["iso-i"]', "-p", "clean_reference=false"]
    assert campaign.main(argv) == 0
    out = capsys.readouterr().out
    assert "training 1 model(s) on cpu" in out
    assert "step 1/1 noise_variance (Table 3): start" in out and "1 model(s) to train" in out
    assert "trained 1 model(s), evaluated 1 unit(s)" in out
    assert (tmp_path / "smoke" / "noise_variance" / "provenance.json").is_file()
    before = _files(tmp_path)
    assert any(f.name == "model.pt" for f in before) and any(f.suffix == ".pt" and "evals" in f.parts for f in before)

    assert campaign.main(argv) == 0
    out = capsys.readouterr().out
    assert not [line for line in out.splitlines() if line.startswith("training ")]
    assert "results exist: nothing to train or evaluate" in out
    assert "trained 0 model(s), evaluated 0 unit(s)" in out
    assert _files(tmp_path) == before


def test_dry_run_trains_nothing_and_needs_no_gpu(tmp_path, data_root, capsys):
    argv = ["--dry-run", "--device", "cuda", "--preset", "smoke", "--only", "noise_variance", "--results-dir",
            str(tmp_path), "--data-root", str(data_root)]
    assert campaign.main(argv) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "1/1   noise_variance" in out and "15-minute target" in out
    assert not (tmp_path / "smoke").exists() or not any((tmp_path / "smoke").rglob("*.pt"))


def test_estimate_equals_hand_computation(tmp_path, data_root):
    """One noisy-MNIST model, 2 epochs of 6,400 images, batch 64: 200 steps × 64 images × 0.2009 GFLOP."""
    extra = {"models": ["iso-i"], "patterns": ["uniform"], "s_x2": [0.1], "clean_reference": False, "n_train": 6400,
             "epochs": 2}
    e = Estimator("full", "cuda", tmp_path, str(data_root), 0, extra).estimate(Step("noise_variance", "Table 3"))
    (train,) = [c for c in e.components if c.kind == "train"]
    steps = 2 * (6400 // 64)
    assert train.loop_steps == steps
    assert train.gflop == pytest.approx(steps * 64 * MNIST_TRAIN_GFLOP, rel=1e-4)
    tp = Throughput(tflops=10.0, step_latency_s=1e-3, label="")
    assert train.seconds(tp) == pytest.approx(max(steps * 64 * MNIST_TRAIN_GFLOP / 10e3, steps * 1e-3), rel=1e-4)
    slow_steps = Throughput(tflops=10.0, step_latency_s=5e-3, label="")  # the per-step floor then dominates
    assert train.seconds(slow_steps) == pytest.approx(steps * 5e-3)
    # evaluation: encode + decode (a third of a training step) of the 6,400 training images and 1,000 test images
    (ev,) = [c for c in e.components if c.kind == "eval"]
    assert ev.gflop == pytest.approx(7400 * MNIST_TRAIN_GFLOP / 3, rel=0.01)
    assert (e.models, e.models_new, e.units, e.units_cached) == (1, 1, 1, 0)


def test_fid_estimate_equals_hand_computation(tmp_path, data_root):
    """FID: samples × (Inception 11.46 GFLOP + one decode); the 10,000-image test reference counted once."""
    extra = {"models": ["vae-gaussian"], "sources": ["prior"], "fid_samples": 100}
    est = Estimator("full", "cuda", tmp_path, str(data_root), 0, extra)
    e = est.estimate(Step("generation", "Table 4 (MNIST)", (("datasets", ["mnist"]),)))
    comps = {c.label: c.gflop for c in e.components}
    assert comps["FID prior (100 samples)"] == pytest.approx(100 * (INCEPTION_GFLOP + MNIST_DECODE_GFLOP), rel=1e-3)
    assert comps["FID test reference features (10,000)"] == pytest.approx(10_000 * INCEPTION_GFLOP)
    train = [c for c in e.components if c.kind == "train"][0]
    assert train.gflop == pytest.approx(100 * (60_000 // 64) * 64 * MNIST_TRAIN_GFLOP, rel=1e-3)
    # the next step scoring the same model: its training and the reference are not counted again
    e2 = est.estimate(Step("interpolation", "Table 5 (MNIST)", (("datasets", ["mnist"]),)))
    assert e2.models_shared == 1 and not [c for c in e2.components if c.kind == "train"]
    assert not [c for c in e2.components if "test reference" in c.label]
