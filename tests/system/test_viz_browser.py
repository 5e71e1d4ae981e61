"""The HTML report in a real headless Chromium (Debian's chromium + chromium-driver, Selenium).

Skipped only when /usr/bin/chromium or /usr/bin/chromedriver is missing (`.ci/run` installs them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import XSS_ATTR, XSS_CLOSE, XSS_SCRIPT, hand_result

from saliency_r1.viz import comparison_html, report_html

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
                       reason="headless Chromium not installed: apt-get install -y chromium "
                              "chromium-driver (.ci/run does this) to run the browser tests"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (dev extra)")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(arg)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def xss_page(tmp_path_factory) -> Path:
    tokens = [" The", XSS_SCRIPT, " dog", XSS_ATTR, XSS_CLOSE, " left", " yes", "."]
    r = hand_result(n=8, tokens=tokens, question=XSS_SCRIPT + XSS_ATTR, n_images=2)
    r.meta["note"] = XSS_ATTR
    return report_html(r, tmp_path_factory.mktemp("report") / "report.html",
                       boxes={0: [(10, 10, 50, 40)]}, scores={XSS_SCRIPT: 0.5, "pg": 1.0},
                       title=XSS_CLOSE)


def _open(driver, page: Path) -> None:
    driver.get(page.as_uri())
    driver.get_log("browser")  # drop anything logged before this page


def _severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _state(driver, section: int = 0) -> tuple[str, list[str]]:
    return driver.execute_script(
        "var s = document.getElementById('sr-' + arguments[0]);"
        "return [s.getAttribute('data-showing'),"
        " Array.from(s.querySelectorAll('canvas.sr-heat')).map(c => c.toDataURL())];", section)


def test_no_console_errors_and_payloads_inert(driver, xss_page):
    _open(driver, xss_page)
    # an alert() from a payload would make this call raise UnexpectedAlertPresentException
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert driver.execute_script("return document.querySelectorAll('img').length") == 2
    assert driver.title == XSS_CLOSE
    assert driver.find_element("css selector", ".sr-question").text == XSS_SCRIPT + XSS_ATTR
    assert _severe(driver) == []


def test_clicking_a_token_changes_the_map(driver, xss_page):
    _open(driver, xss_page)
    before, canvases = _state(driver)
    assert before == "view:holistic" and len(canvases) == 2
    tok = driver.find_element("css selector", '.sr-tok[data-k="2"]')
    tok.click()
    after, canvases_after = _state(driver)
    assert after == "token:2" and canvases_after != canvases
    assert "sr-sel" in tok.get_attribute("class")
    driver.find_element("css selector", '.sr-view[data-view="think"]').click()
    assert _state(driver)[0] == "view:think"
    assert _severe(driver) == []


def test_keyboard_navigation(driver, xss_page):
    from selenium.webdriver.common.keys import Keys

    _open(driver, xss_page)
    first = driver.find_element("css selector", '.sr-tok[data-k="0"]')
    assert first.get_attribute("tabindex") == "0"
    driver.execute_script("arguments[0].focus()", first)
    assert _state(driver)[0] == "token:0"                      # focus previews the token
    first.send_keys(Keys.ARROW_RIGHT)
    focused = driver.switch_to.active_element
    assert focused.get_attribute("data-k") == "1" and _state(driver)[0] == "token:1"
    focused.send_keys(Keys.ENTER)
    assert "sr-sel" in focused.get_attribute("class")
    focused.send_keys(Keys.ESCAPE)
    assert _state(driver)[0] == "view:holistic"
    assert _severe(driver) == []


def test_comparison_page_paints_every_section(driver, tmp_path):
    page = comparison_html([("before", hand_result(seed=1, holistic=False), None, None),
                            ("after", hand_result(seed=2), [(1, 1, 20, 20)], {"pg": 1.0})],
                           tmp_path / "c.html", "before / after")
    _open(driver, page)
    first, second = _state(driver, 0), _state(driver, 1)
    assert first[0].startswith("token:") and second[0] == "view:holistic"
    blank = driver.execute_script("var c = document.createElement('canvas'); c.width = 4;"
                                  "c.height = 3; return c.toDataURL();")
    assert first[1][0] != blank and second[1][0] != blank
    assert _severe(driver) == []
