"""The decoder's prompt (XEmoGPT layout in the SmolLM2 chat template) and the explanation format.

A prompt is a list of `Segment`s: text pieces and embedding slots (`video`, `audio`) where the
projected bridge tokens go. The first segment is always `PROMPT_PREFIX` (system message and the
start of the user turn); it is identical for every window, so the decoder evaluates it once and
reuses its KV cache. The prompt ends with the start of the assistant turn and `ANSWER_PREFIX`,
so the model continues an explanation of the form produced by `format_explanation`:

    In the video, smiling, raised cheeks. In the audio, high pitch, fast speech.
    Therefore, the emotional state is happy.

Training (train/) and runtime must agree on this: tokenize each text segment on its own, without
a BOS token, special tokens (`<|im_start|>`, `<|im_end|>`) parsed; the training target is
`training_target(...)`. User-supplied text (cues, subtitle) is sanitized so that it cannot open or
close a chat turn or a tag.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ..core.types import EMOTIONS, ModalityResult, Problem, ResultCode
from .judgement import Judgement, Outcome

SYSTEM = (
    "You are an emotion analyst. You receive a short clip of a person as video tokens, audio "
    "tokens, measured cues and sometimes a subtitle. Explain which cues you see in the video and "
    "hear in the audio, then name the emotional state. Answer in exactly this form: "
    '"In the video, <visual cues>. In the audio, <vocal cues>. Therefore, the emotional state is '
    '<label>." The label is one of: ' + ", ".join(EMOTIONS) + ". Only mention cues that are given."
)
PROMPT_PREFIX = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
"""Static prompt prefix (same for every window; its KV cache is reused)."""
ANSWER_PREFIX = "In the video,"
"""The assistant turn starts with this text: the prompt ends with it, the model continues it."""
LABEL_LEAD = "Therefore, the emotional state is"
"""Text after which the decoder scores the labels (its next-token probabilities)."""
END = "<|im_end|>"
MAX_SUBTITLE_CHARS = 400
MAX_CUES = 12
MAX_CUE_CHARS = 80
NO_VISUAL = "no visual cues are available"
NO_AUDIO = "no vocal cues are available"

SLOTS = ("video", "audio")
_TAG = re.compile(r"<\|[^|>]*\|>|</?\s*(video|audio|subtitle)\s*>", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


class NothingToExplain(ValueError):
    """A prompt would hold no cues, no subtitle and no tokens."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of a prompt: `kind` "text" (with `text`) or an embedding slot "video" / "audio"."""

    kind: str
    text: str = ""

    @property
    def is_slot(self) -> bool:
        return self.kind in SLOTS


def clean_text(text: str | bytes | None, max_chars: int | None = None) -> tuple[str, list[str]]:
    """Sanitize user text: decode bytes (invalid UTF-8 replaced), drop control characters and
    chat/tag markers, collapse whitespace, truncate at a word boundary. Returns (text, notes)."""
    notes: list[str] = []
    if text is None:
        return "", notes
    if isinstance(text, bytes):
        decoded = text.decode("utf-8", errors="replace")
        if "\ufffd" in decoded:
            notes.append("non-UTF-8 bytes replaced")
        text = decoded
    elif not isinstance(text, str):
        raise ValueError(f"text must be str or bytes, got {type(text).__name__}")
    # lone surrogates (e.g. from surrogateescape decoding) cannot be tokenized
    fixed = text.encode("utf-8", errors="replace").decode("utf-8")
    if fixed != text:
        notes.append("invalid characters replaced")
        text = fixed
    stripped = _TAG.sub(" ", text)
    if stripped != text:
        notes.append("markup removed")
        text = stripped
    text = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    text = _SPACES.sub(" ", text).strip()
    if max_chars is not None and len(text) > max_chars:
        cut = text[:max_chars]
        space = cut.rfind(" ")
        text = (cut[:space] if space > max_chars // 2 else cut).rstrip(" ,;.") + " ..."
        notes.append(f"truncated to {max_chars} characters")
    return text, notes


def clean_cues(cues: list[str], max_chars: int = MAX_CUE_CHARS) -> tuple[list[str], list[str]]:
    """Cue phrases as the prompt lists them: each cleaned (`clean_text`, at most `max_chars`) without
    a trailing full stop, empty ones dropped, repeats (ignoring case) kept once. Returns (cues, notes)."""
    out: list[str] = []
    notes: list[str] = []
    for cue in cues:
        text, n = clean_text(cue, max_chars)
        notes.extend(n)
        text = text.rstrip(" .")
        if text and text.lower() not in (c.lower() for c in out):
            out.append(text)
    return out, notes


def _cue_list(cues: list[str], what: str, notes: list[str]) -> list[str]:
    out, n = clean_cues(cues)
    notes.extend(f"{what} cue: {x}" for x in n)
    if len(out) > MAX_CUES:
        notes.append(f"{what} cues: kept the first {MAX_CUES} of {len(out)}")
        out = out[:MAX_CUES]
    return out


def build_prompt_with_notes(
    visual_cues: list[str],
    auditory_cues: list[str],
    subtitle: str | bytes | None,
    has_video_tokens: bool,
    has_audio_tokens: bool,
) -> tuple[list[Segment], list[str]]:
    """`build_prompt` plus the list of what had to be cleaned or truncated in the input."""
    notes: list[str] = []
    visual = _cue_list(list(visual_cues), "visual", notes)
    audio = _cue_list(list(auditory_cues), "vocal", notes)
    sub, n = clean_text(subtitle, MAX_SUBTITLE_CHARS)
    notes.extend(f"subtitle: {x}" for x in n)
    if not (visual or audio or sub or has_video_tokens or has_audio_tokens):
        raise NothingToExplain("nothing to explain: no visual cues, no vocal cues, no subtitle and no tokens")
    segments = [Segment("text", PROMPT_PREFIX)]
    pending = ""
    if has_video_tokens:
        segments += [Segment("text", "<Video>"), Segment("video")]
        pending = "</Video>\n"
    if has_audio_tokens:
        segments += [Segment("text", pending + "<Audio>"), Segment("audio")]
        pending = "</Audio>\n"
    body = (
        pending
        + "Visual cues: "
        + (", ".join(visual) if visual else "none")
        + ".\nVocal cues: "
        + (", ".join(audio) if audio else "none")
        + ".\n"
    )
    if sub:
        body += f"<Subtitle>{sub}</Subtitle>\n"
    body += f"Explain the emotional state.{END}\n<|im_start|>assistant\n{ANSWER_PREFIX}"
    segments.append(Segment("text", body))
    return segments, notes


def build_prompt(
    visual_cues: list[str],
    auditory_cues: list[str],
    subtitle: str | None,
    has_video_tokens: bool,
    has_audio_tokens: bool,
) -> list[Segment]:
    """The prompt for one window: `PROMPT_PREFIX`, the token slots, cue text, subtitle, answer start.

    Raises NothingToExplain (a ValueError) when there are no cues, no subtitle and no tokens.
    """
    return build_prompt_with_notes(visual_cues, auditory_cues, subtitle, has_video_tokens, has_audio_tokens)[0]


def render(segments: list[Segment]) -> str:
    """The prompt as one string, slots shown as `[video tokens]` / `[audio tokens]` (for logs)."""
    return "".join(s.text if not s.is_slot else f"[{s.kind} tokens]" for s in segments)


def format_explanation(visual_cues: list[str], auditory_cues: list[str], label: str) -> str:
    """The explanation text we want from the decoder (also the training target, see module doc)."""
    if label not in EMOTIONS:
        raise ValueError(f"unknown emotion label {label!r}; choose one of {', '.join(EMOTIONS)}")
    visual = ", ".join(c.strip().rstrip(".") for c in visual_cues if c.strip()) or NO_VISUAL
    audio = ", ".join(c.strip().rstrip(".") for c in auditory_cues if c.strip()) or NO_AUDIO
    return f"{ANSWER_PREFIX} {visual}. In the audio, {audio}. {LABEL_LEAD} {label}."


_NO_VISUAL = {
    ResultCode.NO_FACE: "no face is visible",
    ResultCode.FACE_TOO_SMALL: "the face is too small to read",
    ResultCode.NO_FRAMES: NO_VISUAL,
    ResultCode.NO_VISIBLE_CUE: "no clear facial cue",
}
_NO_VOCAL = {
    ResultCode.SILENCE: "no speech is heard",
    ResultCode.NO_SPEECH: "no speech is heard",
    ResultCode.NO_AUDIO: "no speech is heard",
    ResultCode.TOO_LITTLE_SPEECH: "too little speech to judge",
    ResultCode.NOISE: "only noise is heard",
    ResultCode.NO_CLEAR_VOCAL_CUE: "no clear vocal cue",
    ResultCode.LEARNING_BASELINE: "no clear vocal cue yet (the speaker's usual voice is still being learned)",
    ResultCode.VOICE_ELSEWHERE: "no voice of theirs is heard (it is another person's, or whose cannot be told)",
}


def render_sections(
    visual_cues: list[str],
    auditory_cues: list[str],
    visual: ModalityResult | None = None,
    auditory: ModalityResult | None = None,
) -> str:
    """The cue sections of an explanation written from perception: each section lists only its own
    modality's cue phrases (cleaned, as given); an empty one says why from its result's code."""

    def section(cues, result, reasons, default):
        if cues:
            return ", ".join(cues[:MAX_CUES])
        return reasons.get(result.code, default) if result is not None else default

    return (
        f"{ANSWER_PREFIX} {section(visual_cues, visual, _NO_VISUAL, NO_VISUAL)}. "
        f"In the audio, {section(auditory_cues, auditory, _NO_VOCAL, NO_AUDIO)}."
    )


def conclude(judgement: Judgement) -> str:
    """What follows `LABEL_LEAD`: the judged label, the cues that carried it, or why the judgement is unsure."""
    if judgement.outcome is Outcome.CONFIDENT:
        shown = f", shown by {' and '.join(judgement.carried_by)}" if judgement.carried_by else ""
        return f" {judgement.label}{shown}."
    return f" {judgement.label}{doubt(judgement)}."


def doubt(judgement: Judgement) -> str:
    """How a conclusion says the judgement is unsure ("" when it is confident)."""
    if judgement.outcome is Outcome.CONFIDENT:
        return ""
    why = "the cues point different ways" if judgement.outcome is Outcome.SOURCES_DISAGREE else "the evidence is weak"
    return f", but {why}"


def training_target(visual_cues: list[str], auditory_cues: list[str], label: str) -> str:
    """What follows the prompt in a training sequence: the explanation after `ANSWER_PREFIX` + END."""
    return format_explanation(visual_cues, auditory_cues, label)[len(ANSWER_PREFIX) :] + END


_SPLIT = re.compile(r"\s*(?:,|;|\band\b)\s*")
_VIDEO = re.compile(r"in the video,?", re.IGNORECASE)
_AUDIO = re.compile(r"in the audio,?", re.IGNORECASE)
_LEAD = re.compile(r"\b(?:therefore|thus|overall)\b,?", re.IGNORECASE)
_STATE = re.compile(
    r"(?:(?:the|his|her|their) )?emotional state (?:is|was|seems to be|appears to be)\s+([a-z]+)", re.IGNORECASE
)
_ALIASES = {
    "surprised": "surprise",
    "anger": "angry",
    "fearful": "fear",
    "scared": "fear",
    "disgusted": "disgust",
    "happiness": "happy",
    "sadness": "sad",
    "worry": "worried",
}
_NONE = re.compile(r"^(?:no|none|nothing)\b", re.IGNORECASE)


def split_cues(section: str) -> list[str]:
    """Cue phrases of a comma/semicolon/"and" separated text; [] for "none", "no ..." or empty."""
    section = section.strip().rstrip(".").strip()
    if not section or _NONE.match(section):
        return []
    return [c for c in (x.strip(" .") for x in _SPLIT.split(section)) if c]


def parse_explanation(text: str) -> tuple[list[str], list[str], str | None, list[Problem]]:
    """Split an explanation into (visual_cues, auditory_cues, label or None, problems).

    `problems` is empty for a well-formed explanation; otherwise it names what is missing or wrong
    (no video section, no audio section, no label, a label outside EMOTIONS, repeated text).
    """
    problems: list[Problem] = []
    text = text.replace(END, " ").strip()
    v = _VIDEO.search(text)
    a = _AUDIO.search(text, v.end() if v else 0)
    s = _STATE.search(text)
    if v is None:
        problems.append(Problem.NO_VIDEO_SECTION)
    if a is None:
        problems.append(Problem.NO_AUDIO_SECTION)
    label = None
    if s is None:
        problems.append(Problem.NO_EMOTIONAL_STATE)
    else:
        word = s.group(1).lower()
        word = _ALIASES.get(word, word)
        if word in EMOTIONS:
            label = word
        else:
            problems.append(Problem.UNKNOWN_LABEL)

    def section(start, stop_candidates):
        stops = [m for m in stop_candidates if m is not None and m >= start]
        return text[start : min(stops) if stops else len(text)]

    lead = _LEAD.search(text, a.end() if a else (v.end() if v else 0))
    # a section also ends where the sentence that names the emotional state begins
    state_sentence = text.rfind(".", 0, s.start()) + 1 if s else None
    ends = [a.start() if a else None, lead.start() if lead else None, state_sentence, s.start() if s else None]
    visual = split_cues(section(v.end(), ends)) if v else []
    auditory = split_cues(section(a.end(), ends[1:])) if a else []
    if repeated_text(text):
        problems.append(Problem.REPETITION_LOOP)
    if len(visual) != len(set(visual)) or len(auditory) != len(set(auditory)):
        problems.append(Problem.REPEATED_CUES)
    return visual, auditory, label, problems


def repeated_text(text: str, min_len: int = 8, times: int = 3) -> bool:
    """True if some span of at least `min_len` characters repeats `times` times back to back."""
    return re.search(r"(.{%d,}?)\1{%d,}" % (min_len, times - 1), text, re.DOTALL) is not None
