"""Make docs/images/report.png: a screenshot of the report that `polymodal demo` writes, in headless Chromium.

    .venv/bin/python scripts/report_screenshot.py                    # runs the full demo into polymodal-demo/ first
    .venv/bin/python scripts/report_screenshot.py --demo DIR         # reuse DIR/report.html from an earlier demo

The page is loaded once to check that every image decoded and to measure where its sections are, then shot in a
window as tall as the page; the picture runs from the top through the first explained example and is scaled to
1000 pixels wide. Chromium (the Debian package) must be installed: scripts/install_system_deps.sh does it
(tests/chromium.py holds the helpers this script and the tests use).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from chromium import check_page, find_chromium, missing_reason, screenshot

WIDTH, OUT_WIDTH = 1280, 1000
FIRST_EXAMPLE_PX = 1000  # how far into the gallery the picture goes: its heading and the first explained row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, default=REPO / "polymodal-demo", help="demo folder (default: %(default)s)")
    ap.add_argument("--rerun", action="store_true", help="run the demo even when DEMO/report.html exists")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "report.png")
    args = ap.parse_args()

    html = args.demo / "report.html"
    if args.rerun or not html.is_file():
        print(f"running `polymodal demo --out {args.demo}` (about 2 minutes on 2 CPU cores)", flush=True)
        subprocess.run(
            [sys.executable, "-m", "polymodal.cli", "demo", "--out", str(args.demo), "--quiet"], check=True, cwd=REPO
        )
    reason = missing_reason()
    if reason:
        sys.exit(f"no browser: {reason}")
    browser = find_chromium()
    page = check_page(browser, html, width=WIDTH)
    if page.broken:
        sys.exit(f"the report has images that do not decode: {page.broken}")
    with tempfile.TemporaryDirectory() as tmp:
        shot = screenshot(browser, html, Path(tmp) / "full.png", width=WIDTH, height=page.height)
        with Image.open(shot) as im:
            top, bottom = page.sections.get("gallery", [page.height, page.height])
            end = min(bottom, top + FIRST_EXAMPLE_PX, im.height)
            im = im.convert("RGB").crop((0, 0, WIDTH, end))
            im = im.resize((OUT_WIDTH, round(end * OUT_WIDTH / WIDTH)), Image.Resampling.LANCZOS)
            # 256 colours: the page is flat colours and plots; a third of the bytes, no visible loss.
            im = im.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            im.save(args.out, optimize=True)
    print(
        f"wrote {args.out} ({im.width}×{im.height}, {args.out.stat().st_size / 1e3:.0f} kB) from {html}; "
        f"{len(page.images)} images, none broken"
    )


if __name__ == "__main__":
    main()
