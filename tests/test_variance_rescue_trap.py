"""The black trap of Diag-D by MLE, as a measured fact (#29), and the README example that avoids it.

Trained by the paper's plain objective (G.17, ``rescue="none"``) from random initialisation, Diag-D turns every
reconstruction black: MNIST's background pixels are exact zeros, G.17's ½ ln(r² + ε) pulls each pixel harder the
closer it gets, and the saturated sigmoid then has no gradient left. The same call with the library's default
(``build_model("mle-diag-d", "mnist")``, the README's; :data:`vaebook.variance.DEFAULT_RESCUE`) stays input-dependent.
Scale: 256 MNIST training images, batch 32, 16 epochs = 128 steps, seed 0, App. I.1 nets; 256 test images.
"""
import pytest
import torch

from vaebook.data import load_mnist
from vaebook.models import build_model
from vaebook.train import TrainConfig, fit

pytestmark = pytest.mark.realdata
N, BATCH, EPOCHS = 256, 32, 16  # 128 steps: the plain objective is black by step 100 (seeds 0–2 measured)


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread, denormals flushed (a black sigmoid output is full of them): seconds even on a busy machine."""
    threads, _ = torch.get_num_threads(), torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)


@pytest.fixture(scope="module")
def mnist(data_root):
    x, _ = load_mnist("train", root=data_root, as_float=True)
    xt, _ = load_mnist("test", root=data_root, as_float=True)
    return x[:N], xt[:N]


def _readme(x, **kw):
    """The README's example, seeded (extra ``kw`` go to ``build_model``)."""
    torch.manual_seed(0)
    model = build_model("mle-diag-d", "mnist", **kw)
    fit(model, x, TrainConfig(epochs=EPOCHS, batch_size=BATCH, device="cpu", seed=0))
    return model.eval()


def _stats(model, xt):
    rec = model.reconstruct(xt)
    return {"mean": rec.mean().item(), "spread": rec.std(0).mean().item(),  # pixel std across images, averaged
            "mse": ((rec - xt) ** 2).flatten(1).sum(1).mean().item(), "black_mse": (xt ** 2).flatten(1).sum(1).mean().item()}


def test_the_plain_diag_d_objective_goes_black(mnist):
    x, xt = mnist
    s = _stats(_readme(x, rescue="none"), xt)
    assert s["mean"] < 0.01, s  # black: MNIST's mean pixel is 0.13
    assert s["spread"] < 0.01, s  # and the same for every image (the encoding is ignored)
    assert s["mse"] == pytest.approx(s["black_mse"], rel=0.03), s  # test MSE = mean ‖x‖² (81.5 on the full split)


def test_the_readme_example_stays_input_dependent(mnist):
    x, xt = mnist
    model = _readme(x)
    assert model.rescue != "none"
    s = _stats(model, xt)
    assert s["spread"] > 0.1, s  # reconstructions differ across images
    assert s["mse"] < 0.75 * s["black_mse"], s
