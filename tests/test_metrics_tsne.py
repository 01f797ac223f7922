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
