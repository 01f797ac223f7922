"""Spherical interpolation (Section 6.2) and the pairs used for Table 5."""

import torch

from vaebook.metrics.interpolation import interpolated_images, random_pairs, slerp
from vaebook.metrics.toy import LinearGaussianVAE


def _angle(a, b):
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return torch.arccos(cos.clamp(-1, 1))


def test_slerp_endpoints_and_per_row_ratios():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    torch.testing.assert_close(slerp(z1, z2, 0.0), z1)
    torch.testing.assert_close(slerp(z1, z2, 1.0), z2)
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    rows = slerp(z1, z2, t)
    for i in range(5):
        torch.testing.assert_close(rows[i], slerp(z1[i], z2[i], float(t[i])))  # 1-D inputs work too
    torch.testing.assert_close(slerp(z1, z2, t.unsqueeze(1)), rows)


def test_slerp_keeps_norm_and_angle_is_linear_in_ratio_for_equal_norms():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    z1 = 3.0 * z1 / z1.norm(dim=-1, keepdim=True)
    z2 = 3.0 * z2 / z2.norm(dim=-1, keepdim=True)
    omega = _angle(z1, z2)
    for t in (0.1, 0.3, 0.5, 0.9):
        zt = slerp(z1, z2, t)
        torch.testing.assert_close(zt.norm(dim=-1), torch.full((4,), 3.0, dtype=torch.float64))
        torch.testing.assert_close(_angle(z1, zt), t * omega)
        torch.testing.assert_close(_angle(zt, z2), (1 - t) * omega)
    # unlike linear interpolation, the mid-point does not shrink towards the origin
    assert bool((slerp(z1, z2, 0.5).norm(dim=-1) > (0.5 * (z1 + z2)).norm(dim=-1)).all())


def test_slerp_nearly_parallel_vectors_fall_back_to_lerp():
    z1 = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    z2 = 2.0 * z1 + 1e-12
    out = slerp(z1, z2, 0.25)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, 0.75 * z1 + 0.25 * z2)


def test_random_pairs_are_distinct_and_interpolations_decode_slerp_of_encoder_means():
    g = torch.Generator().manual_seed(2)
    i, j = random_pairs(5, 2000, g)
    assert bool((i != j).all()) and set(i.tolist()) == set(range(5)) and set(j.tolist()) == set(range(5))
    model = LinearGaussianVAE.random(d_x=4, d_z=2, seed=3)
    x = model.sample_data(6, torch.Generator().manual_seed(4))
    out = torch.cat(list(interpolated_images(model, x, n_pairs=7, ratio="mid", seed=5, batch_size=3)))
    gi, gj = random_pairs(6, 7, torch.Generator().manual_seed(5))  # the same pairs, drawn independently
    with torch.no_grad():
        ref = model.decode(slerp(model.encode(x[gi]).mean, model.encode(x[gj]).mean, 0.5))
    torch.testing.assert_close(out, ref)
    with torch.no_grad():
        torch.testing.assert_close(model.interpolate(x[gi], x[gj], 0.5), ref)  # GenerativeModel.interpolate uses slerp
