"""The book as a reader gets it: the status page's claims, tables that fit, the parameter cells and machine paths
kept out of a page, and the headless-Chromium site check (on tiny hand-written pages; skipped without Chromium)."""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vaebook.lab import site_check
from vaebook.lab.display import cell_text, table_html
from vaebook.lab.results import Results
from vaebook.lab.status import (CLAIM_STATUSES, claim, claim_counts, claims_display, claims_table, flags_status,
                                status_display, status_table, tally_status, theory_counts)

REPO = Path(__file__).resolve().parents[1]
SECTION6 = ("generation", "interpolation", "celebahq", "nll")


# -- claims -----------------------------------------------------------------------------------------
def test_claim_status_rules():
    assert tally_status(12, 12, 16) == "holds" and tally_status(13, 12, 16) == "holds"
    assert tally_status(6, 12, 16) == "partly" and tally_status(5, 12, 16) == "not shown at this scale"
    assert tally_status(0, 0, 0) == "not run"
    assert flags_status([True, True]) == "holds" and flags_status([True, False, None]) == "partly"
    assert flags_status([False]) == "not shown at this scale" and flags_status([None]) == "not run"
    with pytest.raises(ValueError, match="maybe"):
        claim("x", "1", "maybe", "e")


def _experiments():
    from vaebook.lab.page import experiments

    return experiments()


def _measured(t: pd.DataFrame, metrics: dict, sd: float = 1e-3, n: int = 50) -> dict:
    """``metrics`` plus what the #26 rules read: paired bootstrap replicates of every (row, metric) of ``t`` tight
    around its value, per-image MSEs, and for Table 7 the valid bound with a small standard error — the paper's
    numbers as if measured precisely."""
    rng = np.random.default_rng(0)
    out = dict(metrics)
    boot, per, vals = {}, {}, {}
    for (d, row), g in t.dropna(subset=["ours"]).groupby(["dataset", "row"]):
        v = dict(zip(g["metric"], g["ours"]))
        boot.setdefault(d, {"replicates": {}, "per_image": {}})
        boot[d]["replicates"][row] = {m: (x + rng.normal(0, sd, n)).tolist() for m, x in v.items()}
        if "mse" in v:
            boot[d]["per_image"][row] = {"mse": (v["mse"] + rng.normal(0, sd, n)).tolist()}
        if "nll" in v:
            vals.setdefault(d, {})[row] = {"nll": v["nll"], "nll_stderr": sd, "nll_valid": v["nll"],
                                           "nll_valid_stderr": sd}
    out["bootstrap"] = boot
    if vals:
        out["values"] = vals
    return out


def _paper_as_ours(exp, table: str, **metrics) -> Results:
    """Results whose numbers are the paper's own, measured precisely (tight replicates and standard errors): every
    claim must read as the paper's numbers do."""
    pf = exp.paper_frame()
    t = pf.assign(ours=pf["paper"], verdict="match", reason="")
    prov = {"preset": "medium", "parameters": exp.resolve({"preset": "medium"})}
    return Results("medium", Path("."), prov, _measured(t, metrics), {table: t}, {})


@pytest.mark.parametrize("name, table", [("generation", "table4"), ("interpolation", "table5"),
                                         ("celebahq", "table6"), ("nll", "table7")])
def test_section6_claims(name, table):
    exp = _experiments()[name]
    none = exp.claims(None)
    assert none and all(c["status"] == "not run" for c in none)
    metrics = {"settings": {"mnist": {"fid_samples": 1000, "n_pairs": 1000, "iwae_k": 100},
                            "celebahq128": {"fid_samples": 300, "generated": False}}}
    if name == "celebahq":
        metrics["ex_post_helps"] = exp.paper_ex_post_helps()
    res = _paper_as_ours(exp, table, **metrics)
    if name == "nll":  # Table 7's valid-bound column (ours only): the paper's numbers read as valid bounds too
        t = res.tables[table]
        res.tables[table] = pd.concat([t, t.assign(metric="nll_valid", paper=float("nan"), verdict="ours only")])
    got = exp.claims(res)
    assert [c["claim"] for c in got] == [c["claim"] for c in none]
    for c in got:
        assert set(c) >= {"claim", "section", "status", "evidence", "scale"} and c["status"] in CLAIM_STATUSES
        assert c["status"] == "holds", c  # the paper's numbers show the paper's claims
        assert "of the steps" in c["scale"] and "1 seed" in c["scale"] and "n/a" not in c["evidence"]


def test_generation_claims_read_our_numbers():
    exp = _experiments()["generation"]
    res = _paper_as_ours(exp, "table4")
    t = res.tables["table4"]
    worse = t["row"].str.startswith("mle-") & t["metric"].isin(["fid_prior", "fid_gmm10"])
    t.loc[worse, "ours"] = 1e4  # every MLE FID far above the σx² = 1 VAE's
    res.metrics.update(_measured(t, {}))
    c = exp.claims(res)[0]
    assert c["status"] == "not shown at this scale" and "0 of 16" in c["evidence"] and "paper 12 of 16" in c["evidence"]


def test_claims_table_without_results_lists_every_claim_as_not_run(tmp_path):
    t = claims_table(tmp_path)
    assert list(t.columns) == ["section", "claim", "status", "evidence", "scale", "page"]
    assert (t["status"] == "not run").all()
    assert set(SECTION6) <= set(t["page"]) and "theory" not in set(t["page"])
    assert claim_counts(t)["not run"] == len(t)
    shown = claims_display(t, {"generation": "Generation"})
    assert list(shown.columns) == ["claim", "status", "evidence"]
    assert '<a href="../notebooks/generation.html">Generation</a>' in " ".join(shown["claim"])
    st = status_table(tmp_path)
    assert (st["preset"] == "none").all() and len(status_display(st)) == len(st)


def test_theory_counts_by_kind():
    tab = pd.DataFrame({"kind": ["confirmed", "confirmed", "corrected", "counterexample"],
                        "verdict": ["match"] * 4})
    res = Results("medium", Path("."), {"preset": "medium"}, {}, {"table_claims": tab}, {})
    assert theory_counts(res) == {"confirmed": 2, "corrected": 1, "extension": 0, "counterexample": 1}
    res.tables["table_claims"] = tab.drop(columns="kind")
    assert theory_counts(res)["match"] == 4 and theory_counts(None) is None


# -- tables ---------------------------------------------------------------------------------------------
def test_table_html_never_prints_minus_zero_and_folds_long_reasons():
    df = pd.DataFrame({"log10_sigma_x2": [-0.0, -0.1], "s": ["-0", "x"], "verdict": ["trend holds", math.nan],
                       "reason": ["short", "word " * 40]})
    h = table_html(df)
    assert ">-0<" not in h and ">0<" in h
    assert 'class="vb-badge vb-trend-holds"' in h and 'class="vb-badge vb-not-run">not run<' in h
    assert h.count("<details") == 1 and "log10_<wbr>sigma_<wbr>x2" in h
    assert cell_text(-0.0) == "0" and cell_text(None) == "–" and cell_text(3) == "3"
    # the long reason is not a column: it sits on a full-width line under its row, after the verdict
    assert "vb-col-reason" not in h and 'colspan="3"' in h and h.index("vb-col-verdict") < h.index("reason:")


def test_wide_table_of_numbers_cut_into_blocks():
    import numpy as np

    df = pd.DataFrame(np.arange(38.0).reshape(2, 19), columns=["key"] + [f"det_{i}" for i in range(18)])
    h = table_html(df, max_columns=11)
    assert h.count("<table") == 2 and h.count(">key<") == 2 and ">det_<wbr>17<" in h
    with_verdict = df.assign(verdict="match")
    assert table_html(with_verdict, max_columns=11).count("<table") == 1  # a verdict table stays whole


# -- the book build -------------------------------------------------------------------------------------
def test_build_book_strips_parameters_and_machine_paths(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    from vaebook.lab.build_book import hide_parameter_cells

    nb = new_notebook(cells=[
        new_code_cell('preset = "smoke"', metadata={"tags": ["parameters"]}),
        new_code_cell('results_dir = "/tmp/abc/results"', metadata={"tags": ["injected-parameters"]}),
        new_code_cell("show(res)", metadata={"tags": ["hide-input"]},
                      outputs=[new_output("stream", name="stdout", text="training … /tmp/abc/models\n")]),
        new_code_cell("show(res)", metadata={"tags": ["hide-input"]},
                      outputs=[new_output("display_data", data={"text/plain": "x"})]),
    ], metadata={"papermill": {"input_path": "/work/x.ipynb", "output_path": "/tmp/y.ipynb",
                               "parameters": {"results_dir": "/tmp/abc"}, "duration": 1.0}})
    p = tmp_path / "a.ipynb"
    nbformat.write(nb, p)
    hide_parameter_cells(p)
    text = p.read_text()
    assert "/tmp/" not in text and "/work/" not in text
    out = nbformat.read(p, as_version=4)
    assert len(out.cells) == 3 and "remove-cell" in out.cells[0].metadata.tags
    assert "remove-cell" in out.cells[1].metadata.tags  # nothing to show: no empty "show code" toggle
    assert "remove-cell" not in out.cells[2].metadata.tags and out.metadata.papermill["duration"] == 1.0


def test_book_config_serves_maths_and_css_from_the_site():
    import yaml

    cfg = yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]
    assert "://" not in cfg["config"]["mathjax_path"]
    assert cfg["config"]["html_css_files"] == ["vaebook.css"]
    for folder in cfg["config"]["html_static_path"]:
        assert (REPO / folder / "vaebook.css").is_file()
    for name, folder in cfg["local_extensions"].items():
        assert (REPO / folder / f"{name}.py").is_file()


def test_mathjax_bundled_or_the_cdn_named(tmp_path, monkeypatch):
    import shutil as _shutil

    import yaml

    from vaebook.lab import build_book

    (tmp_path / "_config.yml").write_text((REPO / "_config.yml").read_text())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / build_book.MATHJAX_FILE).write_text("/* mathjax */")
    monkeypatch.setattr(build_book, "MATHJAX_CACHE", cache)
    monkeypatch.setattr(build_book, "fetch_mathjax", lambda log=print: cache)
    assert build_book.bundle_mathjax(tmp_path, log=lambda *_: None)
    cfg = yaml.safe_load((tmp_path / "_config.yml").read_text())["sphinx"]["config"]
    assert (tmp_path / cfg["html_static_path"][0] / cfg["mathjax_path"]).read_text() == "/* mathjax */"
    # no npm: the build says so and names the CDN instead of a file it does not have
    monkeypatch.undo()
    monkeypatch.setattr(_shutil, "which", lambda name: None)
    msgs = []
    assert build_book.fetch_mathjax(tmp_path / "empty", log=msgs.append) is None and "npm" in msgs[0]
    monkeypatch.setattr(build_book, "fetch_mathjax", lambda log=print: None)
    (tmp_path / "_config.yml").write_text((REPO / "_config.yml").read_text())
    assert not build_book.bundle_mathjax(tmp_path, log=lambda *_: None)
    cfg = yaml.safe_load((tmp_path / "_config.yml").read_text())["sphinx"]["config"]
    assert cfg["mathjax_path"] == build_book.MATHJAX_CDN


def test_inline_scripts_once_per_page():
    import sys

    sys.path.insert(0, str(REPO / "book" / "_ext"))
    try:
        from vaebook_sphinx import dedupe_scripts
    finally:
        sys.path.pop(0)

    class JS:
        def __init__(self, filename, **attributes):
            self.filename, self.attributes = filename, attributes

    files = [JS("a.js"), JS(None, body="const X = 1"), JS("", body="const X = 1"), JS("a.js"), JS("", body="y")]
    ctx = {"script_files": files}
    dedupe_scripts(None, "p", "page.html", ctx, None)
    assert [(j.filename, j.attributes.get("body")) for j in ctx["script_files"]] == [
        ("a.js", None), (None, "const X = 1"), ("", "y")]


# -- the site check -------------------------------------------------------------------------------------
def test_text_checks():
    assert site_check.machine_paths('src="/work/main/x.png" and /tmp/abc and ~/home/x') == ["/tmp/", "/work/"]
    assert site_check.machine_paths("results/medium/theory and http://example.org/home/x") == []
    assert site_check.na_templates("Run: n/a. FIDs from n/a samples") and not site_check.na_templates("a/n/a/b")


def test_links_checked_against_the_files(tmp_path):
    (tmp_path / "a.html").write_text('<p id="here">a</p>')
    page = tmp_path / "index.html"
    page.write_text("x")
    bad = site_check.check_links(page, ["a.html", "a.html#here", "a.html#gone", "b.html", "#top", "https://x.org/y",
                                        "mailto:a@b"], ["top"], {})
    assert bad == ["a.html#gone → no anchor #gone in a.html", "b.html → no such file"]


CHROMIUM = site_check.find_browser()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (make site-check installs it)")

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>t</title>{head}</head>
<body><main>{body}</main></body></html>"""

def _png() -> bytes:
    """A 1×1 PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b""))



def _site(tmp_path: Path, pages: dict) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "dot.png").write_bytes(_png())
    for name, (body, head) in pages.items():
        (site / name).write_text(PAGE.format(body=body, head=head))
    return site


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium installed")
    with site_check.Browser(CHROMIUM) as b:
        yield b


@needs_chromium
def test_clean_page_passes(tmp_path, browser):
    table = ("<div style='max-width:600px'><table><thead><tr><th>metric</th><th>verdict</th></tr></thead>"
             "<tbody><tr><td>mse</td><td>match</td></tr></tbody></table></div>")
    site = _site(tmp_path, {"index.html": (f'<p id="a">Hello</p><a href="b.html#b">b</a><img src="dot.png" alt="a dot">{table}',
                                           ""),
                            "b.html": ('<p id="b">a table may say n-a:</p><table><tr><td>n/a</td></tr></table>', "")})
    for page in ("index.html", "b.html"):
        assert site_check.check_page(browser, site / page, site) == []


@needs_chromium
def test_every_defect_is_reported(tmp_path, browser):
    wide = ("<div style='width:500px;overflow-x:auto'><table><thead><tr><th>reason</th><th>verdict</th></tr></thead>"
            "<tbody><tr><td style='min-width:900px'>long</td><td>differs</td></tr></tbody></table></div>")
    boxed = ("<div style='max-height:60px;overflow-y:auto'><table>" + "<tr><td>row</td></tr>" * 30
             + "</table></div>")
    body = (f'<a href="missing.html">x</a><a href="#nowhere">y</a><img src="gone.png"><p>Run: n/a samples.</p>'
            f"<p>cache at /tmp/abc/results</p>{wide}{boxed}")
    site = _site(tmp_path, {"index.html": (body, "<script>const A = 1;</script><script>const A = 2;</script>"
                                                 "<script src='nothere.js'></script>")})
    got = site_check.check_page(browser, site / "index.html", site)
    kinds = {p.kind for p in got}
    assert {"broken link", "broken image", "JavaScript error", "n/a template", "machine path", "clipped table",
            "broken resource"} <= kinds, got
    text = "\n".join(str(p) for p in got)
    assert "missing.html → no such file" in text and "#nowhere" in text and "gone.png" in text
    assert "already been declared" in text and "verdict column is cut off" in text and "scroll box" in text


def _wide_png(path: Path, width: int = 1600, height: int = 40) -> None:
    from PIL import Image

    Image.new("RGB", (width, height), (200, 30, 30)).save(path)


@needs_chromium
def test_figures_shrunk_without_a_link_or_without_alt_text_fail(tmp_path, browser):
    small = '<img src="wide.png" alt="a red bar" style="width:300px">'  # 300 of 1,600 px, no way to open it
    bare = '<img src="dot.png">'
    named = '<img src="dot.png" alt="dot.png">'  # a notebook output's default alt: its file name
    site = _site(tmp_path, {"small.html": (small, ""), "bare.html": (bare, ""), "named.html": (named, "")})
    _wide_png(site / "wide.png")
    got = {page: [(p.kind, p.detail) for p in site_check.check_page(browser, site / page, site)]
           for page in ("small.html", "bare.html", "named.html")}
    assert got["small.html"] == [("unreadable figure", "wide.png shown 300 px wide of its 1600 px, and not a link "
                                                       "to its full size")], got
    assert got["bare.html"] == [("figure without alt text", "dot.png")]
    assert got["named.html"] == [("figure without alt text", "dot.png")]


@needs_chromium
def test_shrunk_figure_that_opens_full_size_passes(tmp_path, browser):
    linked = '<a href="wide.png"><img src="wide.png" alt="a red bar" style="width:300px"></a>'
    near = '<img src="wide.png" alt="a red bar" style="width:900px">'  # above half its natural width
    site = _site(tmp_path, {"linked.html": (linked, ""), "near.html": (near, "")})
    _wide_png(site / "wide.png")
    for page in ("linked.html", "near.html"):
        assert site_check.check_page(browser, site / page, site) == []


@needs_chromium
def test_main_exit_status(tmp_path, capsys):
    site = _site(tmp_path, {"index.html": ('<a href="nope.html">x</a>', "")})
    assert site_check.main([str(site)]) == 1
    assert "nope.html" in capsys.readouterr().out
    (site / "index.html").write_text(PAGE.format(body="<p>fine</p>", head=""))
    assert site_check.main([str(site)]) == 0
    assert site_check.main([str(tmp_path / "absent")]) == 2


def test_site_check_in_make_test():
    mk = (REPO / "Makefile").read_text()
    assert "site-check:" in mk and "vaebook.lab.site_check" in mk
    recipe = mk.split("test-notebooks:", 1)[1].split("\n\n", 1)[0]
    assert "vaebook.lab.site_check" in recipe, "make test must check the smoke build in a browser"


def test_a_page_shows_its_own_claims_as_the_status_page_does(monkeypatch):
    """`show_claims` on an experiment's page: the same rows as the status page (smoke results → 'not run')."""
    import vaebook.lab.display as display
    from vaebook.lab.status import experiment_claims, show_claims

    exp = _experiments()["interpolation"]
    res = _paper_as_ours(exp, "table5", settings={"mnist": {"n_pairs": 1000}})
    rows = experiment_claims("interpolation", exp, res)
    assert [r["claim"] for r in rows] == list(exp.CLAIMS) and {r["page"] for r in rows} == {"interpolation"}
    assert rows[0]["status"] == "holds" and rows[2]["status"] == "holds"  # the paper's own numbers
    res.smoke = True
    smoke = experiment_claims("interpolation", exp, res)
    assert all(r["status"] == "not run" for r in smoke)
    assert smoke[0]["evidence"].startswith("smoke test, not a result (the check itself reads holds")
    res.smoke = False
    shown = []
    monkeypatch.setattr(display, "show_table", lambda df, caption="", **kw: shown.append((df, caption)))
    show_claims(exp, res)
    (df, caption), = shown
    assert list(df["status"]) == [r["status"] for r in rows] and res.label in caption
    assert all(html.escape(c) in cell for c, cell in zip(exp.CLAIMS, df["claim"]))
