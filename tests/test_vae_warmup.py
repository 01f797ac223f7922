"""The Iso-I warm-up of GaussianVAE (``warmup_steps`` = rescue ``"warmup"``; ours, for Diag-D by MLE) and the VAEs'
logged terms."""
import pytest
import torch

from vaebook.models.vae import GaussianVAE, Section4VAE


def _loss(model, x, seed):
    return model.loss(x, generator=torch.Generator().manual_seed(seed)).total


def test_warmup_uses_the_iso_i_objective_then_the_models_own():
    torch.manual_seed(0)
    x = torch.rand(5, 1, 28, 28)
    dd = GaussianVAE("d1", variance="diag-d", mode="mle", warmup_steps=2).train()
    iso = GaussianVAE("d1", variance="iso-i", mode="mle").train()
    plain = GaussianVAE("d1", variance="diag-d", mode="mle", rescue="none").train()
    nets = {k: v for k, v in dd.state_dict().items() if k.startswith(("encoder.", "decoder."))}
    iso.load_state_dict(nets, strict=False)
    plain.load_state_dict(nets, strict=False)
    for step in range(2):  # the warm-up: Iso-I's MLE objective (G.5) on the same residuals
        assert _loss(dd, x, step).item() == pytest.approx(_loss(iso, x, step).item(), rel=1e-6)
    assert int(dd.variance.rescue.steps_seen) == 2 and dd.rescue == "warmup:steps=2" and dd.warmup_steps == 2
    after = _loss(dd, x, 7).item()  # then Diag-D's own (G.17), which differs from Iso-I's
    assert after == pytest.approx(_loss(plain, x, 7).item(), rel=1e-6)
    assert abs(after - _loss(iso, x, 7).item()) > 1.0


def test_evaluation_calls_do_not_advance_the_warmup():
    m = GaussianVAE("d1", variance="diag-d", mode="mle", warmup_steps=3).eval()
    m.loss(torch.rand(2, 1, 28, 28))
    assert int(m.variance.rescue.steps_seen) == 0


def test_negative_warmup_is_refused_with_the_parameter_name():
    with pytest.raises(ValueError, match="warmup_steps"):
        GaussianVAE("d1", variance="diag-d", warmup_steps=-1)


@pytest.mark.parametrize("cls,kw", [(GaussianVAE, dict(variance="iso-i", mode="fixed")),
                                    (Section4VAE, dict())])
def test_logged_terms_add_up_to_the_loss(cls, kw):
    m = cls("d1", **kw) if cls is GaussianVAE else cls(**kw)
    out = m.loss(torch.rand(3, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    assert out.terms["rec"].item() + out.terms["kl"].item() == pytest.approx(out.total.item(), rel=1e-6)
