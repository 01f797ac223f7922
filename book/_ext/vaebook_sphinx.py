"""A local Sphinx extension of the book: every page lists each inline ``<script>`` once.

Sphinx 7.4 adds a script registered after the builder started (``app.add_js_file(None, body=...)``, as
sphinx-thebe and sphinx-togglebutton do) to the builder with ``filename=None``, and then again, when it
prepares writing, from its registry with ``filename=''``. The two compare unequal, so the page gets the
script twice; sphinx-thebe's ``const THEBE_JS_URL = ...`` then throws "Identifier 'THEBE_JS_URL' has already
been declared" on every page. This handler drops the second copy of any script (same file, or same inline
body) from the page's script list.
"""
from __future__ import annotations


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


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
