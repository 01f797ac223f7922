"""t-SNE of codes + prior draws (Figures D.4/J.6): labels stay attached to the right points."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import torch

from vaebook.metrics.toy import LinearGaussianVAE
from vaebook.metrics.tsne import plot_tsne, tsne_latents


def test_tsne_keeps_separated_clusters_and_marks_prior_draws():
    d = 4
    eye = torch.eye(d, dtype=torch.float64)
    model = LinearGaussianVAE(eye, torch.zeros(d, dtype=torch.float64), 0.1, eye, torch.zeros(d, dtype=torch.float64),
                              torch.ones(d, dtype=torch.float64))  # encoder mean = image
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(60) % 3
    centres = 15.0 * torch.eye(3, d, dtype=torch.float64) + 5.0
    x = (centres[labels] + 0.3 * torch.randn(60, d, generator=g, dtype=torch.float64)).reshape(60, 1, 1, d)
    res = tsne_latents(model, x, labels, n_prior=30, seed=0, perplexity=10, max_iter=250)
    emb, lab, pri = res["embedding"], res["labels"], res["is_prior"]
    assert emb.shape == (90, 2) and pri.sum() == 30 and (lab[pri] == -1).all()
    np.testing.assert_array_equal(lab[~pri], labels.numpy())
    # nearest neighbour in the embedding has the same label (clusters far apart in latent space stay apart)
    dist = ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nn_lab = lab[dist.argmin(1)]
    assert (nn_lab == lab).mean() > 0.95
    ax = plot_tsne(res, title="toy")
    assert len(ax.collections) == 4 and ax.get_title() == "toy"  # three labels + prior


def test_prior_is_drawn_apart_from_every_digit_and_the_points_round_trip():
    from matplotlib.colors import to_rgb

    from vaebook.metrics.tsne import maps_from_frame, tsne_frame, tsne_grid

    rng = np.random.default_rng(0)
    res = {"embedding": rng.normal(size=(30, 2)), "labels": np.r_[np.arange(20) % 10, -np.ones(10, int)],
           "is_prior": np.r_[np.zeros(20, bool), np.ones(10, bool)]}
    ax = plot_tsne(res)
    prior, *digits = ax.collections  # the prior first, under the codes
    assert prior.get_label().startswith("prior") and len(digits) == 10
    prior_rgb = to_rgb(prior.get_facecolor()[0])
    # every digit's colour differs from the prior's, and from every other digit's (digit 6 is no longer "pink")
    rgbs = [to_rgb(c.get_facecolor()[0]) for c in digits]
    assert all(max(abs(a - b) for a, b in zip(rgb, prior_rgb)) > 0.3 for rgb in rgbs)
    assert len(set(rgbs)) == 10
    # a prior marker of another shape than the digits' dots
    assert prior.get_paths()[0].vertices.shape != digits[0].get_paths()[0].vertices.shape
    frame = tsne_frame({"A": res, "B": res})
    back = maps_from_frame(frame)
    assert [name for name, _ in back] == ["A", "B"]
    np.testing.assert_allclose(back[1][1]["embedding"], res["embedding"])
    np.testing.assert_array_equal(back[0][1]["is_prior"], res["is_prior"])
    fig = tsne_grid(back, ncols=2)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [f"digit {k}" for k in range(10)] + ["prior N(0, I)"]
