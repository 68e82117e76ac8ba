"""`edge-xemo eval` commands and the clip evaluation harness."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_xemo.eval.cli import eval_app
from edge_xemo.eval.datasets import Clip, load_manifest
from edge_xemo.eval.evaluation import ClipResult, emotion_metrics, evaluate_clips, write_report
from edge_xemo.core.models import ModelError

SHARED = Path(__file__).parents[2].parent / "shared" / "data"
SAMPLE = SHARED / "xemogpt_sample"
runner = CliRunner()

REF = {
    "s1": {"visual": ["smiling", "raised cheeks"], "auditory": ["loud voice", "subtitle text: hi"], "emotional": ["happiness"]},
    "s2": {"visual": ["furrowed brow"], "auditory": ["low, slow voice"], "emotional": ["sadness", "worry"]},
}


@pytest.fixture(scope="module")
def minilm():
    from edge_xemo.reasoning.embeddings import MiniLMEmbedder

    try:
        return MiniLMEmbedder.create_from_options()
    except ModelError as e:
        pytest.skip(f"MiniLM ONNX not installed: {e}")


def _write(tmp_path: Path, name: str, obj) -> Path:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_emocue360_identical_cues_score_one(tmp_path, minilm):
    ref = _write(tmp_path, "ref.json", REF)
    out = tmp_path / "scores.json"
    res = runner.invoke(eval_app, ["emocue360", "--pred-cues", str(ref), "--ref-cues", str(ref), "--json", str(out)])
    assert res.exit_code == 0, res.output
    scores = json.loads(out.read_text())
    for m in ("visual", "auditory", "emotional"):
        assert scores[m]["f1"] == pytest.approx(1.0, abs=1e-5)
    assert "EmoCue-360" in res.output


def test_emocue360_reports_name_mismatch_and_scores_the_rest(tmp_path, minilm):
    pred = {"s1": {"visual": ["a person in a car"], "auditory": [], "emotional": ["anger"]}, "extra": {"visual": []}}
    out = tmp_path / "scores.json"
    res = runner.invoke(eval_app, ["emocue360", "--pred-cues", str(_write(tmp_path, "p.json", pred)),
                                   "--ref-cues", str(_write(tmp_path, "r.json", REF)), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "1 names only in predictions, 1 only in references" in res.output
    scores = json.loads(out.read_text())
    assert scores["names"]["scored"] == 1
    assert scores["auditory"]["f1"] == 0.0  # empty prediction list
    assert 0.0 < scores["visual"]["f1"] < 0.6  # unrelated cue
    assert 0.0 < scores["emotional"]["f1"] < 1.0


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "is not valid JSON"), ('["a"]', "must be an object"), (None, "not found")],
)
def test_emocue360_bad_files_exit_2_with_one_line(tmp_path, content, message):
    bad = _write(tmp_path, "bad.json", content) if content is not None else tmp_path / "missing.json"
    ok = _write(tmp_path, "ok.json", REF)
    res = runner.invoke(eval_app, ["emocue360", "--pred-cues", str(bad), "--ref-cues", str(ok)])
    assert res.exit_code == 2
    assert message in res.output and res.output.strip().count("\n") == 0


def test_emocue360_from_descriptions_with_rule_extractor(tmp_path, minilm):
    pred = tmp_path / "pred.csv"
    pred.write_text('name,english\nc1,"In the video, she smiles. In the audio, her voice is loud. Therefore, she is happy."\n')
    ref = tmp_path / "ref.jsonl"
    ref.write_text(json.dumps({"name": "c1", "english": "In the video, a woman smiles broadly. In the audio, the voice "
                                                         "is loud and cheerful. Therefore, the emotional state is happy."}) + "\n")
    out, cues = tmp_path / "s.json", tmp_path / "cues.json"
    res = runner.invoke(eval_app, ["emocue360", "--pred", str(pred), "--ref", str(ref), "--json", str(out),
                                   "--save-cues", str(cues)])
    assert res.exit_code == 0, res.output
    saved = json.loads(cues.read_text())
    assert saved["pred"]["c1"]["emotional"] == ["happy"] and saved["ref"]["c1"]["emotional"] == ["happy"]
    scores = json.loads(out.read_text())
    assert scores["emotional"]["f1"] == pytest.approx(1.0, abs=1e-5)
    assert scores["visual"]["f1"] > 0.4


def test_emotion_metrics_exact():
    pairs = [("happy", "happy"), ("happy", "happy"), ("happy", "sad"), ("sad", None)]
    got = emotion_metrics(pairs)
    assert got["war"] == pytest.approx(2 / 4)
    assert got["uar"] == pytest.approx((2 / 3 + 0 / 1) / 2)
    assert got["confusion"] == {"happy": {"happy": 2, "sad": 1}, "sad": {"none": 1}}


def _clip_analyzer(row: Clip) -> ClipResult:
    """A stand-in analyzer (the harness is under test): explains from the subtitle it is given."""
    if row.name == "boom":
        raise RuntimeError("decoder crashed\nwith a traceback")
    return ClipResult(text="In the video, the woman smiles. In the audio, the voice is cheerful. "
                           "Therefore, the emotional state is happy.", latency_s=0.5, media_s=4.64)


def _manifest(tmp_path: Path) -> Path:
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} absent (../shared/data is not part of a fresh clone)")
    rows = [
        {"name": "s7", "video": str(SAMPLE / "sample_00000007.mp4"), "audio": str(SAMPLE / "sample_00000007.wav"),
         "subtitle": "Be there or be square. Oh, okay, goodbye.", "label": "happy",
         "description": "In the video, a woman in a qipao smiles while on the phone. In the audio, her voice is "
                        "cheerful. Therefore, the emotional state is happy."},
        {"name": "gone", "video": "no/such/clip.mp4", "label": "sad"},
        {"name": "boom", "video": str(SAMPLE / "sample_00000007.mp4"), "label": "sad"},
    ]
    p = tmp_path / "clips.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows))
    return p


def test_evaluate_clips_report(tmp_path, minilm):
    clips = load_manifest(_manifest(tmp_path))
    report = evaluate_clips(clips, _clip_analyzer, embed=minilm.embed)
    assert (report["n_rows"], report["n_evaluated"], report["n_skipped"], report["n_failed"]) == (3, 1, 1, 1)
    assert (report["layout"], report["skipped"]) == ("manifest", {"missing video": 1})
    assert report["skipped_examples"] == [f"line 2: video {tmp_path / 'no/such/clip.mp4'} missing"]
    assert report["failed"][0]["error"] == "RuntimeError: decoder crashed"
    assert report["emotion"]["war"] == 1.0 and report["emotion"]["n"] == 1
    assert report["latency_s"]["median"] == 0.5
    assert report["real_time_factor"]["median"] == pytest.approx(0.5 / 4.64)
    assert report["emocue360"]["emotional"]["f1"] == pytest.approx(1.0, abs=1e-5)
    assert 0.5 < report["emocue360"]["visual"]["f1"] < 1.0
    pytest.importorskip("matplotlib")
    paths = write_report(report, tmp_path / "out")
    assert {p.name for p in paths} == {"report.json", "report.md", "latency.png", "emocue360.png", "confusion.png"}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| visual |" in md and "| missing video | 1 |" in md and "clip.mp4 missing" in md


PROBING_ANALYZER = """from edge_xemo.eval.evaluation import ClipResult
from edge_xemo.io.sources import FileSource

def analyze_clip(clip):
    source = FileSource(clip.video or clip.audio)  # decodes the container: a corrupt file raises
    return ClipResult(text='In the video, a smile. Therefore, the emotional state is happy.', media_s=source.duration)
"""


@pytest.fixture
def probing_analyzer(tmp_path, monkeypatch) -> str:
    """A stand-in analyzer (the harness is under test) that opens each clip's real media."""
    (tmp_path / "probing_analyzer.py").write_text(PROBING_ANALYZER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "probing_analyzer:analyze_clip"


def test_clips_command(tmp_path, probing_analyzer, minilm):
    out = tmp_path / "rep"
    res = runner.invoke(eval_app, ["clips", str(_manifest(tmp_path)), "--out", str(out),
                                   "--analyzer", probing_analyzer, "--no-plots"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["n_evaluated"] == 2 and report["n_skipped"] == 1
    assert report["real_time_factor"]["n"] == 2  # the real clip's duration was read
    res = runner.invoke(eval_app, ["clips", str(tmp_path / "nope.csv"), "--analyzer", probing_analyzer])
    assert res.exit_code == 2 and "nope.csv does not exist" in res.output
    res = runner.invoke(eval_app, ["clips", str(_manifest(tmp_path)), "--analyzer", "no_such_module:f"])
    assert res.exit_code == 2 and "not available" in res.output


def test_clips_command_zero_usable_rows_one_line_error(tmp_path, probing_analyzer):
    m = tmp_path / "gone.csv"
    m.write_text("video,label\nclips/a.mp4,happy\nclips/b.mp4,sad\n")
    res = runner.invoke(eval_app, ["clips", str(m), "--analyzer", probing_analyzer, "--no-emocue"])
    assert res.exit_code == 2
    assert res.output.strip().count("\n") == 0
    assert f"no usable rows in {m}" in res.output.replace("\n", "") and "2 missing video" in res.output


def test_clips_command_label_folders_reports_skipped_and_failed(tmp_path, probing_analyzer):
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} absent (../shared/data is not part of a fresh clone)")
    root = tmp_path / "by_label"
    (root / "happy").mkdir(parents=True)
    (root / "sad").mkdir()
    shutil.copy(SAMPLE / "sample_00000007.mp4", root / "happy" / "s7.mp4")
    shutil.copy(SAMPLE / "sample_00000007.wav", root / "sad" / "s7.wav")
    (root / "happy" / "gone.mp4").symlink_to(tmp_path / "deleted.mp4")  # a missing entry
    (root / "sad" / "truncated.mp4").write_bytes(b"")  # corrupt: empty, the reader skips it
    (root / "sad" / "garbage.mp4").write_bytes(b"not a video container")  # corrupt: the analyzer fails on it
    out = tmp_path / "rep"
    res = runner.invoke(eval_app, ["clips", str(root), "--out", str(out), "--analyzer", probing_analyzer,
                                   "--no-emocue", "--no-plots"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert (report["layout"], report["n_rows"], report["n_evaluated"], report["n_failed"]) == ("folders", 5, 2, 1)
    assert report["skipped"] == {"empty video": 1, "missing video": 1} and report["n_skipped"] == 2
    assert report["skipped_examples"] == ["happy/gone.mp4: happy/gone.mp4 points to a missing file",
                                          "sad/truncated.mp4: sad/truncated.mp4 is empty"]
    assert report["failed"][0]["name"] == "sad/garbage"
    assert {c["name"] for c in report["clips"]} == {"happy/s7", "sad/s7"}
    per_class = report["emotion"]["per_class"]
    assert per_class["happy"]["recall"] == 1.0 and per_class["sad"]["recall"] == 0.0  # the stand-in always says happy
    md = (out / "report.md").read_text()
    assert "| missing video | 1 |" in md and "| empty video | 1 |" in md and "- happy/gone.mp4:" in md
    assert "2 clips evaluated, 2 skipped, 1 failed, of 5 rows" in md
    res = runner.invoke(eval_app, ["clips", str(root), "--media", str(tmp_path), "--analyzer", probing_analyzer])
    assert res.exit_code == 2 and "holds its own media" in res.output


def test_clips_command_emer_csv_needs_media(tmp_path, probing_analyzer):
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} absent (../shared/data is not part of a fresh clone)")
    emer = tmp_path / "emer.csv"
    emer.write_text("name,english\n"
                    "sample_00000007,\"In the video, a woman smiles. Therefore, the emotional state is happy.\"\n"
                    "sample_00000099,In the video a man frowns.\n")
    res = runner.invoke(eval_app, ["clips", str(emer), "--analyzer", probing_analyzer, "--no-emocue"])
    assert res.exit_code == 2 and "without media" in res.output and "emer.csv" in res.output
    out = tmp_path / "rep"
    res = runner.invoke(eval_app, ["clips", str(emer), "--media", str(SAMPLE), "--out", str(out),
                                   "--analyzer", probing_analyzer, "--no-emocue", "--no-plots"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert (report["layout"], report["n_evaluated"], report["skipped"]) == ("emer", 1, {"missing video": 1})
    assert report["clips"][0]["name"] == "sample_00000007"


def test_manifest_paths_resolve_against_media_and_labels_filter(tmp_path, probing_analyzer):
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} absent (../shared/data is not part of a fresh clone)")
    m = tmp_path / "m.csv"
    m.write_text("name,video,audio,label\n,sample_00000007.mp4,sample_00000007.wav,happy\n"
                 "s7_angry,sample_00000007.mp4,,angry\n,,sample_00000007.wav,sad\n")
    out = tmp_path / "rep"
    res = runner.invoke(eval_app, ["clips", str(m), "--media", str(SAMPLE), "--labels", "happy, sad",
                                   "--out", str(out), "--analyzer", probing_analyzer, "--no-emocue", "--no-plots"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    # line 4's name comes from its audio file: sample_00000007, already used by line 2
    assert report["skipped"] == {"duplicate name": 1, "unknown label": 1}
    assert [(c["name"], c["label"]) for c in report["clips"]] == [("sample_00000007", "happy")]
