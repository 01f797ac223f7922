"""A local Sphinx extension of the book: every page lists each inline ``<script>`` once, and every figure a
notebook shows opens at full size and says in words what it shows.

Sphinx 7.4 adds a script registered after the builder started (``app.add_js_file(None, body=...)``, as
sphinx-thebe and sphinx-togglebutton do) to the builder with ``filename=None``, and then again, when it
prepares writing, from its registry with ``filename=''``. The two compare unequal, so the page gets the
script twice; sphinx-thebe's ``const THEBE_JS_URL = ...`` then throws "Identifier 'THEBE_JS_URL' has already
been declared" on every page. This handler drops the second copy of any script (same file, or same inline
body) from the page's script list.

Figures: a notebook's image output reaches Sphinx as an image node with no size and, for alt text, its file
name. :func:`figures_for_reading` gives each one (1) a width: the page's width (100 %) when the PNG is wider
than ``PAGE_PX``, else its own width in pixels, so Sphinx's ``html_scaled_image_link`` wraps it in a link to the
full-size PNG; and (2) alt text: the caption the cell displays after it (``show_figure`` and the page-time
figures print one). A figure with no caption keeps no alt text, which the site check reports.
"""
from __future__ import annotations

from pathlib import Path

import imagesize
from docutils import nodes

#: about the width of the page's text column at a 1280-px window (px; measured: ≈ 690)
PAGE_PX = 690
#: alt text is the caption, cut at this many characters
ALT_CHARS = 300


def _key(js):
    name = getattr(js, "filename", js) or ""
    attrs = getattr(js, "attributes", {}) or {}
    return (name, tuple(sorted((str(k), str(v)) for k, v in attrs.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree):
    files = context.get("script_files")
    if not isinstance(files, list):
        return
    seen, keep = set(), []
    for js in files:
        k = _key(js)
        if k in seen:
            continue
        seen.add(k)
        keep.append(js)
    files[:] = keep


def _caption_after(image) -> str:
    """The text of the first paragraph after ``image`` in its notebook cell ("" when none)."""
    cell = image.parent
    while cell is not None and "cell" not in cell.get("classes", []):
        cell = cell.parent
    if cell is None:
        return ""
    seen = False
    for node in cell.findall():
        if node is image:
            seen = True
        elif seen and isinstance(node, nodes.paragraph) and node.astext().strip():
            return " ".join(node.astext().split())
    return ""


def figures_for_reading(app, doctree, docname):
    for image in list(doctree.findall(nodes.image)):
        if not any(k in image for k in ("width", "height", "scale")):
            src = Path(app.srcdir) / image.get("candidates", {}).get("*", image["uri"])
            try:
                w, _ = imagesize.get(str(src))
            except (OSError, ValueError):
                w = -1
            image["width"] = "100%" if w <= 0 or w > PAGE_PX else f"{w}px"
        if not image.get("alt"):
            caption = _caption_after(image)
            if caption:
                image["alt"] = caption[:ALT_CHARS]


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.connect("doctree-resolved", figures_for_reading)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
