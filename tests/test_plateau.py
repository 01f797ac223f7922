"""The loss curve the trainer logs and the plateau test on it (vaebook.train.curve), against closed forms."""
import json
import math

import numpy as np
import pytest
import torch

from vaebook.models import Section4VAE
from vaebook.train import History, TrainConfig, fit, plateau
from vaebook.train.curve import BAND, plateau_cell, plateau_line

torch.set_num_threads(1)
N, M = 100, 20  # logged points, points per window (window 0.2)


def _exp_curve(a, b, tau, n=N):
    """L(t) = a + b·exp(−t/τ) at steps t = 1 … n, as curve points."""
    return [{"step": t, "loss": a + b * math.exp(-t / tau)} for t in range(1, n + 1)]


def _exp_first_median(a, b, tau):
    """Median of a + b·exp(−t/τ) over t = 1 … M (M even, the curve monotone): the mean of its two middle values."""
    r = math.exp(-1 / tau)
    return a + b * (r ** (M // 2) + r ** (M // 2 + 1)) / 2


def _ratio(tau):
    """(L_prev − L_last) / (median of the first window − L_last) of b·exp(−t/τ), by the geometric series."""
    r = math.exp(-1 / tau)
    gain = (1 - r ** M) * (r ** (N - 2 * M + 1) - r ** (N - M + 1)) / (M * (1 - r))
    last = r ** (N - M + 1) * (1 - r ** M) / (M * (1 - r))
    return gain / ((r ** (M // 2) + r ** (M // 2 + 1)) / 2 - last)


def _exp_window_mean(a, b, tau, s, e):
    """Mean of a + b·exp(−t/τ) over t = s … e, by the geometric series."""
    r, k = math.exp(-1 / tau), e - s + 1
    return a + b / k * r ** s * (1 - r ** k) / (1 - r)


@pytest.mark.parametrize("tau", [5.0, 10.0, 25.0, 60.0, 200.0])
def test_exponential_decay_against_the_closed_form(tau):
    a, b = -500.0, 300.0  # a negative loss (an MLE Σx model's): the rule is scale-free
    p = plateau(_exp_curve(a, b, tau))
    prev, last = (_exp_window_mean(a, b, tau, s, s + M - 1) for s in (N - 2 * M + 1, N - M + 1))
    first = _exp_first_median(a, b, tau)
    assert (p["L_first"], p["L_prev"], p["L_last"]) == pytest.approx((first, prev, last), rel=1e-12)
    assert p["improvement_last"] == pytest.approx(prev - last, rel=1e-9)
    assert p["total"] == pytest.approx(first - last, rel=1e-12)
    ratio = _ratio(tau)  # independent of a and b
    assert p["ratio"] == pytest.approx(ratio, rel=1e-9)
    assert 2 * p["noise_se"] < 0.1 * abs(p["improvement_last"])  # smooth: the band decides, not the noise
    assert p["verdict"] == ("flat" if ratio <= BAND else "not flat") and p["flat"] == (ratio <= BAND)
    assert (p["verdict"] == "flat") == (tau <= 10.0)
    assert p["points"] == N and p["window_points"] == M and p["last_step"] == N


def test_exponential_decay_on_both_sides_of_the_band():
    """τ* where the closed-form ratio is exactly the band: just below it flat, just above not."""
    ratio = _ratio

    lo, hi = 5.0, 100.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ratio(mid) < BAND else (lo, mid)
    assert plateau(_exp_curve(1.0, 1.0, lo * 0.999))["verdict"] == "flat"
    assert plateau(_exp_curve(1.0, 1.0, hi * 1.001))["verdict"] == "not flat"


def test_the_band_boundary_is_flat():
    """Window means A, B, C constant inside their windows: improvement = B − C, total = A − C, exactly."""
    y = np.r_[np.full(M, 16.0), np.full(N - 3 * M, 8.0), np.full(M, 1.0), np.zeros(M)]
    p = plateau(list(y), band=1 / 16)
    assert (p["improvement_last"], p["total"], p["ratio"]) == (1.0, 16.0, 1 / 16)
    assert p["verdict"] == "flat"  # 1 ≤ 16/16
    y[N - 2 * M:N - M] = 1.0 + 2.0 ** -10
    q = plateau(list(y), band=1 / 16)
    assert q["improvement_last"] == 1.0 + 2.0 ** -10 and q["verdict"] == "not flat"
    assert 2 * q["noise_se"] < q["improvement_last"] / 10  # one jump in 2m points: not mistaken for noise
    # a rising end is not flat either (|improvement| is judged)
    assert plateau(list(-y), band=1 / 16)["verdict"] == "not flat"


def test_scale_free():
    y = np.array([v["loss"] for v in _exp_curve(0.0, 1.0, 30.0)])
    ref = plateau(list(y))
    for scale, shift in ((1e-3, 0.0), (7.0, -1e4), (250.0, 3.0)):
        p = plateau(list(scale * y + shift))
        assert p["verdict"] == ref["verdict"] and p["ratio"] == pytest.approx(ref["ratio"], rel=1e-6)


def test_a_noisy_constant_is_flat():
    """Pure noise σ = 0.1 around 3: |L_prev − L_last| is within 2 se (≈ 95 %); se matches σ·√(2/m)."""
    sigma = 0.1
    ps = [plateau(list(3.0 + sigma * np.random.default_rng(s).standard_normal(N))) for s in range(200)]
    assert ps[0]["verdict"] == "flat"
    assert sum(p["verdict"] == "not flat" for p in ps) <= 0.1 * len(ps)
    se2 = np.mean([p["noise_se"] ** 2 for p in ps])
    assert se2 == pytest.approx(sigma ** 2 * 2 / M, rel=0.1)
    # the same noise on a curve still falling fast is not flat
    y = np.array([v["loss"] for v in _exp_curve(3.0, 10.0, 200.0)])
    y += sigma * np.random.default_rng(0).standard_normal(N)
    assert plateau(list(y))["verdict"] == "not flat"


def test_too_short_and_no_curve():
    assert plateau([1.0] * 9)["verdict"] == "too short" and plateau([1.0] * 10)["verdict"] == "flat"
    old = [{"epoch": 1, "step": 100, "loss": 3.0}]  # a record written before curves were logged
    for obj in (old, History(old), [], None):
        p = plateau(obj)
        assert p["verdict"] == "n/a" and p["flat"] is None and "no loss curve" in p["reason"]
    with pytest.raises(ValueError, match="window"):
        plateau([1.0] * 20, window=0.6)


def test_page_strings():
    flat, moving = plateau(_exp_curve(0.0, 1.0, 10.0)), plateau(list(np.linspace(10, 0, 20)))
    assert plateau_cell(flat) == "flat (0.25 %)" and plateau_cell(moving) == "not flat (25 %)"  # a line: 4 of 16 points
    assert plateau_cell(plateau([1.0] * 20)) == "flat"  # no change at all: no share to give
    assert plateau_cell(None) == "n/a" and plateau_cell(plateau([1.0])) == "too short"
    line = plateau_line([flat, moving, plateau([1.0]), None])
    assert line.startswith("1 of 4 models flat (the last 20 % of logged steps gave < 5 % of the run's loss improvement")
    assert line.endswith("; 1 not flat; 1 too short to judge (< 10 logged points); 1 without a loss curve")
    assert plateau_line([None, plateau([])]).startswith("no loss curves recorded")


# --- the curve a real (short) training run logs -------------------------------------------------------------
def _run(**cfg):
    x = torch.rand(192, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # batch 32: 6 steps per epoch
    torch.manual_seed(0)
    return fit(Section4VAE("d1", sigma_x2=1.0), x, TrainConfig(batch_size=32, device="cpu", **cfg))


def test_a_real_runs_curve_averages_to_its_epoch_losses(tmp_path):
    h = _run(epochs=2, log_every=4)  # windows 1–4, 5–8 (straddles the epochs), 9–12
    assert [[pt["step"] for pt in e["curve"]] for e in h.epochs] == [[4], [8, 12]]
    assert len(h.curve) == 12 // 4
    # every window has log_every steps, so the points' plain mean is the step-weighted mean
    assert np.mean([pt["loss"] for pt in h.curve]) == pytest.approx(np.mean([e["loss"] for e in h.epochs]), rel=1e-5)
    one = _run(epochs=1, log_every=2)
    assert len(one.curve) == 3 and set(one.curve[0]) >= {"step", "loss", "rec", "kl"}
    for k in ("loss", "rec", "kl"):
        assert np.mean([pt[k] for pt in one.curve]) == pytest.approx(one.epochs[0][k], rel=1e-5)
    cut = _run(epochs=2, log_every=4, max_steps=10)  # steps 9–10 make no point
    assert [pt["step"] for pt in cut.curve] == [4, 8]
    assert plateau(h)["verdict"] == "too short"
    # the saved history keeps the curve in its JSON (as the zoo stores it), not in its CSV
    h.save(tmp_path)
    back = json.loads((tmp_path / "history.json").read_text())
    assert plateau(back) == plateau(h) and History(back).curve == h.curve
    assert "curve" not in (tmp_path / "history.csv").read_text()


def test_a_huge_first_loss_does_not_make_a_falling_curve_flat():
    # an MLE σx² fitted to an untrained decoder: the first logged loss ~1e6, then a steady fall of 150 per point.
    # With the first window's mean, the last window's gain is 0.04 % of the "run's" and the curve reads flat;
    # the first window's median keeps the spike out and the curve is still falling (as the faces page's Iso-I did).
    y = [8.7e6] + [-300.0 - 150.0 * i for i in range(29)]
    p = plateau(y)
    assert p["verdict"] == "not flat"
    assert p["ratio"] > 0.05
    y_mean_rule_total = sum(y[:6]) / 6 - sum(y[-6:]) / 6
    assert p["improvement_last"] / y_mean_rule_total < 0.05  # what the old mean rule would have read: flat
