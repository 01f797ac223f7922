"""Batched multi-model training (vaebook.train.batched) equals K separate ``fit`` runs.

Runs in float64 so that the comparison is not blurred by Adam's sign(g) normalisation: in float32,
a gradient element that is zero up to rounding (e.g. a bias feeding a batch-norm) is rounded
differently by the grouped (batched) and plain convolution kernels and Adam turns that into an
O(lr) parameter difference. In float64 the two paths agree to ~1e-8.
"""
from __future__ import annotations

import copy

import pytest
import torch

from vaebook.data.mnist import load_mnist
from vaebook.models import GaussianVAE, Section4VAE, build_model
from vaebook.train import TrainConfig, fit
from vaebook.train.batched import batch_key, fit_many, noise_feed, train_many
from vaebook.models.base import Posterior

K = 3
N, BATCH, EPOCHS, MAX_STEPS = 16, 8, 2, 3  # epoch 1: 2 steps, epoch 2: 1 step (cut by max_steps)


@pytest.fixture(autouse=True)
def _threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _configs():
    return [TrainConfig(epochs=EPOCHS, batch_size=BATCH, max_steps=MAX_STEPS, lr=1e-3, seed=10 + k, device="cpu",
                        log_every=2) for k in range(K)]  # one loss-curve point per run, in epoch 1


def _assert_same_runs(ref_models, ref_hist, models, hist, atol=1e-7):
    for k in range(K):
        assert len(hist[k].epochs) == len(ref_hist[k].epochs) == EPOCHS
        for ra, rb in zip(ref_hist[k].epochs, hist[k].epochs):
            assert ra.keys() == rb.keys()
            for name in ra:
                if name == "curve":
                    assert [pt["step"] for pt in rb[name]] == [pt["step"] for pt in ra[name]]
                    for pa, pb in zip(ra[name], rb[name]):
                        assert pb == pytest.approx(pa, rel=1e-9, abs=1e-9), (k, ra["epoch"], name)
                elif name != "time_s":
                    assert rb[name] == pytest.approx(ra[name], rel=1e-9, abs=1e-9), (k, ra["epoch"], name)
        assert [pt["step"] for pt in hist[k].curve] == [2]
        sa, sb = ref_models[k].state_dict(), models[k].state_dict()
        assert sa.keys() == sb.keys()
        for name in sa:
            torch.testing.assert_close(sb[name], sa[name], rtol=0, atol=atol, msg=lambda m: f"model {k} {name}: {m}")
    # the runs really differ from each other (so the equality above is not trivial)
    for k in range(1, K):
        assert hist[k].epochs[-1]["loss"] != pytest.approx(hist[0].epochs[-1]["loss"], rel=1e-6)


def test_section4_different_fixed_sigma_x2_equal_separate_runs():
    x = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    models = []
    for k, s2 in enumerate([0.05, 1.0, 20.0]):
        torch.manual_seed(k)
        models.append(Section4VAE("d1", sigma_x2=s2, sigma_z2=0.5).double())
    assert len({batch_key(m, x, c) for m, c in zip(models, _configs())}) == 1  # one batched group
    ref = [copy.deepcopy(m) for m in models]
    ref_hist = [fit(m, x, c) for m, c in zip(ref, _configs())]
    hist = fit_many(models, x, _configs(), chunk_size=2)  # two vmapped chunks: models {0, 1} and {2}
    _assert_same_runs(ref, ref_hist, models, hist)
    # the fixed σx² reached the loss: the Gaussian NLL term scales as 1/σx² (Eq. 7b)
    assert [h.epochs[0]["sigma2_mean"] for h in hist] == pytest.approx([0.05, 1.0, 20.0])


def test_gaussian_vae_mle_iso_i_with_batchnorm_equal_separate_runs(data_root):
    images, _ = load_mnist("test", root=data_root)
    a = images[:N].double().div(255.0)
    b = images[N:2 * N].double().div(255.0)
    datasets = [a, a, b]  # two models share one tensor (held once), one has its own data variant
    models = []
    for k in range(K):
        torch.manual_seed(100 + k)
        models.append(build_model("mle-iso-i", "mnist").double())
    init = [copy.deepcopy(m.state_dict()) for m in models]
    ref = [copy.deepcopy(m) for m in models]
    ref_hist = [fit(m, d, c) for m, d, c in zip(ref, datasets, _configs())]
    hist = fit_many(models, datasets, _configs())
    _assert_same_runs(ref, ref_hist, models, hist, atol=1e-6)
    # batch-norm running statistics and the MLE running σx² moved, separately per model
    for name in ("decoder.1.running_mean", "encoder.6.running_var", "variance.running_sigma2"):
        moved = [models[k].state_dict()[name] - init[k][name] for k in range(K)]
        assert all(float(m.abs().max()) > 1e-6 for m in moved), name
        assert not torch.allclose(models[0].state_dict()[name], models[1].state_dict()[name]), name
    assert all(int(m.state_dict()["decoder.1.num_batches_tracked"]) == MAX_STEPS for m in models)


def test_grouping_follows_structure_and_optimiser_settings():
    x = torch.zeros(8, 1, 28, 28)
    cfg = TrainConfig(batch_size=4, device="cpu")
    fixed_a = Section4VAE("d1", sigma_x2=0.1, sigma_z2=1.0)
    fixed_b = Section4VAE("d1", sigma_x2=3.0, sigma_z2=0.2)  # other values, same buffers → same group
    mle = Section4VAE("d1", sigma_x2="mle", sigma_z2=1.0)  # same tensors, other mode → other group
    learned = Section4VAE("d1", sigma_x2=0.1, sigma_z2="learned")  # σz² is a parameter → other group
    keys = [batch_key(m, x, cfg) for m in (fixed_a, fixed_b, mle, learned)]
    assert keys[0] == keys[1] and len(set(keys)) == 3
    assert batch_key(fixed_a, x, cfg) != batch_key(fixed_a, x, TrainConfig(batch_size=4, lr=2e-3, device="cpu"))
    assert batch_key(fixed_a, x, cfg) == batch_key(fixed_a, x, TrainConfig(batch_size=4, seed=7, device="cpu"))
    assert batch_key(fixed_a, x, cfg) != batch_key(fixed_a, x[:4], cfg)
    g1 = GaussianVAE("mnist", variance="iso-i", mode="mle")
    g2 = GaussianVAE("mnist", variance="diag-i", mode="mle")  # Σx shape changes the buffers
    assert batch_key(g1, x, cfg) != batch_key(g2, x, cfg)
    with pytest.raises(ValueError, match="differs from model 0"):
        fit_many([fixed_a, mle], x, cfg)


def test_train_many_falls_back_to_fit_for_unbatchable_models():
    """A plateau schedule follows each model's own loss: train_many must run those through ``fit``."""
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    cfg = TrainConfig(epochs=1, batch_size=8, device="cpu", lr_schedule="plateau")
    torch.manual_seed(3)
    m = Section4VAE("d1", sigma_x2=1.0, sigma_z2=1.0).double()
    ref = copy.deepcopy(m)
    with pytest.raises(ValueError, match="plateau"):
        fit_many([copy.deepcopy(m), copy.deepcopy(m)], x, cfg)
    (h,) = train_many([m], x, cfg)
    h_ref = fit(ref, x, cfg)
    assert h.epochs[0]["loss"] == h_ref.epochs[0]["loss"]
    torch.testing.assert_close(m.state_dict(), ref.state_dict(), rtol=0, atol=0)


def test_noise_feed_reproduces_the_generator_draw():
    """Noise fed to Posterior.rsample gives exactly mean + ε·σ as the generator-drawn path does."""
    q = Posterior(torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64) + 0.1)
    direct = q.rsample(2, torch.Generator().manual_seed(4))
    eps = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    before = Posterior.__dict__["rsample"]
    with noise_feed([eps]):
        assert Posterior.__dict__["rsample"] is before  # scoped hook: the class is not patched
        fed = q.rsample(2, None)
    torch.testing.assert_close(fed, direct, rtol=0, atol=0)
    assert Posterior.__dict__["rsample"] is before


def test_noise_feed_is_scoped_to_its_thread():
    """While one thread feeds noise, Posterior.rsample in another thread draws from its generator as usual."""
    import threading

    q = Posterior(torch.randn(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64) + 0.1)
    want = q.rsample(2, torch.Generator().manual_seed(7))
    fed_eps = torch.zeros(2, 5, 3, dtype=torch.float64)
    feeding, drawn = threading.Event(), threading.Event()
    result, errors = {}, []

    def feeder():
        try:
            with noise_feed([fed_eps]):
                feeding.set()
                assert drawn.wait(30)
                result["fed"] = q.rsample(2, torch.Generator().manual_seed(7))
        except Exception as err:  # noqa: BLE001
            errors.append(err)
            feeding.set()

    t = threading.Thread(target=feeder)
    t.start()
    assert feeding.wait(30)
    other = q.rsample(2, torch.Generator().manual_seed(7))  # this thread: no feed active
    drawn.set()
    t.join(30)
    assert not errors, errors
    torch.testing.assert_close(other, want, rtol=0, atol=0)
    torch.testing.assert_close(result["fed"], q.mean.expand(2, 5, 3), rtol=0, atol=0)  # zero noise fed there


def test_batched_training_leaves_posterior_rsample_alone(monkeypatch):
    """The batched loop feeds its noise through the scoped hook; Posterior.rsample stays the same function
    before, during and after training (checked at every call from inside the loop)."""
    import vaebook.models.base as base

    orig = Posterior.__dict__["rsample"]
    seen = []
    real = base.noise_source

    def spy():
        seen.append(Posterior.__dict__["rsample"] is orig)
        return real()

    monkeypatch.setattr(base, "noise_source", spy)
    x = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    models = []
    for k, s2 in enumerate([0.5, 2.0]):
        torch.manual_seed(30 + k)
        models.append(Section4VAE("d1", sigma_x2=s2, sigma_z2=0.4).double())
    fit_many(models, x, _configs()[:2])
    assert seen and all(seen)  # rsample consulted the hook (and was never swapped) at every draw
    assert Posterior.__dict__["rsample"] is orig


def test_fast_path_defaults_match_fit():
    """The fast path's default switches (fused Adam; no compile on CPU) change only float rounding;
    switching fused Adam off gives PyTorch's per-tensor Adam, equal up to rounding too."""
    from vaebook.train.fast import FastTrainConfig, FastTrainer

    x = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    torch.manual_seed(5)
    m = Section4VAE("d1", sigma_x2=0.3, sigma_z2=1.0).double()
    ref = copy.deepcopy(m)
    cfg = dict(epochs=1, batch_size=BATCH, seed=3, device="cpu")
    tr = FastTrainer(m, x, FastTrainConfig(**cfg))
    assert tr.options["fused_adam"] and not tr.options["compile"] and tr.options["autocast"] is None
    h = tr.fit()
    h_ref = fit(ref, x, TrainConfig(**cfg))
    for name in ("loss", "rec", "kl", "mse"):
        assert h.epochs[0][name] == pytest.approx(h_ref.epochs[0][name], rel=1e-12)
    for name, t in ref.state_dict().items():
        torch.testing.assert_close(m.state_dict()[name], t, rtol=0, atol=1e-9)
    torch.manual_seed(5)
    m2 = Section4VAE("d1", sigma_x2=0.3, sigma_z2=1.0).double()
    tr2 = FastTrainer(m2, x, FastTrainConfig(**cfg, fused_adam=False))
    assert all(g["fused"] is None for g in tr2.opt.param_groups)
    tr2.fit()
    for name, t in ref.state_dict().items():
        torch.testing.assert_close(m2.state_dict()[name], t, rtol=0, atol=1e-9)


def test_zoo_batched_path_equals_plain_path(tmp_path):
    """The model zoo's batched training (the CUDA default: ``torch.func.vmap``) gives the same models as its
    one-by-one loop, and each model is cached either way."""
    from vaebook.lab.zoo import Job, Zoo

    x = torch.rand(N, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    train = dict(epochs=1, batch_size=8, lr=1e-3, max_steps=4)
    jobs = [Job.make("section4-vae", "mnist-d1", train, seed=0, model_kwargs={"sigma_x2": s2, "sigma_z2": 0.3})
            for s2 in (0.1, 2.0)]
    plain = Zoo(tmp_path / "plain", lambda j: x, "cpu", log=None).train(jobs, batched=False)
    batched = Zoo(tmp_path / "batched", lambda j: x, "cpu", log=None).train(jobs, batched=True)
    for j in jobs:
        a, b = plain[j], batched[j]
        assert a.ok and b.ok and not a.from_cache and not b.from_cache
        assert b.history[-1]["loss"] == pytest.approx(a.history[-1]["loss"], rel=1e-4)
        # float32 + vmap: gradients agree to rounding; Adam turns that into at most one lr step (1e-3)
        torch.testing.assert_close(b.model.state_dict(), a.model.state_dict(), rtol=1e-3, atol=1e-3)
        assert Zoo(tmp_path / "batched", lambda _: x, "cpu", log=None).load(j) is not None
    assert plain[jobs[0]].history[-1]["loss"] != pytest.approx(plain[jobs[1]].history[-1]["loss"], rel=1e-3)

