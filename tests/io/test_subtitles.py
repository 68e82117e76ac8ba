"""Timed subtitles: .srt and .vtt parsing, routing to windows, and `analyze --subtitle-file` end to end."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from edge_xemo.io.sources import SourceError
from edge_xemo.io.subtitles import read_subtitles, text_during

SRT = """1
00:00:01,000 --> 00:00:03,500
<i>Hello there,</i>

2
00:00:08,000 --> 00:00:12,250
how are you
doing today?
"""
VTT = """WEBVTT

00:01.000 --> 00:03.500
Hello there,

intro
00:00:08.000 --> 00:00:12.250 align:start
how are you doing today?
"""


@pytest.mark.parametrize("name,content", [("a.srt", SRT), ("a.vtt", VTT)])
def test_srt_and_vtt_give_the_same_cues(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    cues = read_subtitles(path)
    assert [(c.start, c.end, c.text) for c in cues] == [(1.0, 3.5, "Hello there,"), (8.0, 12.25, "how are you doing today?")]
    assert text_during(cues, 3.0, 5.0) == "Hello there," and text_during(cues, 4.0, 6.0) is None
    assert text_during(cues, 2.0, 9.0) == "Hello there, how are you doing today?"


def test_a_file_without_cues_is_one_clear_error(tmp_path):
    path = tmp_path / "notes.srt"
    path.write_text("just some text\n")
    with pytest.raises(SourceError, match="no timed subtitle cues"):
        read_subtitles(path)
    with pytest.raises(SourceError, match="cannot read"):
        read_subtitles(tmp_path / "missing.srt")


def test_analyze_routes_timed_subtitles_to_their_windows(demo_audio, tmp_path):
    path = tmp_path / "talk.srt"
    path.write_text("1\n00:00:02,000 --> 00:00:04,000\nThis is the first line.\n\n"
                    "2\n00:00:20,000 --> 00:00:22,000\nAnd this one comes much later.\n")
    out = tmp_path / "out.jsonl"
    proc = run_cli("analyze", demo_audio, "--subtitle-file", path, "--quiet", "--jsonl", out)
    assert proc.returncode == 0, proc.stderr
    expl = [json.loads(line) for line in out.read_text().splitlines() if '"explanation"' in line]
    for d in expl:
        if d["t_start"] < 4.0 and d["t_end"] > 2.0:
            assert d["subtitle"] == "This is the first line."
        elif d["t_start"] < 22.0 and d["t_end"] > 20.0:
            assert d["subtitle"] == "And this one comes much later."
        else:
            assert d["subtitle"] is None
    assert any(d["subtitle"] for d in expl)
    bad = run_cli("analyze", demo_audio, "--subtitle-file", tmp_path / "nope.srt", "--quiet")
    assert bad.returncode != 0 and "cannot read subtitle file" in bad.stderr and "Traceback" not in bad.stderr
