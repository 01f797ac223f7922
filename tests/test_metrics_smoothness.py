"""Expected gap (Eq. 5) and ELS (Eq. 6) against the closed forms of Appendix C."""
import pytest
import torch
from torch import nn

from vaebook.metrics import expected_gap, expected_local_smoothness, jacobian_sq_frobenius, smoothness_report
from vaebook.metrics.toy import LinearGaussianVAE
from vaebook.models.base import GenerativeModel, Posterior


class TinyConvDecoderModel(GenerativeModel):
    """Identity-like encoder, nonlinear decoder with BatchNorm and a transposed conv (like the paper's nets)."""

    label = "tiny-conv"

    def __init__(self, d_z=3):
        super().__init__()
        self.d_z = d_z
        self.enc = nn.Linear(16, d_z)
        self.fc = nn.Sequential(nn.Linear(d_z, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2 * 2 * 2))
        self.bn2 = nn.BatchNorm2d(2)
        self.convt = nn.ConvTranspose2d(2, 1, kernel_size=4, stride=2, padding=1)  # 2×2 → 4×4

    def encode(self, x):
        return Posterior(self.enc(x.reshape(x.shape[0], -1)), None)

    def decode(self, z):
        h = torch.relu(self.bn2(self.fc(z).reshape(-1, 2, 2, 2)))
        return torch.sigmoid(self.convt(h))


def _trained_bn_model(seed=0):
    torch.manual_seed(seed)
    m = TinyConvDecoderModel().double()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        m.train()
        for _ in range(5):
            m.decode(torch.randn(64, 3, dtype=torch.float64) * 2 + 1)
    return m


def test_els_of_linear_decoder_is_frobenius_norm_of_W():
    model = LinearGaussianVAE.random(d_x=6, d_z=3, seed=0)
    x = model.sample_data(10, torch.Generator().manual_seed(1))
    w2 = model.W.detach().pow(2).sum().item()
    res = expected_local_smoothness(model, x, batch_size=4)
    assert res["els_frobenius"] == pytest.approx(w2, rel=1e-12)
    assert res["els_per_dim"] == pytest.approx(w2 / 3, rel=1e-12)  # Table 1's normalisation (Eq. C.7)


def test_jacobian_norm_matches_autograd_for_nonlinear_bn_decoder_and_restores_train_mode():
    model = _trained_bn_model()
    model.train()
    x = torch.randn(5, 1, 4, 4, dtype=torch.float64)
    res = expected_local_smoothness(model, x, batch_size=2, max_items=2)  # tiny blocks: chunking is exercised
    assert model.training  # eval mode only while measuring
    model.eval()
    mu = model.encode(x).mean.detach()
    ref = torch.stack([
        torch.autograd.functional.jacobian(lambda z: model.decode(z.unsqueeze(0)).reshape(-1), mu[i]).pow(2).sum()
        for i in range(5)
    ])
    assert res["els_frobenius"] == pytest.approx(ref.mean().item(), rel=1e-10)
    blocks = jacobian_sq_frobenius(model.decode, mu, max_items=1)
    full = jacobian_sq_frobenius(model.decode, mu)
    torch.testing.assert_close(blocks, ref, rtol=1e-10, atol=0)
    torch.testing.assert_close(full, ref, rtol=1e-10, atol=0)


@pytest.mark.parametrize("s2", [1e-2, 1.0])
def test_expected_gap_of_linear_decoder_is_2_s2_frobenius(s2):
    # Eq. (C.8) is exact for a linear decoder: Δ²(s²) = 2 s² ‖W‖²_F
    model = LinearGaussianVAE.random(d_x=6, d_z=3, seed=2)
    x = model.sample_data(400, torch.Generator().manual_seed(3))
    res = expected_gap(model, x, s2, n_draws=5, batch_size=128, seed=4)
    exact = 2 * s2 * model.W.detach().pow(2).sum().item()
    assert res["n"] == 2000
    assert abs(res["gap"] - exact) < 4 * res["gap_stderr"]
    assert abs(res["gap"] - exact) / exact < 0.1
    assert res["ratio_per_dim"] == pytest.approx(res["gap"] / (2 * 3 * s2))


def test_gap_over_2s2_tends_to_els_for_small_perturbations():
    # Appendix C: for a smooth nonlinear decoder and s² → 0, Δ²(s²) / (2 s² E‖∇μθ‖²_F) → 1
    model = _trained_bn_model(seed=1)
    x = torch.randn(200, 1, 4, 4, dtype=torch.float64)
    rep = smoothness_report(model, x, s2_values=(1e-6,), n_draws=20, seed=0)
    rel_stderr = rep["gap_stderr_1e-06"] / rep["gap_1e-06"]
    assert abs(rep["gap_over_c8_1e-06"] - 1.0) < 4 * rel_stderr + 0.01
    assert rep["els"] == pytest.approx(rep["els_frobenius"] / 3)
    assert rep["ratio_per_dim_1e-06"] == pytest.approx(rep["gap_1e-06"] / (2 * 3 * 1e-6))
