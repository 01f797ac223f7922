"""Training loss curves with the plateau rule drawn on them (vaebook.lab.curve_figure), the curve points a result
records (vaebook.lab.curves), and each page's panels from its records."""
import json
import math
import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from vaebook.lab import curve_figure as cf  # noqa: E402
from vaebook.lab.curves import curve_points  # noqa: E402
from vaebook.lab.display import PAGE_IN  # noqa: E402
from vaebook.train.curve import plateau, plateau_cell  # noqa: E402

torch.set_num_threads(1)


def _pairs(a, b, tau, n=37, every=50, noise=0.0, seed=0):
    """``[[step, loss]]`` of a + b·exp(−i/τ) (+ noise) at steps every, 2·every, …"""
    rng = np.random.default_rng(seed)
    return [[every * i, a + b * math.exp(-i / tau) + noise * rng.normal()] for i in range(1, n + 1)]


def _judge(pairs):
    return plateau([{"step": s, "loss": v} for s, v in pairs])


def _spans(ax):
    """``{window: (x0, x1)}`` of the shaded windows drawn on ``ax``."""
    out = {}
    for p in ax.patches:
        gid = p.get_gid() or ""
        if gid.startswith("window-"):
            out[gid[len("window-"):]] = (p.get_x(), p.get_x() + p.get_width())
    return out


def _verdict(ax):
    return [t.get_text() for t in ax.texts if t.get_gid() == "verdict"]


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_shaded_windows_are_the_windows_plateau_compared():
    flat, moving = _pairs(740, 30, 4, noise=0.05), _pairs(-300, 400, 40)
    ps = {"flat": _judge(flat), "moving": _judge(moving)}
    assert ps["flat"]["verdict"] == "flat" and ps["moving"]["verdict"] == "not flat"
    fig = cf.curve_figure({"flat": flat, "moving": moving}, ps)
    for ax, (name, pairs) in zip(fig.axes, (("flat", flat), ("moving", moving))):
        p, steps = ps[name], [s for s, _ in pairs]
        n, m = p["points"], p["window_points"]  # read from the rule's own dict
        assert n == len(pairs) and m == round(0.2 * n)
        assert _spans(ax) == {"first": (steps[0], steps[m - 1]), "previous": (steps[n - 2 * m], steps[n - m - 1]),
                              "last": (steps[n - m], steps[n - 1])}
        # the window means drawn are the rule's
        means = {c.get_gid(): c.get_segments()[0][0][1] for c in ax.collections if (c.get_gid() or "").startswith("mean-")}
        assert means == pytest.approx({"mean-first": p["L_first"], "mean-previous": p["L_prev"],
                                       "mean-last": p["L_last"]})
        assert _verdict(ax) == [plateau_cell(p)]
        assert ax.get_title() == name
    assert _verdict(fig.axes[1])[0].startswith("not flat (")


def test_the_recorded_verdict_is_drawn_and_a_missing_one_is_judged_on_the_curve():
    pairs = _pairs(100, 50, 20)
    recorded = {**_judge(pairs), "verdict": "flat", "ratio": 0.012}  # as stored with the run (full-precision curve)
    fig = cf.curve_figure({"a": pairs, "b": pairs}, {"a": recorded})
    assert _verdict(fig.axes[0]) == ["flat (1.2 %)"]
    assert _verdict(fig.axes[1]) == [plateau_cell(_judge(pairs))] and _verdict(fig.axes[1])[0] != "flat (1.2 %)"


def test_a_curve_too_short_to_judge_has_no_windows():
    pairs = _pairs(10, 5, 2, n=6)
    fig = cf.curve_figure({"short": pairs})
    assert _spans(fig.axes[0]) == {} and _verdict(fig.axes[0]) == ["too short"]


@pytest.mark.parametrize("curves, plateaus, match", [
    ({}, None, r"curves is empty"),
    ({"one": [[50, 3.0]]}, None, r"curves\['one'\]: 1 point"),
    ({"none": []}, None, r"curves\['none'\]: 0 point"),
    ({"bad": [[50, 3.0, 1.0], [100, 2.0, 1.0]]}, None, r"curves\['bad'\]: every point must be a \[step, loss\] pair"),
    ({"back": [[100, 3.0], [50, 2.0]]}, None, r"curves\['back'\]: steps must increase"),
    ({"a": _pairs(1, 1, 5)}, {"b": None}, r"plateaus: \['b'\] not in curves"),
    ({"a": _pairs(1, 1, 5)[:-1]}, {"a": _judge(_pairs(1, 1, 5))},
     r"plateaus\['a'\] and curves\['a'\] do not match: plateau: judged 37 points, the curve has 36"),
    ([[50, 1.0]], None, r"curves must map panel titles"),
])
def test_bad_input_names_the_argument(curves, plateaus, match):
    with pytest.raises(ValueError, match=match):
        cf.curve_figure(curves, plateaus)


def test_reading_sizes_labels_and_layout():
    curves = {f"model {i}": _pairs(100 + i, 50, 10) for i in range(5)}
    fig = cf.curve_figure(curves, ncols=3, title="Table 1")
    w, _ = fig.get_size_inches()
    assert w == pytest.approx(PAGE_IN)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert len(axes) == 5
    assert [ax.get_ylabel() for ax in axes] == [cf.LOSS_LABEL, "", "", cf.LOSS_LABEL, ""]
    assert [ax.get_xlabel() for ax in axes] == ["", "", cf.STEP_LABEL, cf.STEP_LABEL, cf.STEP_LABEL]
    assert "nats" in cf.LOSS_LABEL and "step" in cf.STEP_LABEL
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]
    assert sizes and min(sizes) >= 10  # drawn PAGE_IN wide, shown at the page's width: no text below 10 pt
    one = cf.curve_figure({"alone": _pairs(1, 1, 5)}, ncols=3)
    assert one.get_size_inches()[0] == pytest.approx(PAGE_IN / 3)  # a lone panel keeps a panel's width


def test_curve_points_round_to_significant_digits_and_keep_the_steps():
    recs = [{"epoch": 1, "loss": 0.0, "curve": [{"step": 50, "loss": 746.14397321}, {"step": 100, "loss": -0.000123456789}]},
            {"epoch": 2, "loss": 0.0, "curve": [{"step": 150, "loss": float("nan")}]}]
    assert curve_points(recs) == [[50, 746.14], [100, -0.00012346], [150, None]]
    assert curve_points(recs, digits=2) == [[50, 750.0], [100, -0.00012], [150, None]]
    json.dumps(curve_points(recs), allow_nan=False)  # JSON without NaN
    assert curve_points([{"epoch": 1, "loss": 1.0}]) is None  # trained before curves were logged
    with pytest.raises(ValueError, match="digits"):
        curve_points(recs, digits=0)


def test_a_real_runs_recorded_curve_draws_with_its_recorded_plateau():
    from vaebook.models import Section4VAE
    from vaebook.train import TrainConfig, fit

    x = torch.rand(192, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    h = fit(Section4VAE("d1", sigma_x2=1.0), x, TrainConfig(batch_size=16, epochs=1, log_every=1, device="cpu"))
    rec = {"plateau": plateau(h), "curve": curve_points(h)}
    rec = json.loads(json.dumps(rec))  # as metrics.json gives it back
    assert len(rec["curve"]) == 12 == rec["plateau"]["points"]
    assert [s for s, _ in rec["curve"]] == list(range(1, 13))
    fig = cf.curve_figure(*cf.panels([("the run", rec)]))
    m = rec["plateau"]["window_points"]
    assert _spans(fig.axes[0])["last"] == (12 - m + 1, 12)
    assert _verdict(fig.axes[0]) == [plateau_cell(rec["plateau"])]


def _res(metrics):
    return types.SimpleNamespace(metrics=metrics, label="cpu run", provenance={})


def test_panels_keep_records_with_a_drawable_curve():
    c = _pairs(1, 1, 5)
    curves, plats = cf.panels([("a", {"curve": c, "plateau": _judge(c)}), ("b", {"curve": []}), ("c", {}),
                               ("d", None), ("e", {"curve": c})])
    assert list(curves) == ["a", "e"] and list(plats) == ["a"]


def test_show_curves_draws_or_says_why_not(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.extend(a))
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    c = _pairs(1, 1, 5)
    assert cf.show_curves(_res({}), [("old", [("a", {"plateau": None})])]) is False
    assert [s.data for s in shown] == [cf.NO_CURVES]
    shown.clear()
    assert cf.show_curves(_res({}), [("smoke", [("a", {"curve": [], "plateau": _judge([])})])]) is False
    assert [s.data for s in shown] == [cf.TOO_SHORT]
    shown.clear()
    assert cf.show_curves(_res({}), [("g", [("a", {"curve": c}), ("b", {"failed": "nan"})])]) is True
    assert len(shown) == 1 and "1 of its 2 models have no curve to draw" in shown[0].data
    assert shown[0].data.endswith("(cpu run)")
    assert cf.show_curves(None, [("g", [("a", {"curve": c})])]) is False


# --- each page's panels from its records --------------------------------------------------------------------
def test_page_groups_name_every_model_in_words():
    from vaebook.experiments import _collapse_page, _noise_variance_page, _rescue_page, _smoothness_page

    c = _pairs(1, 1, 5)
    col = _collapse_page.curve_groups(_res({"sigma_x2": 1.0, "records": [
        {"init": "random", "lr": 0.001, "seed": s, "curve": c} for s in (0, 1)]}))
    assert [(h, [t for t, _ in it]) for h, it in col] == [
        ("the 2 runs at σx² = 1", ["random start, lr 0.001, seed 0", "random start, lr 0.001, seed 1"])]
    sm = _smoothness_page.curve_groups(_res({"records": [
        {"table": "table1", "encoding": "stochastic", "log10": -0.5}, {"table": "table1", "encoding": "stochastic",
                                                                      "log10": 0.0},
        {"table": "tableE8", "encoding": "stochastic", "log10": 1.0}]}))
    assert [(h, [t for t, _ in it]) for h, it in sm] == [
        ("Table 1, stochastic encoder (learned σz²)", ["log₁₀ σx² = 0", "log₁₀ σx² = -0.5"]),
        ("Table E.8, σz² fixed, σx² by MLE", ["log₁₀ σz² = 1"])]
    nv = _noise_variance_page.curve_groups(_res({"records": [
        {"kind": "noisy", "pattern": "spatial", "s_x2": 0.1, "model": "iso-i", "seed": 0},
        {"kind": "noisy", "pattern": "spatial", "s_x2": 0.1, "model": "diag-d", "seed": 0},
        {"kind": "noisy", "pattern": "spatial", "s_x2": 0.1, "model": "diag-d", "seed": 1},
        {"kind": "clean", "pattern": None, "s_x2": 0.0, "model": "iso-i"}]}))
    assert [(h, [t for t, _ in it]) for h, it in nv] == [
        ("noisy MNIST, spatial pattern", ["Iso-I, s_x² = 0.1", "Diag-D, s_x² = 0.1, seed 0", "Diag-D, s_x² = 0.1, seed 1"]),
        ("the clean-MNIST reference", ["Iso-I on clean MNIST"])]
    rs = _rescue_page.curve_groups(_res({
        "rows": {"iso-i": {"label": "Iso-I"}, "diag-d": {"label": "Diag-D, no rescue"}},
        "settings": {"noise_pattern": "spatial-conditional", "noise_s2": 0.1},
        "records": {"u1": {"kind": "mnist", "row": "diag-d", "seed": 1}, "u0": {"kind": "mnist", "row": "diag-d", "seed": 0},
                    "u2": {"kind": "mnist", "row": "iso-i", "seed": 0}, "u3": {"kind": "noisy", "row": "diag-d", "seed": 0}}}))
    assert [(h, [t for t, _ in it]) for h, it in rs] == [
        ("MNIST", ["Iso-I, seed 0", "Diag-D, no rescue, seed 0", "Diag-D, no rescue, seed 1"]),
        ("noisy MNIST (spatial-conditional pattern, s_x² = 0.1)", ["Diag-D, no rescue, seed 0"])]
    for mod in (_collapse_page, _noise_variance_page, _rescue_page, _smoothness_page):
        assert mod.curve_groups(None) == []
