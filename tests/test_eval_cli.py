"""`edge-xemo eval` commands and the clip evaluation harness."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edge_xemo.cli_eval import eval_app
from edge_xemo.evaluation import ClipResult, ClipRow, emotion_metrics, evaluate_clips, load_manifest, write_report
from edge_xemo.models import ModelError

SHARED = Path(__file__).parents[1].parent / "shared" / "data"
SAMPLE = SHARED / "xemogpt_sample"
runner = CliRunner()

REF = {
    "s1": {"visual": ["smiling", "raised cheeks"], "auditory": ["loud voice", "subtitle text: hi"], "emotional": ["happiness"]},
    "s2": {"visual": ["furrowed brow"], "auditory": ["low, slow voice"], "emotional": ["sadness", "worry"]},
}


@pytest.fixture(scope="module")
def minilm():
    from edge_xemo.embeddings import MiniLMEmbedder

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


def _clip_analyzer(row: ClipRow) -> ClipResult:
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
    rows = load_manifest(_manifest(tmp_path))
    assert rows[1].video == tmp_path / "no/such/clip.mp4"
    report = evaluate_clips(rows, _clip_analyzer, embed=minilm.embed)
    assert (report["n_rows"], report["n_evaluated"], report["n_skipped"], report["n_failed"]) == (3, 1, 1, 1)
    assert "not found" in report["skipped"][0]["reason"]
    assert report["failed"][0]["error"] == "RuntimeError: decoder crashed"
    assert report["emotion"]["war"] == 1.0 and report["emotion"]["n"] == 1
    assert report["latency_s"]["median"] == 0.5
    assert report["real_time_factor"]["median"] == pytest.approx(0.5 / 4.64)
    assert report["emocue360"]["emotional"]["f1"] == pytest.approx(1.0, abs=1e-5)
    assert 0.5 < report["emocue360"]["visual"]["f1"] < 1.0
    pytest.importorskip("matplotlib")
    paths = write_report(report, tmp_path / "out")
    assert {p.name for p in paths} == {"report.json", "report.md", "latency.png", "emocue360.png", "confusion.png"}
    assert "| visual |" in (tmp_path / "out" / "report.md").read_text()


def test_clips_command(tmp_path, monkeypatch, minilm):
    mod = tmp_path / "my_analyzer.py"
    mod.write_text("from edge_xemo.evaluation import ClipResult\n"
                   "def analyze_clip(row):\n"
                   "    return ClipResult(text='In the video, a smile. Therefore, the emotional state is happy.')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "rep"
    res = runner.invoke(eval_app, ["clips", str(_manifest(tmp_path)), "--out", str(out),
                                   "--analyzer", "my_analyzer:analyze_clip", "--no-plots"])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert report["n_evaluated"] == 2 and report["n_skipped"] == 1
    res = runner.invoke(eval_app, ["clips", str(tmp_path / "nope.csv"), "--analyzer", "my_analyzer:analyze_clip"])
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(eval_app, ["clips", str(_manifest(tmp_path)), "--analyzer", "no_such_module:f"])
    assert res.exit_code == 2 and "not available" in res.output


def test_csv_manifest_paths_and_header(tmp_path):
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    m = tmp_path / "m.csv"
    m.write_text("video,audio,label,description\nclips/a.mp4,,happy,\n,,sad,\n")
    rows = load_manifest(m)
    assert rows[0] == ClipRow(name="a", video=tmp_path / "clips" / "a.mp4", label="happy")
    assert rows[1].video is None and rows[1].name == "row1"
    report = evaluate_clips(rows, lambda row: ClipResult(text=""))
    assert report["skipped"] == [{"name": "row1", "reason": "no video or audio path"}]
    assert report["emotion"]["war"] == 0.0  # no label in an empty explanation: counted wrong, not dropped
    bad = tmp_path / "bad.csv"
    bad.write_text("clip,mood\nx.mp4,happy\n")
    with pytest.raises(ValueError, match="'video' or 'audio' column"):
        load_manifest(bad)
