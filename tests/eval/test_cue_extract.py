"""Cue extraction: the rule-based splitter on written and real (EMER-V2) descriptions; the LLM client."""

from __future__ import annotations

import csv
import http.server
import json
import threading
from pathlib import Path

import pytest

from edge_xemo.eval.cue_extract import emotion_label, extract_cues
from edge_xemo.eval.cue_llm import LLMCueExtractor, LLMExtractorOptions, parse_answer

SHARED = Path(__file__).parents[2].parent / "shared" / "data"
EMER_CSV = SHARED / "emer_v2" / "emer_v2_dev.csv"

EDGE_STYLE = (
    "In the video, the woman smiles with raised cheeks and her head tilts slightly. In the audio, the voice is "
    "loud and fast; the pitch is high. Therefore, the emotional state is happy and excited."
)
EMER_STYLE = (
    "In the video, the opening scene shows a man in a suit. His facial expression appears serious, with a "
    "slightly furrowed brow, slightly downturned mouth, and slightly open mouth. This may indicate that he is "
    "frustrated. In the audio, the character's tone is raised, with a hint of laughter, indicating impatience. "
    "In the text, the subtitle reads: \"How would I know, really?\" This sentence may be a reply. Based on the "
    "serious expression in the video and the raised tone in the audio, we can infer that this sentence carries "
    "a sense of dissatisfaction. Therefore, it expresses the man's anger and impatience."
)


def test_edge_style_description():
    cues = extract_cues(EDGE_STYLE)
    assert cues == {
        "visual": ["woman smiles with raised cheeks", "her head tilts slightly"],
        "auditory": ["voice is loud and fast", "pitch is high"],
        "emotional": ["happy", "excited"],
        "subtitle": None,
    }
    assert emotion_label(cues["emotional"]) == "happy"


def test_emer_style_description_splits_sections_and_atomic_cues():
    cues = extract_cues(EMER_STYLE)
    assert cues["subtitle"] == "How would I know, really?"
    assert "slightly furrowed brow" in cues["visual"]
    assert "slightly downturned mouth" in cues["visual"]
    assert "slightly open mouth" in cues["visual"]
    assert "man in a suit" in cues["visual"]
    # interpretation ("This may indicate ...", "indicating ...") is not a perceptual cue
    assert not any("frustrated" in c or "impatience" in c for c in cues["visual"] + cues["auditory"])
    assert cues["auditory"] == ["character's tone is raised", "hint of laughter"]
    # the conclusion's inferred emotions, not the cue recap before "we can infer"
    assert cues["emotional"][:3] == ["sense of dissatisfaction", "anger", "impatience"]
    assert "serious" not in cues["emotional"]
    assert emotion_label(cues["emotional"]) == "angry"


def test_empty_and_unstructured_text():
    assert extract_cues("") == {"visual": [], "auditory": [], "emotional": [], "subtitle": None}
    assert extract_cues("a man frowning, lips pressed")["visual"] == ["man frowning", "lips pressed"]
    with pytest.raises(ValueError, match="description string"):
        extract_cues(None)
    assert emotion_label(["a person at a desk"]) is None


@pytest.fixture(scope="module")
def emer_rows() -> list[dict]:
    if not EMER_CSV.exists():
        pytest.skip(f"{EMER_CSV} absent (../shared/data is not part of a fresh clone)")
    with open(EMER_CSV, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_all_emer_rows_give_cues(emer_rows):
    results = [extract_cues(r["english"]) for r in emer_rows]
    n = len(results)
    assert sum(bool(c["visual"]) for c in results) >= 0.98 * n
    no_audio_cue = ("In the audio, it is impossible", "In the audio, it is not possible")
    informative = [c for r, c in zip(emer_rows, results) if not any(s in r["english"] for s in no_audio_cue)]
    assert sum(bool(c["auditory"]) for c in informative) >= 0.95 * len(informative)
    assert len(informative) >= 0.9 * n
    assert sum(bool(c["emotional"]) for c in results) >= 0.98 * n
    assert sum(emotion_label(c["emotional"]) is not None for c in results) >= 0.95 * n
    quoted = [c for r, c in zip(emer_rows, results) if "subtitle" in r["english"] and '"' in r["english"]]
    assert sum(c["subtitle"] is not None for c in quoted) >= 0.95 * len(quoted)
    for c in results:  # atomic cues are short phrases, never whole paragraphs or section markers
        for cue in c["visual"] + c["auditory"]:
            assert len(cue) < 300 and not cue.lower().startswith(("in the video", "in the audio", "in the text"))


def test_parse_answer_validates_and_dedupes():
    got = parse_answer('```json\n{"visual": ["smile", "Smile", " "], "auditory": [], "emotional": ["joy"]}\n```')
    assert got == {"visual": ["smile"], "auditory": [], "emotional": ["joy"]}
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_answer('{"visual": [')
    with pytest.raises(ValueError, match="'auditory' is not a list of strings"):
        parse_answer('{"visual": [], "auditory": "loud"}')


class _ChatHandler(http.server.BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _ChatHandler.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        answer = {"visual": ["smile"], "auditory": ["loud voice", "loud voice"], "emotional": ["joy"]}
        data = json.dumps({"choices": [{"message": {"content": json.dumps(answer)}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_compatible_endpoint_on_loopback(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _ChatHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("EDGE_XEMO_LLM_API_KEY", "k123")
        url = f"http://127.0.0.1:{server.server_port}/v1"
        cues = LLMCueExtractor(LLMExtractorOptions(base_url=url, model="m")).extract(EMER_STYLE)
    finally:
        server.shutdown()
    assert cues == {"visual": ["smile"], "auditory": ["loud voice"], "emotional": ["joy"],
                    "subtitle": "How would I know, really?"}
    req = _ChatHandler.requests[-1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer k123"
    assert req["body"]["model"] == "m" and req["body"]["messages"][-1]["content"] == EMER_STYLE


def test_unreachable_endpoint_is_one_clear_error():
    ex = LLMCueExtractor(LLMExtractorOptions(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=2))
    with pytest.raises(RuntimeError, match="unreachable"):
        ex.extract("In the video, a smile.")
    with pytest.raises(ValueError, match="model name"):
        LLMCueExtractor(LLMExtractorOptions(base_url="http://127.0.0.1:9/v1"))


@pytest.mark.slow
def test_gguf_extractor_answers_the_schema():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from edge_xemo.core.models import ModelError

    try:
        ex = LLMCueExtractor(LLMExtractorOptions(max_tokens=160, max_items=4))
        cues = ex.extract(EDGE_STYLE)
    except ModelError as e:
        pytest.skip(f"SmolLM2 GGUF not installed: {e}")
    assert set(cues) == {"visual", "auditory", "emotional", "subtitle"}
    assert all(isinstance(c, str) for k in ("visual", "auditory", "emotional") for c in cues[k])
    assert all(len(cues[k]) <= 4 for k in ("visual", "auditory", "emotional"))
    assert cues["visual"] or cues["auditory"] or cues["emotional"]
