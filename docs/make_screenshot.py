"""Render an HTML saliency report and screenshot it with headless Chromium into docs/.

    python docs/make_screenshot.py                      # hand-built synthetic result (no model)
    python docs/make_screenshot.py --result runs/demo/x # a SaliencyResult saved with .save(dir)
    python docs/make_screenshot.py --html runs/explain/report.html --out docs/explain_screenshot.png
                                                        # a report as written (saliency-r1 explain)

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (dev extra).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from saliency_r1.viz import report_html, synthetic_boxes, synthetic_result

HERE = Path(__file__).resolve().parent


def browser(user_dir: str, width: int = 1360, height: int = 900):
    """A headless Chromium driven by Selenium (Debian's chromedriver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={user_dir}", f"--window-size={width},{height}",
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--result", help="directory of a saved SaliencyResult (default: synthetic)")
    ap.add_argument("--boxes", help="JSON list of pixel xyxy evidence boxes of image 0")
    ap.add_argument("--scores", help='JSON dict of scores, e.g. {"energy_pg": 0.41}')
    ap.add_argument("--html", help="screenshot this existing report (e.g. from saliency-r1 explain) as is")
    ap.add_argument("--token", type=int, default=None, help="click this token before the shot")
    ap.add_argument("--out", default=str(HERE / "report_screenshot.png"))
    args = ap.parse_args()
    if args.html:
        _shoot(Path(args.html).resolve(), args.out, args.token, None)
        print(args.out)
        return
    if args.result:
        from saliency_r1.attribution.result import SaliencyResult

        result = SaliencyResult.load(args.result)
        boxes = json.loads(args.boxes) if args.boxes else None
        scores = json.loads(args.scores) if args.scores else None
    else:
        result = synthetic_result()
        boxes = synthetic_boxes()
        scores = {"energy_pg": 0.41, "pg": 1.0, "energy_pg_think": 0.37}
    work = tempfile.mkdtemp()
    page = report_html(result, Path(work) / "report.html", boxes=boxes, scores=scores,
                       title="What colour is the car?" if not args.result else None)
    token = args.token if args.token is not None or args.result else _first_visual_token(result)
    _shoot(page, args.out, token, work)
    print(args.out)


def _shoot(page: Path, out: str, token: int | None, work: str | None) -> None:
    """Open ``page`` in headless Chromium, click response token ``token`` (if any), save the full page."""
    driver = browser(str(Path(work or tempfile.mkdtemp()) / "profile"))
    try:
        driver.get(page.as_uri())
        if token is not None:
            driver.find_element("css selector", f'.sr-tok[data-k="{token}"]').click()
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1360, "height": min(int(height), 4000), "deviceScaleFactor": 1,
            "mobile": False})
        driver.save_screenshot(out)
    finally:
        driver.quit()


def _first_visual_token(result) -> int:
    """The first token that names the car (a telling example for the synthetic scene)."""
    return next((k for k, t in enumerate(result.tokens) if t.strip() == "red"), 0)


if __name__ == "__main__":
    main()
