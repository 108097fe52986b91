"""Headless Chromium for the report tests and docs/images/report.png: find it, load a page, record which images
decoded, take a screenshot. Installing it (the Debian package ``chromium``) is the set-up's job:
``scripts/install_system_deps.sh``, which ``make test`` runs; nothing here installs anything.

No browser driver (playwright/selenium): Chromium's own ``--dump-dom`` and ``--screenshot`` flags are enough. To learn
whether each ``<img>`` really decoded, :func:`check_page` loads a copy of the page with a small script that, on
``load``, writes ``complete && naturalWidth > 0`` for every image into an element that ``--dump-dom`` then prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")

# Writes the image check into the page; --dump-dom prints the DOM after the load event, so the result is in it.
_PROBE = """<script>
window.addEventListener("load", function () {
  var images = [], sections = {};
  for (var i = 0; i < document.images.length; i++) {
    var im = document.images[i];
    images.push({alt: im.alt, ok: im.complete && im.naturalWidth > 0, width: im.naturalWidth});
  }
  var secs = document.querySelectorAll("section[id]");
  for (var j = 0; j < secs.length; j++) {
    var r = secs[j].getBoundingClientRect();
    sections[secs[j].id] = [Math.round(r.top + window.scrollY), Math.round(r.bottom + window.scrollY)];
  }
  var boxes = [], figs = document.querySelectorAll("section[id] figure, section[id] figure img");
  for (var k = 0; k < figs.length; k++) {
    var b = figs[k].getBoundingClientRect(), sec = figs[k].closest("section[id]");
    boxes.push({section: sec.id, tag: figs[k].tagName.toLowerCase(), left: b.left, top: b.top + window.scrollY,
                right: b.right, bottom: b.bottom + window.scrollY});
  }
  var pre = document.createElement("pre");
  pre.id = "polymodal-image-check";
  pre.textContent = JSON.stringify({images: images, sections: sections, boxes: boxes,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(pre);
});
</script>"""
_CHECK_RE = re.compile(r'<pre id="polymodal-image-check">(.*?)</pre>', re.S)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on PATH, or None."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_reason() -> str | None:
    """None when a browser is found; else why there is none and how to get one (for a pytest skip or an exit)."""
    if find_chromium():
        return None
    return (
        "headless chromium is not installed (Debian package chromium): install it with "
        "`bash scripts/install_system_deps.sh` (as root; `make test` runs it)"
    )


def _run(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="polymodal-chromium-") as profile:
        cmd = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={profile}",
            *args,
        ]
        # --no-sandbox: Chromium refuses to start as root with its sandbox (test containers run as root).
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "HOME": profile})


@dataclass
class PageCheck:
    dom: str  # the DOM after load, as Chromium serialises it
    images: list[dict]  # one {"alt", "ok", "width"} per <img>, in page order
    sections: dict[str, list[int]]  # <section id> → [top, bottom] in page pixels (for cropping screenshots)
    height: int  # the page's full height in pixels
    boxes: list[dict]  # each <figure> and its <img> in a section: {"section", "tag", "left", "top", "right", "bottom"}

    @property
    def broken(self) -> list[dict]:
        return [im for im in self.images if not im["ok"]]


def check_page(binary: str, html: Path, timeout: float = 120, width: int = 1280) -> PageCheck:
    """Load ``html`` (a copy with the image probe added) in a ``width``-pixel window; return the DOM, each image's
    decode state and the page's layout."""
    text = html.read_text(encoding="utf-8")
    probed = text.replace("</body>", _PROBE + "</body>") if "</body>" in text else text + _PROBE
    with tempfile.TemporaryDirectory(prefix="polymodal-page-") as tmp:
        page = Path(tmp) / html.name
        page.write_text(probed, encoding="utf-8")
        # virtual-time-budget: let the load event and the probe run before the DOM is dumped.
        res = _run(
            binary, ["--virtual-time-budget=10000", f"--window-size={width},1000", "--dump-dom", page.as_uri()], timeout
        )
    found = _CHECK_RE.search(res.stdout)
    if found is None:
        raise RuntimeError(f"Chromium printed no image check (exit {res.returncode}); stderr:\n{res.stderr[-2000:]}")
    raw = found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    found = json.loads(raw)
    return PageCheck(res.stdout, found["images"], found["sections"], found["height"], found["boxes"])


def screenshot(binary: str, html: Path, png: Path, width: int = 1280, height: int = 4000, timeout: float = 120) -> Path:
    """Save a ``width`` × ``height`` screenshot of ``html`` to ``png`` (a tall window shows the whole report)."""
    png.parent.mkdir(parents=True, exist_ok=True)
    res = _run(
        binary,
        [
            "--virtual-time-budget=10000",
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            html.resolve().as_uri(),
        ],
        timeout,
    )
    if not png.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {res.returncode}); stderr:\n{res.stderr[-2000:]}")
    return png
