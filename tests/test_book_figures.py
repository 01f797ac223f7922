"""The book's Sphinx extension gives every notebook figure a width (so Sphinx links it to its full-size PNG) and
its caption as alt text; a figure without a caption keeps none (the site check then fails the page)."""
import sys
from pathlib import Path
from types import SimpleNamespace

from docutils import nodes
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book" / "_ext"))

from vaebook_sphinx import PAGE_PX, figures_for_reading  # noqa: E402


def _cell(*children):
    cell = nodes.container(classes=["cell"])
    out = nodes.container(classes=["cell_output"])
    out.extend(children)
    cell.append(out)
    return cell


def test_figures_get_a_width_and_their_caption_as_alt(tmp_path):
    Image.new("RGB", (1600, 400)).save(tmp_path / "wide.png")
    Image.new("RGB", (300, 200)).save(tmp_path / "small.png")
    wide, small, bare = (nodes.image(uri=u, candidates={"*": u}) for u in ("wide.png", "small.png", "small.png"))
    doc = nodes.section()
    doc += _cell(wide, nodes.paragraph(text="Figure D.4 (ours):  t-SNE of the codes."))
    doc += _cell(small, nodes.paragraph(text=""), nodes.paragraph(text="Figure 2: time per epoch."))
    doc += _cell(bare)
    doc += nodes.paragraph(text="Prose after the cell is not a caption.")
    figures_for_reading(SimpleNamespace(srcdir=str(tmp_path)), doc, "page")
    assert wide["width"] == "100%" and wide["alt"] == "Figure D.4 (ours): t-SNE of the codes."
    assert small["width"] == "300px" and small["alt"] == "Figure 2: time per epoch."
    assert "alt" not in bare and bare["width"] == "300px"
    assert 300 < PAGE_PX < 1600
