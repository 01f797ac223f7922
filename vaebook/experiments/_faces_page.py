"""The faces page's drawings made at page time from the stored records (:mod:`vaebook.experiments.faces`): Diag-I's
fitted σx² map and every model's loss curve with the plateau rule's verdict."""
from __future__ import annotations

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from vaebook.experiments._faces_claims import frame
from vaebook.experiments._faces_figures import sigma2_map
from vaebook.lab.curve_figure import show_curves as draw_curves
from vaebook.lab.display import md_escape, reading_style


def show_sigma2_map(res) -> bool:
    """Diag-I's per-pixel σx² (first seed) with Iso-I's scalar marked on the colour bar; False without one."""
    df = frame(res)
    if df.empty:
        return False
    first = df[df["seed"] == df["seed"].min()].set_index("row")
    if "diag-i" not in first.index or not isinstance(first.loc["diag-i", "sigma2"], dict) \
            or not first.loc["diag-i", "sigma2"].get("map"):
        return False
    iso = first.loc["iso-i", "sigma2"]["mean"] if "iso-i" in first.index and isinstance(
        first.loc["iso-i", "sigma2"], dict) else None
    with reading_style():
        sigma2_map(first.loc["diag-i", "sigma2"]["map"], iso)
        plt.show()
    display(Markdown("*Where Diag-I expects its reconstruction to be off: the fitted σx² per pixel (Eq. 9a per pixel, "
                     "App. G.1), averaged over the colour channels. The white line on the bar is Iso-I's single σx².* "
                     f"({md_escape(res.label)})"))
    return True


def show_curves(res) -> bool:
    """Every model's training loss curve with the plateau rule's windows and verdict (one panel per model seed)."""
    df = frame(res)
    if df.empty:
        return False
    labels = {k: v["label"] for k, v in ((res.metrics or {}).get("rows") or {}).items()}
    items = [(f"{labels.get(r.row, r.row)}, seed {r.seed}", {"curve": r.curve, "plateau": r.plateau})
             for r in df.itertuples()]  # frame's order, each curve judged under this revision's rule
    return draw_curves(res, [("CelebA 64×64", items)],
                       "The loss is the negative ELBO per face in nats; the MLE rows' includes their log σx² term, "
                       "so its level is not comparable with σx² = 1's, only its shape.")
