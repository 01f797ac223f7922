"""The low-rank Σx page (vaebook.experiments.lowrank, issue #16): its zoo entries are Table 4's, its reading of the
hypothesis follows the numbers, the dequantised bound and the whitened-residual calibration, and its glue keys.
(The page runs end to end at smoke in `make test`; nothing is trained here.)"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat
import torch

from vaebook.experiments import _scale6 as scale
from vaebook.experiments.lowrank import (BASELINES, DEFAULT_MODELS, EXPERIMENT, calibration, comparisons, dequantise,
                                         grad_energy, reading)
from vaebook.lab.page import get_experiment
from vaebook.models.vae import GaussianVAE

REPO = Path(__file__).resolve().parents[1]


def test_models_are_table4s_zoo_entries_at_the_cpu_scale():
    p = EXPERIMENT.resolve({"preset": "cpu"})
    assert p["models"] == list(DEFAULT_MODELS) and p["datasets"] == ["mnist"] and p["iwae_k"] == 500
    gen = get_experiment("generation").resolve({"preset": "cpu"})
    for m in BASELINES:  # the very models the generation page trains: same Job, same cache entry
        assert scale.job(m, "mnist", p) == scale.job(m, "mnist", gen)
    j = scale.job("lowrank-r64", "mnist", p)
    assert j.train_dict["max_steps"] == 600 and j.train_dict["batch_size"] == 64 and j.variant == ()
    assert EXPERIMENT.resolve({"preset": "smoke"})["models"] == ["mle-iso-i", "mle-diag-i", "lowrank-r4"]


def _per_image(n=200, seed=0, d_nll=-5.0, d_mse=3.0, d_grad=-0.5):
    g = torch.Generator().manual_seed(seed)
    base = {k: 100 + torch.rand(n, generator=g, dtype=torch.float64) for k in ("nll_deq", "mse", "grad")}
    noise = lambda: 0.1 * torch.randn(n, generator=g, dtype=torch.float64)  # noqa: E731
    other = {k: v + 1.0 for k, v in base.items()}
    low = {"nll_deq": base["nll_deq"] + d_nll + noise(), "mse": base["mse"] + d_mse + noise(),
           "grad": base["grad"] + d_grad + noise()}
    return {"mle-iso-i": base, "mle-diag-i": other, "lowrank-r4": low}


def test_reading_follows_the_numbers():
    holds = reading(comparisons(_per_image(), {}))
    assert holds["per_rank"][4] == {"nll_lower": True, "smoother": True, "baselines": list(BASELINES)}
    assert "both halves happened at r ∈ {4}" in holds["lr_outcome"]
    worse = reading(comparisons(_per_image(d_nll=+5.0), {}))
    assert worse["per_rank"][4]["nll_lower"] is False and worse["per_rank"][4]["smoother"] is True
    assert "only one half happened" in worse["lr_outcome"] and "r ∈ {none} of {4}" in worse["lr_likelihood"]
    tie = reading(comparisons(_per_image(d_nll=0.0, d_mse=0.0, d_grad=0.0), {}))
    assert "neither half happened" in tie["lr_outcome"]
    assert holds["lr_outcome"] != worse["lr_outcome"] != tie["lr_outcome"]
    assert reading(comparisons({"mle-iso-i": _per_image()["mle-iso-i"]}, {})) == {}


def test_dequantised_images():
    x = torch.randint(0, 256, (4, 1, 28, 28)).float() / 255
    y = dequantise(x, 0)
    assert ((y - x) >= 0).all() and ((y - x) < 1 / 256).all()
    assert torch.equal(y, dequantise(x, 0)) and not torch.equal(y, dequantise(x, 1))
    assert torch.equal(dequantise((x * 255).round().to(torch.uint8), 0), y)
    assert torch.allclose(grad_energy(torch.ones(2, 1, 5, 5)), torch.zeros(2))


def test_calibration_of_rank_zero_equals_iso_i():
    torch.manual_seed(0)
    iso = GaussianVAE("d1", variance="iso-i", mode="mle").eval()
    low = GaussianVAE("d1", variance="lowrank-r0", mode="mle").eval()
    state = {k: v for k, v in iso.state_dict().items() if not k.startswith("variance.")}
    low.load_state_dict({**low.state_dict(), **copy.deepcopy(state)})
    iso.variance.running_sigma2.fill_(0.04)
    low.variance.running_sigma2[:, 0] = 0.04
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    a, b = calibration(iso, x, 4, seed=3), calibration(low, x, 4, seed=3)
    for k in a:
        assert abs(a[k] - b[k]) < 1e-5 * max(1.0, abs(a[k])), (k, a, b)
    assert abs(a["white_lag1"] - a["raw_lag1"]) < 1e-6  # an isotropic Σx does not change the correlation


def test_notebook_glue_keys_are_all_glued():
    nb = nbformat.read(REPO / "notebooks" / "lowrank.ipynb", as_version=4)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    keys = set(re.findall(r"\{glue:text\}`([^`]+)`", prose))
    assert keys and keys <= set(EXPERIMENT.summary(None))
