"""Bad input through the command line: one clear line on stderr, a non-zero exit, no traceback."""

import shutil

import pytest

from conftest import run_cli


def one_error_line(proc, fragment):
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("edge-xemo: error:")]
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and fragment in errors[0], proc.stderr
    return errors[0]


def test_help_lists_every_command():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("analyze", "live", "demo", "devices", "models", "reason"):
        assert cmd in proc.stdout


def test_missing_file():
    one_error_line(run_cli("analyze", "/nonexistent/clip.mp4"), "file not found")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    one_error_line(run_cli("analyze", tmp_path / "empty.mp4"), "empty")


def test_not_a_media_file(tmp_path):
    (tmp_path / "notes.mp4").write_text("these are not frames\n" * 100)
    one_error_line(run_cli("analyze", tmp_path / "notes.mp4"), "not a readable media file")


def test_corrupt_image(tmp_path):
    (tmp_path / "face.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    one_error_line(run_cli("analyze", tmp_path / "face.jpg"), "not a readable image")


def test_missing_separate_audio(demo_video, tmp_path):
    one_error_line(run_cli("analyze", demo_video, "--audio", tmp_path / "nope.wav"), "file not found")


def test_truncated_video_is_analysed_as_far_as_readable_then_fails(demo_video, tmp_path):
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(demo_video.read_bytes()[:300_000])
    proc = run_cli("analyze", cut, "--cues-only", "--quiet", "--jsonl", tmp_path / "out.jsonl")
    one_error_line(proc, "decoding stopped early")
    assert (tmp_path / "out.jsonl").read_text().count('"type": "cues"') >= 5


def test_no_camera():
    one_error_line(run_cli("live", "--camera", "9", "--no-audio"), "no camera at 9")


def test_nothing_to_analyze():
    one_error_line(run_cli("live", "--no-video", "--no-audio"), "nothing to analyze")


@pytest.mark.skipif(shutil.which("pulseaudio") is None, reason="pulseaudio is not installed")
def test_unknown_microphone(virtual_microphone):
    one_error_line(run_cli("live", "--no-video", "--mic", "no-such-mic"), "no microphone named 'no-such-mic'")


def test_no_microphone_message(monkeypatch):
    import sounddevice as sd

    from edge_xemo.io.sources import MicrophoneSource, SourceError

    monkeypatch.setattr(sd, "query_devices", lambda *a, **k: [])
    with pytest.raises(SourceError, match="no microphone found"):
        MicrophoneSource()


def test_bad_provider(demo_video):
    one_error_line(run_cli("analyze", demo_video, "--provider", "npu", "--cues-only", "--quiet"), "unknown provider")


def test_smooth_reaches_the_judgement_and_its_default_is_the_fitted_value(monkeypatch, demo_video):
    from typer.testing import CliRunner

    from edge_xemo import cli
    from edge_xemo.analyzer import analyzer_options

    runs = []
    monkeypatch.setattr(cli, "_run", lambda sources, **kw: runs.append(kw))  # the analysis itself is not under test
    for extra in ([], ["--smooth", "4"]):
        result = CliRunner().invoke(cli.app, ["analyze", str(demo_video), *extra])
        assert result.exit_code == 0, result.output
    assert [kw["smooth_s"] for kw in runs] == [None, 4.0]
    assert analyzer_options(smooth_s=4.0).judgement.time_constant_s == 4.0
    assert analyzer_options().judgement.time_constant_s is None  # JudgementOptions: None = the fitted value
    refused = CliRunner().invoke(cli.app, ["analyze", str(demo_video), "--smooth", "-1"])
    assert refused.exit_code != 0 and len(runs) == 2
