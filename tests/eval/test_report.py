"""The emotion timeline report (`edge-xemo report`, and one per clip from `eval clips`), rendered in a real
headless Chromium (Debian's chromium + chromium-driver, through selenium): its marks, the hovered window's
explanation, no request leaving the page, and a 10-minute report's size and render time. The demo clip's
screenshot goes to runs/test-artifacts/report_demo.png."""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from edge_xemo.eval.datasets import load_clips
from edge_xemo.eval.evaluation import ClipResult, evaluate_clips, markdown
from edge_xemo.eval.report import read_events, write_report

FIXTURE = REPO / "tests" / "data" / "report_events.jsonl"
ARTIFACTS = REPO / "runs" / "test-artifacts"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    if not CHROMIUM or not DRIVER:
        pytest.skip("chromium and chromium-driver are not installed (scripts/install.sh installs them)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def count(driver, selector: str) -> int:
    return int(driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector))


def open_offline(driver, page: Path) -> None:
    """Load the page from disk; it must make no request (resource entries) and log no error (a CSP violation
    or a script error would)."""
    driver.get_log("browser")  # drop the previous page's log
    driver.get(page.as_uri())
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    csp = driver.execute_script(
        "return document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]').content")
    assert csp.startswith("default-src 'none'")


def hover(driver, element) -> str:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(element).perform()
    return driver.find_element("id", "detail").text


def test_the_fixture_report_shows_every_window_cue_and_word_and_the_hovered_explanation(browser, tmp_path):
    events = read_events(FIXTURE)
    page = write_report(events, tmp_path / "fixture.html")
    assert "http://" not in page.read_text() and "https://" not in page.read_text()
    open_offline(browser, page)
    # 6 windows, 5 judged: 3 confident, 1 where the sources disagree (hatched), 1 on weak evidence
    assert (count(browser, "rect.win"), count(browser, "rect.win.confident"), count(browser, "rect.hatch"),
            count(browser, "rect.win.weak_evidence")) == (5, 3, 1, 1)
    assert count(browser, "path.area") == 3 * 8  # expression, voice and words, 8 labels each
    # two tracked faces, each with its own cue rows; the voice's two cues; 11 cue marks; the words said twice
    assert count(browser, ".rl.person") == 2
    assert (count(browser, ".rt.cue-row.visual"), count(browser, ".rt.cue-row.auditory")) == (5, 2)
    assert count(browser, "rect.mark") == 11 and count(browser, "rect.speech") == 5
    assert [w.text for w in browser.find_elements("css selector", "span.words")] == [
        "Hello there, how nice!", "Stop it right now."]
    summary = browser.find_element("id", "summary").text
    assert "happy 33 % 50 %" in summary and "no label 17 %" in summary
    assert "happy → neutral (1), neutral → angry (1)" in summary
    assert "no face in 17 % of the windows, no speech in 17 %, the label not confident in 33 %" in summary
    texts = [e["text"] for e in events if e["type"] == "explanation"]
    for rect, text in zip(browser.find_elements("css selector", "rect.win"), texts):
        assert text in hover(browser, rect)
    disagree = browser.find_element("css selector", "rect.win.sources_disagree")
    shown = hover(browser, disagree)
    assert "happy (sources_disagree, confidence 0.62)" in shown and "voice points to neutral" in shown
    disagree.click()  # pinned: another window's hover leaves it
    assert "pinned" in hover(browser, browser.find_elements("css selector", "rect.win")[-1])
    assert "voice points to neutral" in browser.find_element("id", "detail").text


def test_the_report_of_the_demo_clip_runs_the_analysis(browser, tmp_path, demo_video, demo_audio):
    out, events = tmp_path / "demo.html", tmp_path / "demo.jsonl"
    proc = run_cli("report", demo_video, "--audio", demo_audio, "--no-explain", "--out", out, "--jsonl", events,
                   timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"wrote {out}" in proc.stderr
    judged = [e for e in read_events(events) if e["type"] == "explanation"]
    open_offline(browser, out)
    assert count(browser, "rect.win") == len(judged) > 10
    assert count(browser, ".rt.cue-row.visual") > 3 and count(browser, "rect.mark") > 20
    middle = browser.find_elements("css selector", "rect.win")[len(judged) // 2]
    assert judged[len(judged) // 2]["text"] in hover(browser, middle)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "report_demo.png"))


def synthetic_events(n: int, seed: int = 0) -> list[dict]:
    """`n` windows of events shaped as the analyzer writes them (two faces, four evidence sources, words)."""
    rng = random.Random(seed)
    labels = ["neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "worried"]
    names = ["lip_corner_pull", "cheek_raise", "brow_lower", "lips_part", "lid_tighten", "jaw_drop", "nod"]
    out: list[dict] = []
    for i in range(n):
        common = {"schema_version": "1.1", "source": "ten_minutes.mp4", "t_start": float(i), "t_end": i + 2.0,
                  "wall_time": 0.0, "latency_ms": {}}
        label = labels[(i // 20) % 8]
        for face in (0, 1) if i % 3 else (0,):
            vis = [{"name": c, "phrase": c.replace("_", " "), "intensity": rng.random(), "face_id": face}
                   for c in rng.sample(names, 3)]
            aud = [{"name": "lively", "phrase": "lively intonation", "intensity": 0.6}] if face == 0 and i % 4 else []
            out.append({**common, "type": "cues", "face_id": face, "visual_cues": vis, "auditory_cues": aud,
                        "voice": {"speech_s": 1.2, "speech_ratio": 0.6}, "faces": [{"face_id": face}]})
        dists = {src: {"distribution": {k: rng.random() / 8 for k in labels}, "weight": 1.0, "cues": ["cue"]}
                 for src in ("expression", "facial_actions", "voice", "words")}
        out.append({**common, "type": "explanation", "text": "In the video, a cue, another cue and a third. " * 5,
                    "emotion": {"label": label, "scores": {}, "confidence": 0.7,
                                "outcome": ("confident", "weak_evidence", "sources_disagree")[i % 3],
                                "reason": None, "carried_by": ["a cue", "another cue"]},
                    "evidence": dists, "subtitle": f"words said in window {i // 3}"})
    return out


def test_a_ten_minute_report_is_small_and_renders_in_under_two_seconds(browser, tmp_path):
    page = write_report(synthetic_events(600), tmp_path / "ten_minutes.html")
    size = page.stat().st_size
    t0 = time.perf_counter()
    open_offline(browser, page)  # returns after the load event: parsed, styled, the script run
    browser.execute_async_script(  # two animation frames later, the laid-out page has been painted
        "var done = arguments[0]; requestAnimationFrame(function () { requestAnimationFrame(done); });")
    seconds = time.perf_counter() - t0
    print(f"10-minute report: {size / 1e6:.2f} MB, loaded and painted in {seconds:.2f} s")
    assert size < 3e6 and seconds < 2.0
    assert count(browser, "rect.win") == 600


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path):
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text(FIXTURE.read_text().splitlines()[0] + "\n{\"type\": \"cues\", trunc\n")
    off_schema = tmp_path / "off_schema.jsonl"
    off_schema.write_text('{"schema_version": "1.1", "type": "explanation", "t_start": 0, "t_end": 2}\n')
    for args, message in (
        (("--events", tmp_path / "none.jsonl"), "none.jsonl not found"),
        (("--events", corrupt), "corrupt.jsonl:2: not a JSON event"),
        (("--events", off_schema), "off_schema.jsonl:1: explanation event lacks 'latency_ms'"),
        ((tmp_path / "none.mp4",), "none.mp4"),
        ((), "give a media file or --events"),
    ):
        proc = run_cli("report", *args, "--out", tmp_path / "r.html", timeout=60)
        assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "r.html").exists()


def test_eval_clips_links_each_clip_to_its_report(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.mp4").write_bytes(b"not decoded by the stand-in analyzer")
    (tmp_path / "clips.csv").write_text("name,video,label\nfirst/a,a.mp4,happy\nb,b.mp4,sad\n")
    events = tuple(read_events(FIXTURE))

    def analyze(clip):  # a stand-in analyzer (the harness's report writing is under test), the fixture's events
        return ClipResult(text="Therefore, the emotional state is happy.", label="happy",
                          events=events if clip.name == "first/a" else ())

    report = evaluate_clips(load_clips(tmp_path / "clips.csv"), analyze, reports=tmp_path / "out" / "clips")
    rows = {row["name"]: row for row in report["clips"]}
    assert rows["first/a"]["report"] == "clips/first_a.html" and "report" not in rows["b"]
    assert 'class="win confident"' in (tmp_path / "out" / "clips" / "first_a.html").read_text()
    assert "| first/a | happy | happy | [report](clips/first_a.html) |" in markdown(report)


def test_the_report_passes_smooth_to_the_analysis(monkeypatch, tmp_path, demo_video):
    from typer.testing import CliRunner

    from edge_xemo import cli

    events = tmp_path / "events.jsonl"  # what the analysis would have written: the analysis itself is not under test
    shutil.copy(FIXTURE, events)
    runs = []
    monkeypatch.setattr(cli, "_run", lambda sources, **kw: runs.append(kw))
    for extra in ([], ["--smooth", "4"]):
        args = ["report", str(demo_video), "--jsonl", str(events), "--out", str(tmp_path / "r.html"), *extra]
        result = CliRunner().invoke(cli.app, args)
        assert result.exit_code == 0, result.output
    assert [kw["smooth_s"] for kw in runs] == [None, 4.0]
    assert (tmp_path / "r.html").stat().st_size > 1000
