"""Open every page of a built site in headless Chromium and fail on what a reader would trip over.

    python -m vaebook.lab.site_check _build/html        # or: make site-check SITE=_build/html

Each ``*.html`` page is loaded from disk (``file://``) in one headless Chromium, driven through the Chrome
DevTools protocol over ``--remote-debugging-pipe`` (no websocket client needed), at a desktop window of
1280×900. A page fails on:

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
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import unquote, urlsplit

from vaebook.lab.site_figures import image_problems

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "chrome")
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|root|home|Users)/[\w.\-]")
NA_TEMPLATE = re.compile(r"(?<![\w/])n/a(?![\w/])", re.IGNORECASE)
BADGE_HEADERS = ("verdict", "status")
WIDTH, HEIGHT = 1280, 900

#: runs in the page once it has loaded; returns what the checks need as JSON
PAGE_PROBE = r"""
(() => {
  const out = {links: [], images: [], tables: [], prose: "", ids: []};
  for (const a of document.querySelectorAll("a[href]")) out.links.push([a.getAttribute("href"), a.href]);
  for (const img of document.querySelectorAll("img")) {
    const link = img.closest("a[href]");
    out.images.push({src: img.getAttribute("src") || "", ok: img.complete && img.naturalWidth > 0,
                     lazy: img.loading === "lazy", alt: (img.getAttribute("alt") || "").trim(),
                     shown: Math.round(img.getBoundingClientRect().width), natural: img.naturalWidth,
                     linked: !!link && !link.getAttribute("href").startsWith("#")});
  }
  const vw = document.documentElement.clientWidth;
  const clipBoxes = (el) => {  // ancestors that cut off their overflow
    const boxes = [];
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const s = getComputedStyle(p);
      if (s.overflowX !== "visible" || s.overflowY !== "visible") boxes.push(p);
    }
    return boxes;
  };
  document.querySelectorAll("table").forEach((t, ti) => {
    const heads = Array.from(t.querySelectorAll("thead th, tr:first-child th"));
    const names = heads.map(h => h.textContent.trim().toLowerCase());
    const rec = {index: ti, columns: names.slice(0, 12), problems: []};
    const trect = t.getBoundingClientRect();
    for (const box of clipBoxes(t)) {
      const s = getComputedStyle(box);
      const b = box.getBoundingClientRect();
      if ((s.overflowY !== "visible") && box.clientHeight > 0 && box.scrollHeight > box.clientHeight + 2
          && trect.height > box.clientHeight + 2) {
        rec.problems.push(`held in a box ${Math.round(box.clientHeight)} px high (the table is ` +
                          `${Math.round(trect.height)} px): a scroll box`);
        break;
      }
    }
    {  // any table: wider than what its scrolling box shows
      let right = vw;
      for (const box of clipBoxes(t)) {
        const b = box.getBoundingClientRect();
        right = Math.min(right, b.left + box.clientLeft + box.clientWidth);
      }
      if (trect.width > 0 && trect.right > right + 2) {
        rec.problems.push(`${Math.round(trect.right - right)} px of it are out of view (scrolled away or cut off)`);
      }
    }
    names.forEach((n, ci) => {
      if (!["verdict", "status"].includes(n)) return;
      const cells = [heads[ci]];
      for (const row of t.querySelectorAll("tbody tr")) {
        if (row.children.length === heads.length && row.children[ci]) cells.push(row.children[ci]);
      }
      for (const c of cells) {
        const r = c.getBoundingClientRect();
        if (r.width === 0 && r.height === 0) continue;  // inside a closed <details>
        let right = vw, left = 0;
        for (const box of clipBoxes(c)) {
          const b = box.getBoundingClientRect();
          right = Math.min(right, b.left + box.clientLeft + box.clientWidth);
          left = Math.max(left, b.left);
        }
        if (r.right > right + 1 || r.left < left - 1) {
          rec.problems.push(`its ${n} column is cut off (cell at x = ${Math.round(r.left)}–${Math.round(r.right)}` +
                            ` px, visible ${Math.round(left)}–${Math.round(right)} px)`);
          break;
        }
      }
    });
    if (rec.problems.length) out.tables.push(rec);
  });
  const main = document.querySelector("main") || document.querySelector("article") || document.body;
  const copy = main.cloneNode(true);
  copy.querySelectorAll("table, pre, code, script, style, .cell_input, nav, .headerlink").forEach(e => e.remove());
  out.prose = copy.textContent.replace(/\s+/g, " ");
  out.ids = Array.from(document.querySelectorAll("[id]")).map(e => e.id);
  return JSON.stringify(out);
})()
"""


class SiteCheckError(RuntimeError):
    """The site or the browser cannot be checked at all."""


@dataclass
class Problem:
    page: str
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.kind}: {self.detail}"


def find_browser(explicit: Optional[str] = None) -> Optional[str]:
    for cand in ([explicit] if explicit else []) + ([os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else []) \
            + list(BROWSERS):
        path = shutil.which(cand) if cand else None
        if path:
            return path
    return None


class Browser:
    """One headless Chromium, driven over the DevTools protocol on a pipe (fd 3: commands in, fd 4: out)."""

    def __init__(self, binary: str, width: int = WIDTH, height: int = HEIGHT):
        self.width, self.height = width, height
        self._id = 0
        self._buf = b""
        self.events: list = []
        self._profile = tempfile.mkdtemp(prefix="vaebook-site-check-")
        r_cmd, self._w = os.pipe()
        self._r, w_res = os.pipe()
        # high, close-on-exec copies, placed at fds 3 and 4 in the child only
        r_hi, w_hi = fcntl.fcntl(r_cmd, fcntl.F_DUPFD_CLOEXEC, 10), fcntl.fcntl(w_res, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(r_cmd)
        os.close(w_res)

        def child():
            os.dup2(r_hi, 3)
            os.dup2(w_hi, 4)

        args = [binary, "--headless", "--no-sandbox", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=child, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(r_hi)
        os.close(w_hi)
        try:
            self.call("Browser.getVersion", timeout=30)
        except Exception:
            self.close()
            raise

    # -- protocol ------------------------------------------------------------------------------
    def _read(self, timeout: float) -> Optional[dict]:
        end = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = end - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._r], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise SiteCheckError("Chromium closed the DevTools pipe (did it crash?)")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None,
             timeout: float = 30.0) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + timeout
        while True:
            m = self._read(max(0.0, end - time.monotonic()))
            if m is None:
                raise SiteCheckError(f"no answer from Chromium to {method} within {timeout:.0f} s")
            if m.get("id") == self._id:
                if "error" in m:
                    raise SiteCheckError(f"{method}: {m['error'].get('message')}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def pump(self, seconds: float) -> None:
        """Collect events for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            m = self._read(max(0.0, end - time.monotonic()))
            if m is None:
                return
            if "method" in m:
                self.events.append(m)

    # -- a page --------------------------------------------------------------------------------
    def open(self, url: str, settle: float = 0.6, timeout: float = 30.0) -> tuple:
        """Load ``url`` in a fresh tab; returns (the probe's result, the tab's events)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for m in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
                self.call(m, session=sid)
            self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                             "deviceScaleFactor": 1, "mobile": False}, session=sid)
            self.events = []
            self.call("Page.navigate", {"url": url}, session=sid)
            end, loaded = time.monotonic() + timeout, False
            while time.monotonic() < end and not loaded:
                self.pump(0.2)
                loaded = any(e.get("sessionId") == sid and e["method"] == "Page.loadEventFired" for e in self.events)
            pending, quiet_since = set(), time.monotonic()
            while time.monotonic() < end:  # network idle for `settle` seconds (MathJax typesets after load)
                n = len(self.events)
                self.pump(0.1)
                for e in self.events[n:]:
                    if e.get("sessionId") != sid:
                        continue
                    rid = e.get("params", {}).get("requestId")
                    if e["method"] == "Network.requestWillBeSent":
                        pending.add(rid)
                        quiet_since = time.monotonic()
                    elif e["method"] in ("Network.loadingFinished", "Network.loadingFailed"):
                        pending.discard(rid)
                        quiet_since = time.monotonic()
                if not pending and time.monotonic() - quiet_since >= settle:
                    break
            res = self.call("Runtime.evaluate", {"expression": PAGE_PROBE, "returnByValue": True}, session=sid)
            value = (res.get("result") or {}).get("value")
            probe = json.loads(value) if isinstance(value, str) else {}
            return probe, [e for e in self.events if e.get("sessionId") == sid], loaded
        finally:
            try:
                self.call("Target.closeTarget", {"targetId": target}, timeout=10)
            except SiteCheckError:
                pass

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close", timeout=5)
                except Exception:  # noqa: BLE001 - it is going away anyway
                    pass
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            for fd in (self._w, self._r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


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


if __name__ == "__main__":
    sys.exit(main())
