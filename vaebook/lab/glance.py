"""The book at a glance, from the results: one line per part of the book with its claims' statuses
(:func:`glance_html`, for the intro), one sentence of scale (:func:`scale_sentence`), the scale line each results
page opens with (:func:`page_scale_line`), the datasets a claim was checked on (:func:`on_datasets`) and the
re-run table of *How to re-run* (:func:`rerun_table`). Every word here is computed from the experiments'
``claims(res)`` and the results' provenance; nothing is typed by hand."""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import yaml

from vaebook.lab.display import fmt, md_code, slug
from vaebook.lab.results import fmt_duration
from vaebook.lab.status import (CLAIM_STATUSES, THEORY, claim_counts, datasets_run, experiment_claims,
                                 theory_line)

#: a status as a verb phrase, singular and plural ("1 holds", "2 hold"; "1 is inconclusive", "2 are …")
_VERBS = {"holds": ("holds", "hold"), "partly": ("holds partly", "hold partly")}
#: what a dataset name reads as in prose
DATASET_LABELS = {"mnist": "MNIST", "celeba64": "CelebA 64×64", "celebahq128": "CelebA-HQ 128×128"}
#: evaluation sample sizes a page's parameters may carry, as words (``{}``: the value)
EVAL_WORDS = {"fid_samples": "FID on {} generated images (paper: 10,000)", "iwae_k": "k = {} importance samples",
              "n_test": "{} test images", "n_eval": "metrics on {} training images",
              "n_smooth": "ELS and gaps on {} images", "n_estimate": "estimates on {} training images"}


def count_phrase(n: int, status: str) -> str:
    """``n`` claims with ``status`` as words, singular or plural: "1 holds", "3 are not shown at this scale"."""
    one, many = _VERBS.get(status, (f"is {status}", f"are {status}"))
    return f"{n} {one if n == 1 else many}"


def counts_sentence(counts: dict) -> str:
    """Claim counts as one clause, strongest status first: "4 hold, 1 holds partly and 2 are not run"."""
    parts = [count_phrase(counts[k], k) for k in CLAIM_STATUSES if counts.get(k)]
    if not parts:
        return "no claims"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def toc_groups(toc: Optional[Path] = None) -> list:
    """``(caption, [page names])`` per part of ``_toc.yml`` that holds notebooks, in book order."""
    from vaebook.lab.run_all import REPO

    data = yaml.safe_load(Path(toc or REPO / "_toc.yml").read_text())
    out = []
    for part in data.get("parts") or []:
        pages = [Path(c["file"]).name for c in part.get("chapters") or [] if str(c.get("file", "")).startswith(
            "notebooks/")]
        if pages:
            out.append((str(part.get("caption", "")), pages))
    return out


def glance_rows(claims: pd.DataFrame, groups: Sequence[tuple]) -> list:
    """Per part of the book with claims: ``(caption, claims in it, counts per status)``."""
    out = []
    for caption, pages in groups:
        sub = claims[claims["page"].isin(pages)] if len(claims) else claims
        if len(sub):
            out.append((caption, len(sub), claim_counts(sub)))
    return out


def _badges(counts: dict) -> str:
    return " ".join(f'<span class="vb-badge vb-{slug(k)}">{html.escape(count_phrase(counts[k], k))}</span>'
                    for k in CLAIM_STATUSES if counts.get(k))


def glance_html(claims: pd.DataFrame, results_dir, groups: Optional[Sequence[tuple]] = None) -> str:
    """The intro's first screen: one line per part of the book (its claims and their statuses as badges), the theory
    line, and the scale sentence; links go to the status page."""
    groups = groups if groups is not None else toc_groups()
    lines = [f"<li><strong>{html.escape(cap)}</strong> ({n} claim{'' if n == 1 else 's'}): {_badges(c)}</li>"
             for cap, n, c in glance_rows(claims, groups)]
    if any(THEORY in pages for _, pages in groups):
        lines.append(f"<li><strong>Theory</strong>: {html.escape(theory_line(results_dir))}</li>")
    return (f'<ul class="vb-glance">{"".join(lines)}</ul>'
            f'<p class="vb-glance-scale"><strong>Scale.</strong> {html.escape(scale_sentence(results_dir))}</p>')


# -- scale ----------------------------------------------------------------------------------------
_STEP_PCT = re.compile(r"steps? \((\d+(?:\.\d+)?) ?%|(\d+(?:\.\d+)?) ?% of the steps")
_SEEDS = re.compile(r"(\d+) seeds")


def device_words(prov: dict) -> str:
    """The device of a run as words: "a 2-thread CPU", "a CUDA GPU (NVIDIA H100)"."""
    dev = (prov or {}).get("device") or {}
    if str(dev.get("device", "cpu")).startswith("cuda"):
        return f"a CUDA GPU ({dev.get('name', 'GPU')})"
    n = dev.get("threads")
    return f"a {n}-thread CPU" if n else "a CPU"


def _pct_range(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{fmt(lo, '.2g')} %" if lo == hi else f"{fmt(lo, '.2g')}–{fmt(hi, '.2g')} %"


def _evals(params: dict) -> list:
    out = []
    for k, words in EVAL_WORDS.items():
        v = params.get(k)
        vals = sorted(set(v.values())) if isinstance(v, dict) else ([v] if v is not None else [])
        vals = [x for x in vals if isinstance(x, (int, float))]
        if vals:
            out.append(words.format(" or ".join(fmt(x, ",d") for x in vals)))
    return out


def book_results(results_dir) -> list:
    """``(name, experiment, results)`` of every page with real (not smoke) results, theory apart, in book order."""
    from vaebook.lab.status import _book_experiments

    out = []
    for name, exp in _book_experiments():
        res = exp.find(results_dir) if name != THEORY else None
        if res is not None and not res.is_smoke:
            out.append((name, exp, res))
    return out


def scale_sentence(results_dir) -> str:
    """One sentence of the book's scale from its results: device(s) and preset(s), the fraction of the paper's
    training steps, the seeds, the FID sample sizes and the datasets."""
    found = book_results(results_dir)
    if not found:
        return "No results yet: every claim is not run."
    devices = sorted({device_words(r.provenance) for _, _, r in found})
    presets = sorted({r.preset for _, _, r in found})
    scales = [str(c["scale"]) for n, e, r in found for c in experiment_claims(n, e, r)]
    steps = [float(a or b) for s in scales for a, b in _STEP_PCT.findall(s)]
    seeds = max([int(x) for s in scales for x in _SEEDS.findall(s)] or [1])
    fids = sorted({v for _, _, r in found for v in _flat(((r.provenance or {}).get("parameters") or {})
                                                         .get("fid_samples"))})
    sets = sorted({d for n, e, r in found for d in datasets_run(e, r)})
    parts = [f"every result shown is the {', '.join(md_code(p) for p in presets)} preset, run on "
             f"{' or '.join(devices)}"]
    if steps:
        parts.append(f"at {_pct_range(steps)} of the paper's training steps")
    parts.append("one training seed per model" + (f" ({seeds} on a few rows)" if seeds > 1 else ""))
    if fids:
        parts.append(f"FIDs from {' or '.join(fmt(v, ',d') for v in fids)} generated images (the paper: 10,000)")
    if sets:
        parts.append(("on " + " and ".join(DATASET_LABELS.get(d, d) for d in sets))
                     + (" only" if len(sets) == 1 else ""))
    text = ", ".join(parts) + "."
    return (text[0].upper() + text[1:]).replace("`", "")


def _flat(v) -> list:
    if isinstance(v, dict):
        return [x for x in v.values() if isinstance(x, (int, float))]
    return [v] if isinstance(v, (int, float)) else []


def page_scale_line(exp, res) -> str:
    """Markdown: the scale line a results page opens with: preset and device, datasets, the claims' scale (fraction
    of the paper's steps, images, seeds; per section when they differ) and the evaluation sample sizes; empty
    without results."""
    if res is None:
        return ""
    rows = [c for c in experiment_claims(exp.name, exp, res) if str(c["scale"]).strip() not in ("", "–", "-", "n/a")]
    scales: dict = {}
    for c in rows:  # the claim's own scale, without a label or another page's note appended to it
        key = str(c["scale"]).split(" · ")[0].split("; collapse page")[0]
        if key.strip() not in ("", "n/a", "–", "-"):  # a section whose claims have no scale (not run) says nothing
            scales.setdefault(key, str(c["section"]))
    if len(scales) > 1:
        body = "; ".join(f"§ {sec}: {sc}" for sc, sec in scales.items())
    else:
        body = next(iter(scales), "") or exp.scale(res)
    params = (res.provenance or {}).get("parameters") or {}
    sets = ", ".join(DATASET_LABELS.get(d, d) for d in datasets_run(exp, res))
    bits = [f"preset `{res.preset}` on {device_words(res.provenance)}"]
    bits += [sets] if sets and sets.split(",")[0] not in body else []
    bits += [body] if body else []
    bits += [e for e in _evals(params)  # not a size the claims' scale already gives
             if not re.search(rf"(?<![\d,]){re.escape(re.search(r'[0-9][0-9,]*', e).group(0))}(?![\d,])", body)]
    return "**Scale.** " + " · ".join(bits) + "."


# -- How to re-run ----------------------------------------------------------------------------------
def measured(res) -> tuple:
    """``(seconds, words)``: the time the committed provenance records for a run: its last sitting, plus the recorded
    training time of the models it reused from earlier runs; "at least" where that training is not recorded."""
    prov = res.provenance or {}
    wall = float(prov.get("wall_s") or 0.0)
    tr = prov.get("training")
    if not isinstance(tr, dict):
        return wall, f"at least {fmt_duration(wall)} (its last sitting; training in earlier sittings not recorded)"
    reused = float(tr.get("train_wall_s") or 0.0) if tr.get("reused") else 0.0
    return wall + reused, fmt_duration(wall) + (f" + {fmt_duration(reused)} training the models it reused"
                                                if reused else "")


def rerun_table(results_dir) -> pd.DataFrame:
    """One row per page with results: the command that reproduces its numbers, the time its provenance records,
    and the GPU estimate of the experiment's largest preset (``full_cost``)."""
    rows = []
    for name, exp, res in book_results(results_dir):
        _, words = measured(res)
        rows.append({"page": exp.title or name,
                     "reproduces the numbers shown": (f"python -m vaebook.lab run {name} --preset {res.preset} "
                                                      f"--device {((res.provenance or {}).get('device') or {}).get('device', 'cpu')}"),
                     "measured (provenance)": f"{words} on {device_words(res.provenance)}",
                     "on a GPU (estimate)": (getattr(exp, "full_cost", "") or "–").replace("`", "")})
    return pd.DataFrame(rows, columns=["page", "reproduces the numbers shown", "measured (provenance)",
                                       "on a GPU (estimate)"])


def total_measured(results_dir) -> str:
    """The time the provenance of every page's results records, together (models shared by pages counted once), as
    words: "at least …" when some page does not record the training of its earlier sittings."""
    found = book_results(results_dir)
    wall = sum(float((r.provenance or {}).get("wall_s") or 0.0) for _, _, r in found)
    per_model: dict = {}
    for _, _, r in found:
        tr = (r.provenance or {}).get("training") or {}
        if tr.get("reused"):
            per_model.update(tr.get("per_model") or {})
    total = fmt_duration(wall + sum(float(v) for v in per_model.values()))
    gaps = [n for n, _, r in found if not isinstance((r.provenance or {}).get("training"), dict)]
    return f"at least {total}" if gaps else total


__all__ = ["count_phrase", "counts_sentence", "toc_groups", "glance_rows",
           "glance_html", "device_words", "scale_sentence", "page_scale_line", "measured", "rerun_table",
           "total_measured", "book_results", "DATASET_LABELS", "EVAL_WORDS"]
