"""The shared Σx conformance test (#27): every registered shape in every mode it supports passes
:func:`vaebook.variance.conformance.check_variance` (each hook against ``MultivariateNormal``); the README's
block-diagonal Σx, copied out of README.md as it is, passes it, is the block-restricted MLE of G.1 and trains
through Table 4 at smoke; shapes that get one hook wrong fail it with a message naming that hook."""
import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vaebook.lab.__main__ import main as lab_main
from vaebook.models import MODEL_REGISTRY, GaussianVAE, register_model
from vaebook.variance import VARIANCES, DecoderVariance, IsoI, register_variance
from vaebook.variance.conformance import ConformanceError, check_variance, conformance_failures, precision

REPO = Path(__file__).resolve().parents[1]
CASES = [(n, m) for n, c in sorted(VARIANCES.items()) for m in c.supported_modes()]


@pytest.mark.parametrize("name,mode", CASES)
def test_every_registered_shape_conforms(name, mode):
    assert conformance_failures(name, mode) == []


def readme_file(path: str) -> str:
    """The ```python block of README.md whose first line is ``# <path>``."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    hits = [b for b in blocks if b.splitlines()[0].strip() == f"# {path}"]
    assert len(hits) == 1, f"README.md has {len(hits)} python blocks starting '# {path}'"
    return hits[0]


@pytest.fixture
def block2x2(tmp_path):
    """The README's vaebook/variance/block2x2.py, written to a temp file and imported (registers "block2x2")."""
    f = tmp_path / "block2x2.py"
    f.write_text(readme_file("vaebook/variance/block2x2.py"))
    spec = importlib.util.spec_from_file_location("readme_block2x2", f)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
        yield mod.Block2x2
    finally:
        VARIANCES.pop("block2x2", None)
        MODEL_REGISTRY.pop("mle-block2x2", None)


def test_readme_block2x2_conforms_and_is_the_block_mle(block2x2):
    assert VARIANCES["block2x2"] is block2x2 and block2x2.supported_modes() == ("fixed", "mle")
    check_variance("block2x2")  # raises ConformanceError naming the hook otherwise
    # independent: G.1's Σ̂ = E[r rᵀ] (numpy, dense), kept on the 4×4 blocks of 2×2 patches, zero elsewhere
    shape, g = (2, 4, 6), torch.Generator().manual_seed(3)
    r = torch.rand(2, 10, *shape, generator=g, dtype=torch.float64) - 0.5
    v = block2x2(shape, mode="mle").double()
    R = r.reshape(-1, 48).numpy()
    S = R.T @ R / R.shape[0]
    c, h, w = np.meshgrid(range(2), range(4), range(6), indexing="ij")
    patch = (c * 100 + (h // 2) * 10 + w // 2).ravel()
    want = np.where(patch[:, None] == patch[None, :], S, 0.0)
    got = torch.linalg.inv(precision(v, v.estimate(r), (1, 1)))[0, 0].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    assert np.abs(want - np.diag(np.diag(want))).max() > 1e-3  # genuinely non-diagonal
    # what pages report: diag Σ̂x per pixel, not a mean that mixes in the off-diagonal entries
    torch.testing.assert_close(v.marginal(v.estimate(r)), torch.from_numpy(np.diag(S).reshape(shape).copy()))
    with pytest.raises(ValueError, match="x_shape"):
        block2x2((1, 3, 4))


def _wrong(base, hook):
    """``base`` with one hook wrong, as the issue found them (or a typical slip)."""
    body = {
        "add_eps": lambda self, s, eps: s + eps,  # ε on every entry
        "marginal": lambda self, s: self.pixels(s.mean(-1)),  # off-diagonal entries averaged into σx²
        "initial": lambda self, value: torch.full(self.param_shape(), float(value)),  # the scalar everywhere: singular
        "estimate": lambda self, r: base.estimate(self, r) / 2,  # not the MLE
        "logdet": lambda self, s: base.logdet(self, s) / 2,
    }[hook]
    return type(f"Wrong_{hook}", (base,), {hook: body})


@pytest.mark.parametrize("hook", ["add_eps", "marginal", "initial", "estimate", "logdet"])
def test_a_wrong_hook_fails_naming_it(block2x2, hook):
    with pytest.raises(ConformanceError) as e:
        check_variance(_wrong(block2x2, hook))
    lines = str(e.value).splitlines()[1:]
    assert lines[0].startswith(f"{hook}:"), lines  # the first failure names the wrong hook (later ones: its effects)
    if hook == "marginal":  # nothing else reads it: blamed alone
        assert all(s.startswith("marginal:") for s in lines), lines


def test_a_double_squared_diagonal_estimate_fails_estimate():
    class Squared(IsoI):  # the README toy's slip: mle receives r² already and squares it again
        def mle(self, r2):
            return (r2 ** 2).mean()

    fails = conformance_failures(Squared, "mle")
    assert fails and any(f.startswith("estimate:") for f in fails), fails


def test_a_non_diagonal_shape_must_override_the_hooks():
    with pytest.raises(TypeError, match=r"must override the hooks \['param_shape', 'initial', 'add_eps', 'marginal', "
                                        r"'logdet', 'mahalanobis', 'estimate'\]"):
        class Missing(DecoderVariance):  # what the old README asked for: estimate, nll, mle_objective
            name = "missing"
            diagonal = False

            def nll(self, r, sigma2):
                return r.sum()

    class Undeclared(DecoderVariance):  # a d×d form left as "diagonal": refused when built, naming the fix
        name = "undeclared"

        def param_shape(self):
            return (self.d_x, self.d_x)

    with pytest.raises(TypeError, match="diagonal = False"):
        Undeclared((1, 2, 2))


def test_register_variance_refuses_a_duplicate_name():
    class Other(IsoI):
        name = "iso-i"

    with pytest.raises(ValueError, match="'iso-i' registered twice: it is already taken.*Fix"):
        register_variance(Other)
    assert VARIANCES["iso-i"] is IsoI
    assert register_variance(IsoI) is IsoI  # the same class again is harmless
    with pytest.raises(ValueError, match="lower-case"):
        register_variance(type("Bad", (IsoI,), {"name": "Bad_Name"}))


def test_readme_block2x2_through_table4_at_smoke(block2x2, tmp_path, data_root):
    register_model("mle-block2x2", "Block 2×2 (MLE)", "beyond_paper", variance="block2x2", mode="mle")(GaussianVAE)
    rc = lab_main(["run", "generation", "--preset", "smoke", "--device", "cpu", "--results-dir", str(tmp_path),
                   "--data-root", str(data_root), "-p", 'models=["mle-block2x2"]', "-p", 'datasets=["mnist"]'])
    assert rc == 0
    out = tmp_path / "smoke" / "generation"
    t = pd.read_csv(out / "table4.csv")
    mine = t[t["row"] == "mle-block2x2"]
    assert set(mine["metric"]) >= {"mse", "fid_prior"} and mine["ours"].notna().all()
    assert (mine["verdict"] == "ours only").all()
    vals = json.loads((out / "metrics.json").read_text())["values"]["mnist"]["mle-block2x2"]
    # the σx² reported is the mean of diag Σ̂x (per-pixel residual variances < 1), the test one finite
    assert 0 < vals["sigma2"] < 1 and math.isfinite(vals["sigma2_test"])
