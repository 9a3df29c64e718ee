"""The HTML report in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by selenium loads each sample's page from disk.

Asserted per page: no console message of level warning or worse, no network request but the
page's own file (the DevTools performance log's ``Network.requestWillBeSent``), every figure
rendered (an ``<svg>`` of non-zero size whose screenshot is not one colour), and every number
the page marks (``data-json``) shown as the JSON report of the same run has it. One screenshot
per sample is kept in ``tests/artifacts/html/`` (git-ignored) for people to look at.

Skipped, with the reason, when chromium, its driver, selenium or matplotlib is missing.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from html_samples import SAMPLES, lm_sample, pointer, render, shown_matches

pytest.importorskip("matplotlib", reason="--format html needs the cecheck[html] extra")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
Image = pytest.importorskip("PIL.Image", reason="Pillow (a matplotlib dependency) is missing")

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "headless Chromium is not installed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "html"
NAMES = [*SAMPLES, "lm_btv"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900", "--disable-extensions", "--no-first-run"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = webdriver.ChromeService(executable_path=DRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    directory = tmp_path_factory.mktemp("html-browser")
    samples = {**SAMPLES, "lm_btv": lm_sample(directory)}
    return {name: render(args, directory, name) for name, args in samples.items()}


def requests(driver: Any) -> list[str]:
    """The URLs the page asked for since the last call, from the DevTools log."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def not_uniform(png: bytes) -> bool:
    """Whether a screenshot holds more than one colour (something was drawn)."""
    image = Image.open(io.BytesIO(png)).convert("L")
    low, high = image.getextrema()
    return bool(high - low > 64)


@pytest.mark.parametrize("name", NAMES)
def test_the_page_renders_offline_with_the_json_numbers(
    name: str, browser: Any, rendered: dict[str, tuple[Path, dict[str, Any]]]
) -> None:
    page, data = rendered[name]
    browser.get_log("browser"), requests(browser)  # what an earlier page left
    url = page.as_uri()
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"

    assert [e for e in browser.get_log("browser") if e["level"] != "INFO"] == []
    assert set(requests(browser)) == {url}

    figures = browser.find_elements("css selector", "svg[data-figure]")
    assert figures
    for figure in figures:
        name = figure.get_attribute("data-figure")
        assert figure.size["width"] > 100, name
        assert figure.size["height"] > 50, name
        browser.execute_script("arguments[0].scrollIntoView()", figure)
        assert not_uniform(figure.screenshot_as_png), name

    marked = browser.find_elements("css selector", "[data-json]")
    assert len(marked) > 10
    for element in marked:
        key = element.get_attribute("data-json")
        assert json.loads(element.get_attribute("data-value")) == pointer(data, key), key
        shown = element.text
        assert shown_matches(shown, pointer(data, key)), (key, shown, pointer(data, key))

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, min(int(height) + 100, 16000))
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    browser.set_window_size(1200, 900)
