"""The browser half of :mod:`vaebook.lab.site_check`: one headless Chromium, driven through the Chrome DevTools
protocol over ``--remote-debugging-pipe`` (no websocket client needed), that loads a page from disk at a desktop
window of 1280×900 and returns what :data:`PAGE_PROBE` measured in it (links, images, tables, prose, events).

Chromium: ``$CHROMIUM``, else the first of ``chromium-headless-shell``, ``chromium``, ``google-chrome`` found on
``PATH`` (:func:`find_browser`).
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Optional

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "chrome")
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


__all__ = ["BROWSERS", "PAGE_PROBE", "SiteCheckError", "find_browser", "Browser"]
