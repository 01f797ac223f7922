"""Trainer (issue 3): resume is bit-identical, NaN stops with a diagnostic, and real-MNIST learning signals."""
import os
from pathlib import Path

import pytest
import torch

import vaebook  # noqa: F401
from vaebook.models import build_model
from vaebook.train import NonFiniteLossError, TrainConfig, Trainer, fit

torch.set_num_threads(1)


def _tiny_data(n=192, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g)


class _Crash(Exception):
    pass


@pytest.mark.parametrize("name", ["mle-iso-i", "trainable-diag-d"])
def test_resume_is_bit_identical(tmp_path, name, monkeypatch):
    data = _tiny_data()
    # 6 steps/epoch, 18 steps; loss-curve points every 5 steps (the checkpoint at step 8 is mid-window)
    cfg = dict(epochs=3, batch_size=32, lr=1e-3, seed=3, device="cpu", log_every=5)
    torch.manual_seed(0)
    ref = build_model(name, "mnist")
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    h_ref = fit(ref, data, TrainConfig(**cfg))

    # interrupted run: checkpoints every 4 steps, "killed" at step 10 (mid-epoch 2)
    model = build_model(name, "mnist")
    model.load_state_dict(init)
    tr = Trainer(model, data, TrainConfig(**cfg, checkpoint_dir=str(tmp_path), checkpoint_every=4))
    orig = Trainer._train_step

    def crashing(self, idx):
        if self.step == 10:
            raise _Crash
        return orig(self, idx)

    monkeypatch.setattr(Trainer, "_train_step", crashing)
    with pytest.raises(_Crash):
        tr.fit()
    monkeypatch.setattr(Trainer, "_train_step", orig)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 8  # the last checkpoint before the crash

    resumed = build_model(name, "mnist")  # fresh weights: everything must come from the checkpoint
    h_res = Trainer(resumed, data, TrainConfig(**cfg, checkpoint_dir=str(tmp_path), checkpoint_every=4,
                                               resume=True)).fit()
    for (k, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert [e["loss"] for e in h_res.epochs] == [e["loss"] for e in h_ref.epochs]
    assert [e["curve"] for e in h_res.epochs] == [e["curve"] for e in h_ref.epochs]
    assert [pt["step"] for pt in h_res.curve] == [5, 10, 15]


def test_nan_loss_stops_with_diagnostic(tmp_path):
    data = _tiny_data(128)
    model = build_model("mle-iso-i", "mnist")
    calls = {"n": 0}
    real_loss = model.loss

    def poisoned(x, generator=None):  # the 6th step sees a NaN pixel
        calls["n"] += 1
        if calls["n"] == 6:
            x = x.clone()
            x[0, 0, 0, 0] = float("nan")
        return real_loss(x, generator)

    model.loss = poisoned
    cfg = TrainConfig(epochs=2, batch_size=32, seed=0, device="cpu", checkpoint_dir=str(tmp_path), checkpoint_every=1)
    with pytest.raises(NonFiniteLossError) as err:
        fit(model, data, cfg)
    msg = str(err.value)
    assert "step 5" in msg and "'rec'" in msg and "nan" in msg.lower()
    assert str(tmp_path / "checkpoint.pt") in msg
    last = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert last["step"] == 5
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=-1).validate()
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step").validate()
    with pytest.raises(ValueError, match="log_every"):
        TrainConfig(log_every=0).validate()
    from vaebook.data import dataset_spec

    cfg = TrainConfig(**dataset_spec("celeba64").train).validate()
    assert (cfg.epochs, cfg.lr, cfg.batch_size) == (70, 2e-4, 64)  # Appendix I
    assert dataset_spec("mnist").train == dict(epochs=100, lr=1e-3, batch_size=64)
    assert dataset_spec("mnist-d1").train["epochs"] == 200  # Section 4 / App. D.1


@pytest.fixture(scope="module")
def mnist_subset(data_root):
    from vaebook.data import load_mnist

    x, y = load_mnist("train", root=data_root, as_float=True)
    return x[:2000], y[:2000]


@pytest.mark.realdata
def test_real_mnist_loss_falls_and_iso_i_sigma_decreases(mnist_subset):
    x, _ = mnist_subset
    torch.manual_seed(0)
    model = build_model("mle-iso-i", "mnist")
    with torch.no_grad():
        start = float(model.loss(x[:512]).sigma2)  # σ̂x² of the untrained model
    tr = Trainer(model, x, TrainConfig(epochs=4, batch_size=64, seed=0, device="cpu"))
    hist = tr.fit().epochs  # 124 steps
    assert hist[-1]["loss"] < hist[0]["loss"]
    # the MLE σ̂x² (Eq. G.4) falls with the reconstruction error (Section 5.2, "adaptive regularization")
    assert hist[-1]["sigma2_mean"] < 0.7 * hist[0]["sigma2_mean"]
    assert float(model.variance.running_sigma2) < 0.5 * start


@pytest.mark.realdata
def test_real_mnist_diag_d_sees_the_noisy_partition(mnist_subset):
    from vaebook.data import make_noisy_mnist, partition_masks

    x, y = mnist_subset
    noisy = make_noisy_mnist(x, y, "spatial", 0.1, seed=0)  # noise on the upper half only
    torch.manual_seed(0)
    model = build_model("mle-diag-d", "mnist")
    fit(model, noisy, TrainConfig(epochs=3, batch_size=64, seed=0, device="cpu"))
    model.eval()
    with torch.no_grad():
        rec = model.reconstruct(noisy[:1000])
        s2 = model.variance.mle(((noisy[:1000] - rec) ** 2).unsqueeze(0))  # per-example, per-pixel σ̂x²(x)
    m = partition_masks(y[:1000])
    upper = s2[m["SU"] | m["BU"]].mean()
    lower = s2[m["SL"] | m["BL"]].mean()
    assert upper > lower + 0.05  # injected s_x² = 0.1 on the upper half
