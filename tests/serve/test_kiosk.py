"""The kiosk page in a real headless Chromium (Debian's chromium + chromium-driver, through selenium):
it shows a label and cues from a replayed real clip, a mark on its 60 s timeline for each labelled
explanation it received and a bar for each evidence source, pauses, reconnects after a server restart
(the timeline starts again with the new run), and makes no request outside 127.0.0.1. The screenshot goes
to runs/test-artifacts/kiosk.png."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

for module in ("starlette", "uvicorn", "websockets", "selenium"):
    pytest.importorskip(module, reason="the serve extra or selenium is not installed")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from serving import REPO, free_port, replay_args, start_server  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
ARTIFACTS = REPO / "runs" / "test-artifacts"


@pytest.fixture
def browser():
    if not CHROMIUM or not DRIVER:
        pytest.skip("chromium and chromium-driver are not installed (scripts/install.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-default-apps", "--disable-sync"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def requested_hosts(driver) -> set[str]:
    """Hosts of every HTTP request and WebSocket the page made (Chrome's DevTools network log)."""
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        url = params.get("request", {}).get("url") if message["method"] == "Network.requestWillBeSent" else (
            params.get("url") if message["method"] == "Network.webSocketCreated" else None)
        if url and not url.startswith(("data:", "about:")):
            hosts.add(urlsplit(url).hostname)
    return hosts


RECORD_EXPLANATIONS = """
window.__explanations = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (m) => {
      const e = JSON.parse(m.data);
      if (e.type === "explanation") window.__explanations.push(e);
    });
  }
};
"""
"""Installed before the page's own script: every explanation the page receives, for the test to compare."""

TIMELINE = """
const all = window.__explanations;
const got = all.filter((e, i) => i === 0 || e.t_start !== all[i - 1].t_start);  // each window's first person
let start = 0;  // the page starts its timeline again when the clock goes back (a new run)
for (let i = 1; i < got.length; i++) if (got[i].t_end < got[i - 1].t_end - 1) start = i;
const run = got.slice(start), now = run.length ? run[run.length - 1].t_end : 0;
const last = run[run.length - 1] || {};
const newest = all[all.length - 1] || {};
return {
  people: [...document.querySelectorAll("#people .person")].map((c) => c.dataset.face),
  newest_face: String(newest.face_id),
  expected: run.filter((e) => e.emotion.label && (e.t_start + e.t_end) / 2 > now - 60).map((e) => e.emotion.label),
  bands: [...document.querySelectorAll("#marks rect.band")].map((r) => [r.dataset.label, r.getAttribute("fill"),
          +r.getAttribute("x"), +r.getAttribute("width")]),
  evidence: last.evidence || {},
  bars: [...document.querySelectorAll("#sources .bar")].map((b) => [b.dataset.source,
         [...b.children].reduce((sum, seg) => sum + parseFloat(seg.style.width), 0)]),
};
"""
"""The labelled explanations of the current run within 60 s, and the page's timeline and source bars."""


def check_timeline(driver, colours: dict) -> int:
    """The timeline has one band per labelled explanation of the last 60 s, in order and in its label's
    colour, inside the axis; one bar per evidence source of the newest explanation, filled to its total
    probability. Returns how many bands it shows."""
    t = driver.execute_script(TIMELINE)
    assert [b[0] for b in t["bands"]] == t["expected"]
    assert all(fill == colours[label] for label, fill, _, _ in t["bands"])
    assert all(0 <= x and x + w <= 600.5 for _, _, x, w in t["bands"])
    assert sorted(b[0] for b in t["bars"]) == sorted(t["evidence"])
    assert t["newest_face"] in t["people"]  # one card per person explained lately
    for source, width in t["bars"]:
        total = sum(p for p in t["evidence"][source]["distribution"].values() if p > 0)
        assert abs(width - 100 * total) < 0.5, (source, width, total)
    return len(t["bands"])


def text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def test_the_kiosk_page_shows_live_explanations_pauses_and_reconnects(browser, tmp_path):
    port, token_file = free_port(), tmp_path / "tokens.json"
    server = start_server(tmp_path, *replay_args(), port=port, token_file=token_file)
    try:
        server.wait_ready()
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_EXPLANATIONS})
        browser.get(f"http://127.0.0.1:{port}/#token={server.tokens['admin']}")
        # the page re-renders its lists on every event: an element found a moment ago may be gone
        wait = WebDriverWait(browser, 90, poll_frequency=0.25, ignored_exceptions=(StaleElementReferenceException,))
        wait.until(lambda d: text(d, "state") == "analysing")
        assert "token" not in browser.current_url  # the fragment is taken off the address bar
        wait.until(lambda d: text(d, "label") not in ("", "-") and d.find_elements(By.CSS_SELECTOR, "#visual li"))
        wait.until(lambda d: text(d, "explanation"))
        label, cues = wait.until(lambda d: (text(d, "label"), [li.text for li in d.find_elements(By.CSS_SELECTOR, "#visual li")]))
        assert label.lower() in ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "worried")
        assert cues and all(cues)
        colours = json.loads(server.get("/v1/info", server.tokens["admin"])[1])["label_colours"]
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#marks rect.band")) >= 3)
        assert check_timeline(browser, colours) >= 3
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "kiosk.png"))

        browser.find_element(By.ID, "pause").click()
        wait.until(lambda d: text(d, "state") == "paused")
        browser.find_element(By.ID, "pause").click()
        wait.until(lambda d: text(d, "state") == "analysing")

        assert server.stop() == 0
        wait.until(lambda d: text(d, "state") in ("reconnecting", "server stopping"))
        seq_before = text(browser, "seq")
        explained_before = browser.execute_script("return window.__explanations.length")
        server = start_server(tmp_path, *replay_args(), port=port, token_file=token_file)
        server.wait_ready()
        wait.until(lambda d: text(d, "state") == "analysing" and text(d, "seq") != seq_before)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#visual li"))
        wait.until(lambda d: d.execute_script("return window.__explanations.length") > explained_before)
        assert 1 <= check_timeline(browser, colours) <= 3  # the new run's first windows only
        assert requested_hosts(browser) == {"127.0.0.1"}
    finally:
        server.stop()
    print(f"kiosk screenshot: {ARTIFACTS / 'kiosk.png'} ({label}: {', '.join(cues)})")
    assert Path(ARTIFACTS / "kiosk.png").stat().st_size > 10_000
