"""Open every page of a built site in headless Chromium and fail on what a reader would trip over.

    python -m vaebook.lab.site_check _build/html        # or: make site-check SITE=_build/html

Each ``*.html`` page is loaded from disk (``file://``) in one headless Chromium, driven through the Chrome
DevTools protocol over ``--remote-debugging-pipe`` (no websocket client needed; :mod:`vaebook.lab.site_browser`),
at a desktop window of 1280×900. A page fails on:

* **broken link**: an ``<a href>`` to a file of the site that does not exist, or to an anchor (``#id``) that
  the target page does not have;
* **broken image** or **broken resource**: an ``<img>`` that did not load, a script/style/font the page asked
  for that failed (a missing file, or a remote one: the site must work offline);
* **JavaScript error**: an uncaught exception or a ``console.error``;
* **clipped table**: a table whose verdict (or claim status) column lies outside the window or is cut off by
  a scrolling box, any table wider than what its box shows (columns scrolled away), or a table held in a box
  shorter than itself (a scroll box);
* **unreadable figure**: an ``<img>`` shown at less than half its natural width (``SHRUNK``) that is not a link
  (to its full size): its text is then smaller than the page's;
* **figure without alt text**: an ``<img>`` whose ``alt`` is missing, empty, or only a file name;
* **"n/a" template**: "n/a" in the page's prose (outside tables and code): a sentence that was written for
  numbers this build does not have;
* **machine path**: ``/work/``, ``/tmp/``, ``/root/``, ``/home/`` or ``/Users/`` anywhere in the page's HTML,
  or in the notebook copies the site offers for download (``_sources``).

Chromium: ``$CHROMIUM``, else the first of ``chromium-headless-shell``, ``chromium``, ``google-chrome`` found on
``PATH`` (Debian: ``apt-get install chromium-headless-shell``). Exit status 0 when every page passes, 1 when any
fails (the problems are printed, one a line), 2 when the site or the browser is missing.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import unquote, urlsplit

from vaebook.lab.site_browser import BROWSERS, PAGE_PROBE, Browser, SiteCheckError, find_browser
from vaebook.lab.site_figures import image_problems

MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|root|home|Users)/[\w.\-]")
NA_TEMPLATE = re.compile(r"(?<![\w/])n/a(?![\w/])", re.IGNORECASE)
BADGE_HEADERS = ("verdict", "status")


@dataclass
class Problem:
    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


# -- the checks ------------------------------------------------------------------------------------
def _file_of(url: str) -> Optional[Path]:
    parts = urlsplit(url)
    if parts.scheme != "file":
        return None
    return Path(unquote(parts.path))


def _ids_of(path: Path, cache: dict) -> set:
    if path not in cache:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            text = ""
        cache[path] = set(re.findall(r'\sid="([^"]+)"', text)) | set(re.findall(r"\sname=\"([^\"]+)\"", text))
    return cache[path]


def check_links(page: Path, links: Sequence, own_ids: Sequence[str], ids_cache: dict) -> list:
    """Links to files of the site that do not exist, or to anchors their page lacks. ``links``: ``(href as
    written, href as the browser resolved it)`` pairs, or plain hrefs (resolved against ``page``)."""
    out = []
    for link in dict.fromkeys(tuple(x) if isinstance(x, (list, tuple)) else (x, "") for x in links):
        href, resolved = link
        if not href or href.startswith(("mailto:", "javascript:", "data:", "tel:")):
            continue
        parts = urlsplit(resolved or href)
        if parts.scheme in ("http", "https"):
            continue  # an external link: not followed (the site must not need it to render)
        if parts.scheme and parts.scheme != "file":
            continue
        if parts.scheme == "file":
            target = Path(unquote(parts.path))
        else:
            target = page if not parts.path else page.parent / unquote(parts.path)
        target = Path(os.path.normpath(target))
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            out.append(f"{href} → no such file")
            continue
        frag = unquote(parts.fragment)
        if frag and target.suffix == ".html":
            ids = set(own_ids) if target == Path(os.path.normpath(page.resolve())) else _ids_of(target, ids_cache)
            if frag not in ids:
                out.append(f"{href} → no anchor #{frag} in {target.name}")
    return out


def events_problems(events: list, site: Path) -> list:
    """(kind, detail) of the JavaScript errors and failed resources among a tab's DevTools events."""
    urls, out = {}, []
    for e in events:
        m, p = e["method"], e.get("params", {})
        if m == "Network.requestWillBeSent":
            urls[p.get("requestId")] = p.get("request", {}).get("url", "")
        elif m == "Network.responseReceived":
            status = p.get("response", {}).get("status", 200)
            url = p.get("response", {}).get("url", "")
            if isinstance(status, int) and status >= 400:
                out.append(("broken resource", f"{_short(url, site)} → HTTP {status}"))
        elif m == "Network.loadingFailed" and not p.get("canceled"):
            url = urls.get(p.get("requestId"), "?")
            out.append(("broken resource", f"{_short(url, site)} → {p.get('errorText', 'failed')}"))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = (d.get("exception") or {}).get("description") or d.get("text", "exception")
            where = _short(d.get("url", ""), site)
            out.append(("JavaScript error", f"{text.splitlines()[0]}" + (f" ({where}:{d.get('lineNumber')})"
                                                                           if where else "")))
        elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.append(("JavaScript error", f"console.error: {args[:200]}"))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            if entry.get("source") == "network":
                continue  # reported by Network.loadingFailed
            out.append(("JavaScript error", f"{entry.get('text', '')[:200]} ({_short(entry.get('url', ''), site)})"))
    return list(dict.fromkeys(out))


def _short(url: str, site: Path) -> str:
    f = _file_of(url) if url else None
    if f is not None:
        try:
            return f.resolve().relative_to(site.resolve()).as_posix()
        except ValueError:
            return f.name
    return url


def machine_paths(text: str) -> list:
    return sorted({m.group(0)[:-1] for m in MACHINE_PATH.finditer(text)})


def na_templates(prose: str) -> list:
    out = []
    for m in NA_TEMPLATE.finditer(prose or ""):
        out.append("…" + prose[max(0, m.start() - 60):m.end() + 30].strip() + "…")
    return out


def pages_of(site: Path) -> list:
    skip = {"genindex.html", "search.html", "py-modindex.html"}
    return sorted(p for p in site.rglob("*.html") if p.name not in skip and "_static" not in p.parts
                  and "_sources" not in p.parts)


def check_page(browser: Browser, page: Path, site: Path, ids_cache: Optional[dict] = None) -> list:
    """The problems of one page."""
    ids_cache = {} if ids_cache is None else ids_cache
    rel = page.relative_to(site).as_posix()
    probe, events, loaded = browser.open(page.resolve().as_uri())
    out = [] if loaded else [Problem(rel, "not loaded", "the load event did not fire within the time limit")]
    for kind, detail in events_problems(events, site):
        out.append(Problem(rel, kind, detail))
    for d in check_links(page, probe.get("links", []), probe.get("ids", []), ids_cache):
        out.append(Problem(rel, "broken link", d))
    for img in probe.get("images", []):
        src = img.get("src", "")
        if not img.get("ok") and not img.get("lazy"):
            out.append(Problem(rel, "broken image", src or "(no src)"))
        elif src and not src.startswith(("data:", "http:", "https:")):
            target = page.parent / unquote(urlsplit(src).path)
            if not target.exists():
                out.append(Problem(rel, "broken image", f"{src} → no such file"))
    for kind, detail in image_problems(probe.get("images", [])):
        out.append(Problem(rel, kind, detail))
    for t in probe.get("tables", []):
        cols = ", ".join(c for c in t.get("columns", []) if c)
        for msg in t.get("problems", []):
            out.append(Problem(rel, "clipped table", f"table {t['index'] + 1} ({cols[:80]}): {msg}"))
    for s in na_templates(probe.get("prose", "")):
        out.append(Problem(rel, "n/a template", s))
    for path in machine_paths(page.read_text(errors="replace")):
        out.append(Problem(rel, "machine path", path))
    return out


def check_sources(site: Path) -> list:
    """Machine paths in the downloadable copies of the pages (``_sources``)."""
    out = []
    src = site / "_sources"
    if src.is_dir():
        for f in sorted(src.rglob("*")):
            if f.is_file() and f.suffix in (".ipynb", ".md", ".txt"):
                for path in machine_paths(f.read_text(errors="replace")):
                    out.append(Problem(f.relative_to(site).as_posix(), "machine path", path))
    return out


def check_site(site, browser: Optional[str] = None, only: Optional[str] = None, log=print) -> list:
    """Every problem of the site at ``site`` (the folder holding ``index.html``)."""
    site = Path(site)
    if not site.is_dir():
        raise SiteCheckError(f"no site at {site}: build it first (make book, or make test-notebooks)")
    pages = [p for p in pages_of(site) if not only or re.search(only, p.relative_to(site).as_posix())]
    if not pages:
        raise SiteCheckError(f"no HTML page under {site}")
    binary = find_browser(browser)
    if binary is None:
        raise SiteCheckError("no Chromium found (set $CHROMIUM, or apt-get install chromium-headless-shell)")
    problems: list = []
    ids_cache: dict = {}
    with Browser(binary) as b:
        for page in pages:
            found = check_page(b, page, site, ids_cache)
            log(f"[site-check] {page.relative_to(site).as_posix()}: " + (f"{len(found)} problem(s)" if found else "ok"))
            problems += found
    if not only:
        problems += check_sources(site)
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vaebook.lab.site_check", description=__doc__.split("\n")[0])
    ap.add_argument("site", nargs="?", default="_build/html", help="the built site (the folder with index.html)")
    ap.add_argument("--browser", default=None, help="Chromium binary (default: $CHROMIUM or the first on PATH)")
    ap.add_argument("--only", default=None, help="check only pages whose path matches this regular expression")
    a = ap.parse_args(argv)
    try:
        problems = check_site(a.site, a.browser, a.only)
    except SiteCheckError as e:
        print(f"[site-check] ERROR: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"[site-check] FAIL {p}")
    n = len({p.page for p in problems})
    print(f"[site-check] FAILED: {len(problems)} problem(s) on {n} page(s)" if problems
          else "[site-check] all pages pass")
    return 1 if problems else 0


__all__ = ["BROWSERS", "PAGE_PROBE", "Browser", "SiteCheckError", "find_browser", "Problem", "check_links",
           "events_problems", "machine_paths", "na_templates", "pages_of", "check_page", "check_sources", "check_site",
           "main"]


if __name__ == "__main__":
    sys.exit(main())

