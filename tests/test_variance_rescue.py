"""The rescues of the Σx protocol (vaebook.variance.rescue, #29): each against its closed form, the clear errors, the
defaults a model resolves to, and the pins that keep the book's models as they were."""
import math

import pytest
import torch

from vaebook.models import build_model
from vaebook.models.vae import GaussianVAE
from vaebook.variance import DEFAULT_RESCUE, LOG_2PI, RESCUES, build_variance
from vaebook.variance.rescue import build_rescue, parse_rescue

pytestmark = pytest.mark.usefixtures("float64")
SHAPE = (1, 3, 4)
SHAPES = ("iso-i", "diag-i", "iso-d", "diag-d")


def _inputs(name, mode, s=1, b=3, seed=0):
    """x, a leaf mean μ (S×B×C×H×W, away from 0 and 1) and, for a trainable -D shape, a leaf variance head."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, *SHAPE, generator=g)
    mu = (0.1 + 0.8 * torch.rand(s, b, *SHAPE, generator=g)).requires_grad_()
    v = build_variance(name, SHAPE, mode=mode)
    h = v.head_channels()
    head = (torch.randn(s, b, h, *SHAPE[1:], generator=g) - 2).requires_grad_() if h else None
    return x, mu, head


def _grads(name, mode, rescue, x, mu, head, **kw):
    """(objective, its gradients w.r.t. μ, the head and the variance's own parameters), and the variance."""
    v = build_variance(name, SHAPE, mode=mode, rescue=rescue, **kw).train()
    if mode == "trainable" and not v.dependent:  # a spread of variances, not the initial σ² = 1
        with torch.no_grad():
            v.log_sigma2.copy_(torch.linspace(-3, 1, v.log_sigma2.numel()).reshape(v.log_sigma2.shape))
    out = v(x, mu, head)
    leaves = [t for t in (mu, head, getattr(v, "log_sigma2", None)) if t is not None]
    return out.rec, torch.autograd.grad(out.rec, leaves), v


def _per_pixel_variance(v, x, mu, head):
    """The per-pixel variance the objective uses (MLE: σ̂² + ε), broadcast to μ's shape, detached."""
    with torch.no_grad():
        r = x.unsqueeze(0) - mu
        if v.mode == "mle":
            s2 = v.estimate(r)
            pp = v.expand(s2, 1) if not v.dependent else v.expand(s2, s2.shape[0])
            return (v.broadcast(pp, r) + v.eps).expand_as(mu)
        return v.broadcast(v.current(head), r).expand_as(mu)


# -- β-NLL (Seitzer et al. 2022): ∇ = ∇NLL · sg(σ²)^β ----------------------------------------------------------
@pytest.mark.parametrize("beta", [0.5, 1.0])
@pytest.mark.parametrize("mode", ["mle", "trainable"])
@pytest.mark.parametrize("name", SHAPES)
def test_beta_nll_gradient_is_the_nll_gradient_times_sigma_to_the_2beta(name, mode, beta):
    x, mu, head = _inputs(name, mode)
    plain, g0, v = _grads(name, mode, "none", x, mu, head)
    value, gb, _ = _grads(name, mode, f"beta-nll:beta={beta}", x, mu, head)
    assert value.item() == pytest.approx(plain.item(), rel=1e-12)  # the logged value stays Eq. (7b) / (10)
    w = _per_pixel_variance(v, x, mu, head) ** beta
    torch.testing.assert_close(gb[0], g0[0] * w, rtol=1e-9, atol=1e-12)
    if mode == "trainable" and name == "diag-d":  # the per-pixel head: each log σ² weighted by its own σ^{2β}
        torch.testing.assert_close(gb[1], g0[1] * w, rtol=1e-9, atol=1e-12)
    if mode == "trainable" and name == "iso-i":  # one scalar σ²: the parameter's gradient scaled by σ^{2β}
        s2 = math.exp(v.log_sigma2.item())
        torch.testing.assert_close(gb[1], g0[1] * s2 ** beta, rtol=1e-9, atol=1e-12)


def test_beta_one_gives_the_mle_diag_d_mean_exactly_the_mse_gradient():
    """Diag-D by MLE, one z sample: ∂/∂μ ½ ln(r² + ε) · (r² + ε) = −r, the gradient of ½‖r‖² (per example)."""
    x, mu, _ = _inputs("diag-d", "mle")
    _, g, _ = _grads("diag-d", "mle", "beta-nll:beta=1", x, mu, None)
    mse = 0.5 * ((x.unsqueeze(0) - mu) ** 2).flatten(2).sum(-1).mean()
    torch.testing.assert_close(g[0], torch.autograd.grad(mse, mu)[0], rtol=1e-9, atol=1e-12)


# -- the faithful split (Stirn et al. 2023) ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["mle", "trainable"])
@pytest.mark.parametrize("name", SHAPES)
def test_faithful_mean_gets_the_unit_variance_gradient_and_the_variance_no_path_into_mu(name, mode):
    x, mu, head = _inputs(name, mode)
    plain, _, v = _grads(name, mode, "none", x, mu, head)
    value, g, vf = _grads(name, mode, "faithful", x, mu, head)
    assert value.item() == pytest.approx(plain.item(), rel=1e-12)
    r = x.unsqueeze(0) - mu
    unit = 0.5 * (r ** 2).flatten(2).sum(-1).mean()  # −log N(x; μ, I) up to its constant
    torch.testing.assert_close(g[0], torch.autograd.grad(unit, mu)[0], rtol=1e-9, atol=1e-12)
    if mode == "trainable":  # the variance: its NLL at stop-grad(μ), nothing else
        s2 = vf.current(head)
        nll = vf.nll(r.detach(), vf.broadcast(s2, r)).mean()
        leaves = [head] if head is not None else [vf.log_sigma2]
        torch.testing.assert_close(g[1], torch.autograd.grad(nll, leaves)[0], rtol=1e-9, atol=1e-12)


def test_faithful_iso_i_mean_gets_the_g5_gradient():
    x, mu, _ = _inputs("diag-d", "mle")
    _, g, _ = _grads("diag-d", "mle", "faithful:mean=iso-i", x, mu, None)
    g5 = build_variance("iso-i", SHAPE, mode="mle")(x, mu).rec
    torch.testing.assert_close(g[0], torch.autograd.grad(g5, mu)[0], rtol=1e-9, atol=1e-12)


# -- the soft floor (Rybkin et al. 2021, σ-VAE) ----------------------------------------------------------------
def test_floor_function_is_sigma_vae_softclip_and_never_below_the_floor():
    f = build_rescue("floor:sigma_min=0.01")
    s2 = torch.logspace(-30, 2, 200)
    got = f.variance(None, s2)
    m = math.log(0.01)
    want = torch.exp(2 * (m + torch.nn.functional.softplus(0.5 * torch.log(s2) - m)))  # softclip(ln σ, ln σ_min)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=0)
    torch.testing.assert_close(got, (s2.sqrt() + 0.01) ** 2, rtol=1e-12, atol=0)
    assert bool((got >= 0.01 ** 2).all()) and f.variance(None, torch.zeros(3)).min().item() == pytest.approx(1e-4)
    assert build_rescue("floor").sigma_min == pytest.approx(math.exp(-6))  # σ-VAE's ln σ_min = −6


@pytest.mark.parametrize("mode", ["mle", "trainable"])
@pytest.mark.parametrize("name", SHAPES)
def test_floor_objective_is_the_nll_at_the_floored_variance(name, mode):
    x, mu, head = _inputs(name, mode)
    value, _, v = _grads(name, mode, "floor:sigma_min=0.05", x, mu, head)
    plain_v = _per_pixel_variance(build_variance(name, SHAPE, mode=mode) if mode == "mle" else v, x, mu, head)
    sf = (plain_v.sqrt() + 0.05) ** 2
    r2 = (x.unsqueeze(0) - mu).detach() ** 2
    want = 0.5 * (r2 / sf + sf.log() + LOG_2PI).flatten(2).sum(-1).mean()
    assert value.item() == pytest.approx(want.item(), rel=1e-10)
    ev = v.eval_sigma2(x, mu.detach(), head, recon=mu.detach()[0])
    assert float(ev.detach().min()) >= 0.05 ** 2


# -- a larger ε ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SHAPES)
def test_larger_eps_is_the_plain_mle_objective_with_eps_replaced(name):
    x, mu, _ = _inputs(name, "mle")
    value, _, v = _grads(name, "mle", "eps:eps=0.003", x, mu, None)
    assert v.eps == 0.003
    r2 = (x.unsqueeze(0) - mu).detach() ** 2
    if name != "iso-i":  # the plain shape built with ε = 0.003
        assert value.item() == pytest.approx(build_variance(name, SHAPE, eps=0.003)(x, mu).rec.item(), rel=1e-12)
    else:  # G.5 has no ε in the paper: ½ d (1 + ln 2π + ln(σ̂² + ε))
        d = math.prod(SHAPE)
        assert value.item() == pytest.approx(0.5 * d * (1 + LOG_2PI + math.log(r2.mean().item() + 0.003)), rel=1e-12)
    assert build_rescue("eps").eps == pytest.approx(1 / 255 ** 2)  # one 8-bit quantisation step as σ


def test_larger_eps_adds_to_a_trainable_variance():
    x, mu, head = _inputs("diag-d", "trainable")
    value, _, _ = _grads("diag-d", "trainable", "eps:eps=0.02", x, mu, head)
    s2 = head.detach().exp() + 0.02
    r2 = (x.unsqueeze(0) - mu).detach() ** 2
    assert value.item() == pytest.approx(0.5 * (r2 / s2 + s2.log() + LOG_2PI).flatten(2).sum(-1).mean().item(),
                                         rel=1e-12)


# -- the warm-up, with any shape ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,mode", [("diag-i", "trainable"), ("iso-d", "mle")])
def test_warmup_uses_g5_for_its_steps_with_any_shape(name, mode):
    x, mu, head = _inputs(name, mode)
    v = build_variance(name, SHAPE, mode=mode, rescue="warmup:steps=1").train()
    plain = build_variance(name, SHAPE, mode=mode)
    g5 = build_variance("iso-i", SHAPE, mode="mle")(x, mu).rec
    assert v(x, mu, head).rec.item() == pytest.approx(g5.item(), rel=1e-12)
    assert v(x, mu, head).rec.item() == pytest.approx(plain(x, mu, head).rec.item(), rel=1e-12)


# -- names, errors, defaults, records ------------------------------------------------------------------------------
def test_registry_specs_round_trip():
    assert set(RESCUES) == {"none", "warmup", "beta-nll", "faithful", "floor", "eps"}
    for name in RESCUES:
        r = build_rescue(name)
        assert build_rescue(r.spec()).spec() == r.spec() and r.spec().split(":")[0] == name
    assert parse_rescue("beta-nll:beta=0.5") == ("beta-nll", {"beta": 0.5})
    assert build_rescue("warmup:steps=200").spec() == "warmup:steps=200"


@pytest.mark.parametrize("spec,match", [
    ("beta", r"unknown rescue 'beta'.*expected one of \['beta-nll'"),
    ("beta-nll:beta=2", r"parameter 'beta' = 2.*\[0, 1\].*Fix"),
    ("beta-nll:gamma=1", r"unknown parameter\(s\) \['gamma'\].*takes \['beta'\]"),
    ("beta-nll:0.5", r"'0.5' is not key=value.*beta-nll:beta=0.5"),
    ("warmup:steps=-3", r"parameter 'steps' = -3.*integer >= 1"),
    ("floor:sigma_min=0", r"parameter 'sigma_min' = 0.*positive"),
    ("faithful:mean=free", r"parameter 'mean' = 'free'.*'unit'.*'iso-i'"),
    (3, r"rescue must be a name.*Fix"),
])
def test_a_bad_rescue_is_refused_naming_the_argument_and_the_fix(spec, match):
    with pytest.raises(ValueError, match=match):
        build_variance("diag-d", SHAPE, rescue=spec)
    with pytest.raises(ValueError, match=match):
        GaussianVAE("d1", variance="diag-d", rescue=spec)


def test_per_pixel_rescues_refuse_a_non_diagonal_sigma_and_warmup_conflicts_are_refused():
    with pytest.raises(ValueError, match=r"'beta-nll'.*diagonal.*'lowrank'.*Fix"):
        build_variance("lowrank-r1", SHAPE, rescue="beta-nll")
    assert build_variance("lowrank-r1", SHAPE, rescue="faithful").rescue_spec == "faithful:mean=unit"
    with pytest.raises(ValueError, match=r"warmup_steps=5.*rescue='beta-nll'.*Fix"):
        GaussianVAE("d1", variance="diag-d", warmup_steps=5, rescue="beta-nll")


def test_models_resolve_auto_and_record_their_rescue():
    assert build_model("mle-diag-d", "mnist").rescue == DEFAULT_RESCUE  # the README's call: safe by default
    assert build_model("trainable-diag-d", "d1").rescue == DEFAULT_RESCUE  # per-pixel and input-dependent
    for name in ("mle-iso-d", "trainable-iso-d", "mle-iso-i", "mle-diag-i", "trainable-iso-i", "vae-gaussian"):
        assert build_model(name, "d1").rescue == "none"  # no per-pixel -D variance: the paper's objective
    assert build_model("mle-diag-d", "d1", rescue="none").rescue == "none"
    legacy = build_model("mle-diag-d", "d1", warmup_steps=200)
    assert legacy.rescue == "warmup:steps=200" == build_model("mle-diag-d", "d1", rescue="warmup:steps=200").rescue
    assert f"rescue={DEFAULT_RESCUE}" in repr(build_model("mle-diag-d", "d1").variance)


def test_checkpoints_from_before_the_rescues_load():
    new = GaussianVAE("d1", variance="diag-d", warmup_steps=3)
    old = {("steps_seen" if k == "variance.rescue.steps_seen" else k.replace("variance.rescue.warm.",
                                                                             "warmup_variance.")): v.clone()
           for k, v in new.state_dict().items()}
    old["steps_seen"].fill_(7)
    GaussianVAE("d1", variance="diag-d", warmup_steps=3).load_state_dict(old)  # strict
    fresh = GaussianVAE("d1", variance="diag-d", warmup_steps=3)
    fresh.load_state_dict(old)
    assert int(fresh.variance.rescue.steps_seen) == 7


def test_the_books_models_are_pinned_and_the_rescue_pin_leaves_their_initialisation():
    """The experiments' −D rows keep what they trained with before #29 (Tables 3–7), seeded as before."""
    from vaebook.data import dataset_spec
    from vaebook.lab import Job

    want = {"mle-diag-d": "warmup:steps=200", "mle-iso-d": "none", "trainable-diag-d": "none",
            "trainable-iso-d": "none"}
    for ds in ("mnist", "noisy-mnist", "celeba64", "celebahq128"):
        for model, spec in want.items():
            if ds == "noisy-mnist" and model.startswith("trainable"):
                continue
            kw = dataset_spec(ds).model_defaults.get(model, {})
            got = build_rescue(kw.get("rescue")).spec() if "rescue" in kw else f"warmup:steps={kw['warmup_steps']}"
            assert got == (spec if ds in ("mnist", "noisy-mnist") or model != "mle-diag-d" else "none"), (ds, model)
    a = Job.make("mle-diag-d", "mnist-d1", {"epochs": 1}, 0).build()  # mnist-d1 pins nothing: the default
    b = Job.make("mle-diag-d", "mnist-d1", {"epochs": 1}, 0, model_kwargs={"rescue": "none"}).build()
    assert a.rescue == DEFAULT_RESCUE and b.rescue == "none"
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("rescue", [DEFAULT_RESCUE, "warmup:steps=2", "beta-nll:beta=0.5"])
def test_rescued_models_train_in_a_vmapped_group_exactly_as_alone(rescue):
    """The zoo trains compatible models in one ``torch.func.vmap`` loop on CUDA: every rescue must be batchable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _vmapped_equals_alone(rescue)
    finally:
        torch.set_num_threads(threads)


def _vmapped_equals_alone(rescue):
    import copy

    from vaebook.train import TrainConfig, fit
    from vaebook.train.batched import batch_key, fit_many

    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    cfgs = [TrainConfig(epochs=1, batch_size=8, max_steps=3, seed=10 + k, device="cpu", log_every=2) for k in range(2)]
    models = []
    for k in range(2):
        torch.manual_seed(k)
        models.append(GaussianVAE("d1", variance="diag-d", rescue=rescue))
    assert len({batch_key(m, x, c) for m, c in zip(models, cfgs)}) == 1
    ref = [copy.deepcopy(m) for m in models]
    for m, c in zip(ref, cfgs):
        fit(m, x, c)
    fit_many(models, x, cfgs)
    for a, b in zip(ref, models):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(q, p, rtol=0, atol=1e-7, msg=lambda m: f"{rescue} {name}: {m}")
