"""Full-page PNG of an HTML report in headless Chromium (Debian's chromium + chromium-driver, Selenium):
how docs/demo_screenshot.png is made.

    python docs/screenshot.py runs/demo/report.html docs/demo_screenshot.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def shoot(html: Path, png: Path, width: int = 1360) -> None:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", f"--user-data-dir={profile}", f"--window-size={width},900"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            driver.get(html.resolve().as_uri())
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, int(height) + 20)
            driver.save_screenshot(str(png))
        finally:
            driver.quit()


if __name__ == "__main__":
    shoot(Path(sys.argv[1]), Path(sys.argv[2]))
