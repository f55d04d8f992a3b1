"""The HTML reports of the demo run: what they hold, --reports-only, and a real browser."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from csvd_bids import __version__
from csvd_bids.cli.run import main
from csvd_bids.errors import ExitCode

# These tests read the session-scoped demo run: keeping them on one xdist worker (make test
# uses --dist loadgroup) runs the 2 x 2 demo once instead of once per worker.
pytestmark = pytest.mark.xdist_group("demo_run")

SESSIONS = [f"sub-{s}_ses-{t}" for s in ("01", "02") for t in ("1", "2")]


class _Links(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def _links(page: Path) -> list[str]:
    parser = _Links()
    parser.feed(page.read_text())
    return parser.links


def _local_targets_exist(page: Path) -> None:
    for link in _links(page):
        if link.startswith(("#", "data:image/png;base64,")):
            continue
        assert not re.match(r"^[a-z]+:", link), f"{page.name}: link leaves the page: {link}"
        assert (page.parent / link).is_file(), f"{page.name}: {link} does not exist"


def test_every_session_has_a_report_with_its_figures(demo_run):
    out = demo_run["out"]
    for prefix in SESSIONS:
        page = out / f"{prefix}.html"
        text = page.read_text()
        for heading in ("Inputs", "Preprocessing", "Markers", "Ratings and scores", "Methods"):
            assert f">{heading}</h2>" in text
        # the versions the run recorded (dataset_description.json), under the methods
        assert "Software: Python " in text and "SimpleITK " in text and "nipype " in text
        _local_targets_exist(page)
        images = [link for link in _links(page) if link.endswith(".png")]
        # brain mask, 3 coregistrations + DWI, regions, and one mosaic per assessed marker
        assert len(images) >= 6 + 5, images
        summary = pd.read_csv(
            out / prefix.replace("_", "/") / "anat" / f"{prefix}_desc-summary_stats.tsv",
            sep="\t",
        ).iloc[0]
        assert f"{summary['WMH_count']} lesion(s)" in text
        assert "Staals J, et al." in text and f"csvd-bids {__version__}" in text


def test_group_report(demo_run):
    page = demo_run["out"] / "group_csvd.html"
    text = page.read_text()
    _local_targets_exist(page)
    assert text.count("data:image/png;base64,") >= 2  # distributions, score against age
    assert "4 session(s) of 2 subject(s)" in text
    assert "Software: Python " in text and "statsmodels " in text
    assert "logistic" in text or "ordinal" in text


def test_reports_only_rebuilds_without_running(demo_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_run["out"], out)
    (out / f"{SESSIONS[0]}.html").unlink()
    (out / "group_csvd.html").unlink()
    before = {
        p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.suffix != ".html"
    }
    work = tmp_path / "work"
    args = [str(demo_run["bids"]), str(out), "participant", "group", "-w", str(work)]
    assert main([*args, "--reports-only"]) == 0
    assert (out / f"{SESSIONS[0]}.html").is_file() and (out / "group_csvd.html").is_file()
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before  # no output but the reports was touched
    assert not any(work.glob("*/**/*.pklz"))  # no nipype node ran


def test_group_report_without_optional_tables(demo_run, tmp_path):
    """One session per subject: no change table (and here no descriptives either)."""
    out = tmp_path / "out"
    shutil.copytree(demo_run["out"], out)
    for name in ("group_change.tsv", "group_descriptives.tsv", "group_csvd.html"):
        (out / name).unlink()
    args = [str(demo_run["bids"]), str(out), "group", "-w", str(tmp_path / "work")]
    assert main([*args, "--reports-only"]) == 0
    text = (out / "group_csvd.html").read_text()
    assert "Change between first and last session" not in text


def test_reports_only_without_outputs_is_no_input(demo_bids, tmp_path):
    args = [str(demo_bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w")]
    assert main([*args, "--reports-only"]) == ExitCode.NO_INPUT


# --- a real browser -----------------------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def _browser() -> tuple[str, str]:
    """Chromium (or Chrome) and its driver, or skip with the reason."""
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e .[test])")
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    browser = next((p for n in names if (p := shutil.which(n))), None)
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(
            "no Chromium and chromedriver on PATH (Debian: apt-get install chromium "
            "chromium-driver; .ci/run installs them)"
        )
    return browser, driver


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = _browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,2000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


def _requested_urls(chrome) -> list[str]:
    import json

    urls = []
    for entry in chrome.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.mark.parametrize("page", [f"{SESSIONS[0]}.html", "group_csvd.html"])
def test_reports_render_in_chromium(demo_run, browser, page):
    path = demo_run["out"] / page
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get_log("performance")
    browser.get(path.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    requests = _requested_urls(browser)
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests
    widths = browser.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src').slice(0, 60),"
        " i.complete ? i.naturalWidth : 0])"
    )
    assert widths and all(width > 0 for _, width in widths), widths
    ARTIFACTS.mkdir(exist_ok=True)
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 100, 16000))
    assert browser.save_screenshot(str(ARTIFACTS / f"{path.stem}.png"))
