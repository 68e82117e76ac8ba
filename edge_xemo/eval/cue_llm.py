"""Split a description into visual / auditory / emotional cue lists with an LLM (EmoCue-360's procedure).

Two back ends, the same prompt (an instruction, one worked example, then the description) and the same
answer shape (a JSON object with three lists of strings):
- a local GGUF through llama-cpp-python, constrained by a JSON-schema grammar (default: the SmolLM2-135M
  decoder artifact `decoder_smollm2`, or any GGUF path);
- an OpenAI-compatible chat endpoint that the user configures (base URL + model; stdlib urllib). This
  is the only network use in the project and happens only when `base_url` is set.
The subtitle is taken by the rule-based extractor (it is quoted text, not a cue).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from edge_xemo.core.models import ModelError, verified_path
from edge_xemo.eval.cue_extract import extract_cues

KEYS = ("visual", "auditory", "emotional")
SYSTEM_PROMPT = (
    "You split a description of a person's emotional state in a video into a JSON object with three lists of "
    'short, atomic statements: "visual" (what is seen: face, gaze, gestures, posture, scene), "auditory" '
    '(what is heard: tone, pitch, loudness, pace, pauses, laughter, the subtitle) and "emotional" (the '
    "emotions, moods and intentions the description infers). Use the description's own words; one feature "
    "per item; no item twice."
)
EXAMPLE_INPUT = (
    "In the video, a man frowns, his lips are pressed together and he looks away. In the audio, his voice "
    'is low and slow, with long pauses. In the text, the subtitle reads: "Fine, do what you want." '
    "Therefore, he feels disappointed and resigned."
)
EXAMPLE_OUTPUT = {
    "visual": ["man frowns", "lips pressed together", "looks away"],
    "auditory": ["low voice", "slow speech", "long pauses", "subtitle text: 'Fine, do what you want.'"],
    "emotional": ["disappointment", "resignation"],
}


@dataclass(frozen=True, slots=True)
class LLMExtractorOptions:
    """model_path: GGUF file (None: the `decoder_smollm2` artifact); threads: llama.cpp threads (1);
    n_ctx: context length (2048); max_tokens: answer budget (400); max_items: items per list, enforced
    by the grammar (8); few_shot: include the worked example (True); base_url: an OpenAI-compatible
    endpoint such as "http://localhost:8000/v1" (None: use the GGUF); model: the endpoint's model name;
    api_key_env: environment variable holding the endpoint's key, if any; timeout_s: endpoint timeout (60)."""

    model_path: str | None = None
    threads: int = 1
    n_ctx: int = 2048
    max_tokens: int = 400
    max_items: int = 8
    few_shot: bool = True
    base_url: str | None = None
    model: str | None = None
    api_key_env: str = "EDGE_XEMO_LLM_API_KEY"
    timeout_s: float = 60.0


def cue_schema(max_items: int) -> dict:
    lst = {"type": "array", "items": {"type": "string"}, "maxItems": max_items}
    return {"type": "object", "properties": {k: lst for k in KEYS}, "required": list(KEYS)}


def messages(text: str, few_shot: bool = True) -> list[dict]:
    out = [{"role": "system", "content": SYSTEM_PROMPT}]
    if few_shot:
        out += [
            {"role": "user", "content": EXAMPLE_INPUT},
            {"role": "assistant", "content": json.dumps(EXAMPLE_OUTPUT)},
        ]
    return out + [{"role": "user", "content": text}]


def parse_answer(content: str) -> dict:
    """The three cue lists from an LLM answer (JSON, optionally in a ``` fence); duplicates removed."""
    body = content.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(body, strict=False)  # a raw newline inside a string is still an answer
    except json.JSONDecodeError as e:
        raise ValueError(f"LLM cue answer is not valid JSON ({e.msg} at char {e.pos}): {body[:80]!r}") from e
    if not isinstance(data, dict):
        raise ValueError(f"LLM cue answer is a {type(data).__name__}, expected an object with {', '.join(KEYS)}")
    out = {}
    for k in KEYS:
        items = data.get(k, [])
        if not isinstance(items, list) or not all(isinstance(c, str) for c in items):
            raise ValueError(f"LLM cue answer field {k!r} is not a list of strings")
        seen, clean = set(), []
        for c in (c.strip() for c in items):
            if c and c.lower() not in seen:
                seen.add(c.lower())
                clean.append(c)
        out[k] = clean
    return out


class LLMCueExtractor:
    """`extract(text)` -> {"visual", "auditory", "emotional", "subtitle"} like `extract_cues`."""

    def __init__(self, options: LLMExtractorOptions = LLMExtractorOptions()):
        self.options = options
        self._llm = None
        if options.base_url and not options.model:
            raise ValueError("an OpenAI-compatible endpoint needs a model name (LLMExtractorOptions.model)")

    def _local(self):
        if self._llm is None:
            try:
                from llama_cpp import Llama
            except ImportError as e:
                raise RuntimeError("llama-cpp-python is required for the GGUF cue extractor") from e
            path = self.options.model_path or str(verified_path("decoder_smollm2"))
            if not os.path.exists(path):
                raise ModelError(f"GGUF model {path} not found")
            self._llm = Llama(model_path=path, n_ctx=self.options.n_ctx, n_threads=self.options.threads, verbose=False)
        return self._llm

    def _ask_local(self, text: str) -> str:
        out = self._local().create_chat_completion(
            messages=messages(text, self.options.few_shot),
            response_format={"type": "json_object", "schema": cue_schema(self.options.max_items)},
            temperature=0.0,
            max_tokens=self.options.max_tokens,
        )
        return out["choices"][0]["message"]["content"] or ""

    def _ask_endpoint(self, text: str) -> str:
        url = (self.options.base_url or "").rstrip("/") + "/chat/completions"
        body = {
            "model": self.options.model,
            "messages": messages(text, self.options.few_shot),
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.options.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.options.timeout_s) as resp:
                reply = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"cue endpoint {url} answered HTTP {e.code}: {e.reason}") from e
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise RuntimeError(f"cue endpoint {url} unreachable: {getattr(e, 'reason', e)}") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"cue endpoint {url} returned non-JSON: {e.msg}") from e
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as e:
            raise ValueError(f"cue endpoint {url} reply lacks choices[0].message.content") from e

    def extract(self, text: str) -> dict:
        if not isinstance(text, str):
            raise ValueError(f"LLMCueExtractor.extract expects a description string, got {type(text).__name__}")
        if not text.strip():
            return {"visual": [], "auditory": [], "emotional": [], "subtitle": None}
        content = self._ask_endpoint(text) if self.options.base_url else self._ask_local(text)
        cues = parse_answer(content)
        cues["subtitle"] = extract_cues(text)["subtitle"]
        return cues

    __call__ = extract
