"""Split an emotion description into atomic visual, auditory and emotional cues (rule-based).

Descriptions follow the EMER / XEmoGPT shape: "In the video, ... In the audio, ... In the text, the
subtitle reads: "..." ... Based on ..., we can infer ... Therefore, ...". `extract_cues` returns

    {"visual": [...], "auditory": [...], "emotional": [...], "subtitle": str | None}

Visual and auditory cues are the descriptive clauses of their sections, split on commas, semicolons and
coordinated noun phrases ("slightly furrowed brow", "raised eyebrows"). Interpretive clauses
("indicating that ...", "This may suggest ...") and the conclusion feed the emotional list, which holds
the emotion terms they name ("happiness", "anticipation", "sense of concern"). `emotion_label` maps an
emotional list onto the label set of `edge_xemo.core.types.EMOTIONS`.
"""

from __future__ import annotations

import re

_QUOTE = re.compile(r"\"[^\"]*\"|“[^”]*”")
_SECTION = re.compile(r"^(?:Input:\s*)?In the (video|audio|text)\b\s*(?:clues?)?\s*,?\s*")
_CONCLUSION_START = re.compile(
    r"^(?:based on|therefore|thus|hence|so,|in summary|in conclusion|to sum up|overall,? (?:we|it|the \w+ (?:may|is))"
    r"|combin(?:ed|ing)"
    r"|considering|taking (?:these|all|into)|integrating|from (?:the|these) (?:above|clues)|given)\b",
    re.IGNORECASE,
)
_INTERPRETIVE_SENTENCE = re.compile(
    r"^(?:this|these|that|such)\b[^,]*?\b(?:may|might|could|indicat\w*|suggest\w*|impl\w*|shows?|reflects?|"
    r"reveals?|means?|is (?:usually|often|a sign|typically))\b"
    r"|^(?:it can be|we can (?:infer|deduce|conclude|speculate)|it is (?:possible|likely)|possibly|perhaps)\b"
    r"|\b(?:infer|inferred|deduce|deduced|speculate|speculated|conclude|concluded|can be felt that)\b"
    r"|^(?:he|she|they|it|the \w+(?: \w+)?) (?:may|might|could) (?:be|have|feel|want)\b",
    re.IGNORECASE,
)
_INTERPRETIVE_CLAUSE = re.compile(
    r",?\s*\b(?:(?:which|that|this)\s+(?:may|might|could|can|usually|often|further)?\s*"
    r"(?:indicates?|suggests?|implies|imply|shows?|reveals?|reflects?|conveys?|means?|is (?:usually|often|a sign))"
    r"|(?:possibly|perhaps|probably|likely|seemingly)\s+(?:indicating|suggesting|showing|expressing|reflecting)"
    r"|which (?:is|are|was|may|might|could|can|usually|often|further|makes?)"
    r"|and (?:conveys|expresses|shows|reflects|suggests|indicates|implies|reveals)"
    r"|giving (?:the|an) impression|indicating|suggesting|implying|revealing|reflecting|conveying|expressing"
    r"|showing that|as if"
    r"|displaying (?:a|an|her|his|their)? ?(?:\w+ )?(?:emotion|mood|state|feeling))\b",
    re.IGNORECASE,
)
_INFERENCE = re.compile(
    r"\b(?:we|it|one)\s+(?:can|could|may|might)\s+(?:be\s+)?(?:\w+\s+)?"
    r"(?:infer(?:red)?|deduced?|conclude[d]?|speculated?|see[n]?|judged?|determined?)\b(?:\s+that)?",
    re.IGNORECASE,
)
_TIME = (
    r"(?:(?:in|at|during|towards?|by) the (?:very )?(?:beginning|start|end|middle|opening|following|next|final|last|"
    r"latter|first|second|later|early|initial)(?: (?:scene|scenes|shot|shots|part|stage|moment|frames?|image|images))?"
    r"(?: of the (?:video|clip|scene|speech|audio|conversation|dialogue))?"
    r"|as (?:time|the video|the scene|the clip|the conversation) (?:goes on|passes|progresses|continues)"
    r"|over time|initially|at first|later(?: on)?|then|afterwards|finally|subsequently|meanwhile|however|additionally|"
    r"furthermore|moreover|also|at the same time|while speaking|throughout the (?:video|clip|scene)|in the video)"
)
_TIME_PREFIX = re.compile(r"^" + _TIME + r"\s*,?\s+(?!of\b)", re.IGNORECASE)
_TIME_ONLY = re.compile(_TIME, re.IGNORECASE)
_HEDGED_CLAUSE = re.compile(r",\s*(?:possibly|perhaps|seemingly|probably|likely|apparently)\b", re.IGNORECASE)
_EMOTION_CLAUSE = re.compile(r"\bemotional state\b|\bemotions?\b", re.IGNORECASE)
_META = re.compile(
    r"\b(?:difficult|impossible|hard|not possible|unable|cannot|can't) to"
    r" (?:determine|judge|tell|interpret|discern|infer)"
    r"|\b(?:more|additional) (?:contextual )?(?:information|context)|\black of (?:obvious|clear|more|sufficient)"
    r"|\baccurate analysis\b|\bcannot be (?:provided|determined|judged)|^we mainly analy[sz]e\b",
    re.IGNORECASE,
)
_LEAD_FILLER = re.compile(
    r"^(?:and|but|with|overall|while|as well as|along with|accompanied by|together with|then|also|or|a|an|the"
    r"|we (?:can )?(?:see|sense|hear|notice)(?: that)?|there (?:is|are)"
    r"|(?:screen|scene|video|opening scene|image|camera) (?:shows|captures|displays))\s+",
    re.IGNORECASE,
)
_AND_SPLIT = re.compile(r"\s+(?:and|as well as|while)\s+(?=(?:a|an|the|his|her|their|its|some|slightly|slight)\b)")
_FILLER_ONLY = re.compile(
    r"^(?:(?:in )?the \w+ scenes?|scenes?|at the \w+|the character|the person|overall|however|etc)$", re.IGNORECASE
)

_INTENSITY = (
    r"(?:(?:a|an)\s+)?(?:(?:slight|slightly|strong|deep|great|certain|hint of|sense of|touch of|bit of|tone of"
    r"|feeling of|mix of|trace of|mild|extreme|intense|obvious|clear|some)\s+(?:of\s+)?)*"
)
EMOTION_TERMS: dict[str, str] = {}
"""Emotion words (lower case) -> the label of `edge_xemo.core.types.EMOTIONS` they point to."""
for _label, _words in {
    "happy": "happy happiness happily joy joyful joyous pleasure pleased pleasant delight delighted cheerful cheer "
    "glad contentment satisfaction satisfied excited excitement enthusiasm enthusiastic amusement amused "
    "elation elated gratitude grateful relief relieved pride proud love affection warmth friendliness humor humorous "
    "playful playfulness teasing anticipation hope hopeful optimism optimistic admiration appreciation enjoyment "
    "positive lively",
    "sad": "sad sadness sorrow sorrowful grief grieving unhappy unhappiness disappointment disappointed despair "
    "melancholy melancholic depressed depression helpless helplessness hurt heartbroken regret regretful guilt guilty "
    "remorse remorseful loneliness lonely gloomy upset pain pained crying sobbing distress distressed downcast "
    "sympathy pity resignation grievance",
    "angry": "angry anger anguish furious fury rage irritation irritated annoyed annoyance dissatisfaction "
    "dissatisfied displeasure displeased frustration frustrated impatience impatient resentment resentful hostility "
    "hostile aggression aggressive indignation indignant outrage blame accusation accusatory reproach provocation "
    "mocking sarcasm sarcastic contempt discontent agitated agitation hatred stern sternness complaint grievous "
    "criticism threatening threat",
    "surprise": "surprise surprised astonishment astonished amazement amazed shock shocked startled disbelief",
    "fear": "fear fearful afraid scared fright frightened terror terrified panic panicked horror dread",
    "disgust": "disgust disgusted repulsion revulsion aversion distaste",
    "worried": "worry worried worries concern concerned anxiety anxious nervous nervousness unease uneasy uneasiness "
    "tension tense apprehension apprehensive doubt doubtful suspicion suspicious uncertainty uncertain confusion "
    "confused puzzled puzzlement hesitation hesitant embarrassment embarrassed shyness shy awkward awkwardness "
    "pressure vigilance vigilant alertness pessimism pessimistic urgency questioning",
    "neutral": "neutral calm calmness composed composure serious seriousness indifference indifferent thoughtful "
    "contemplative contemplation focused determination determined resolute confident confidence sincere "
    "sincerity curiosity curious",
}.items():
    for _w in _words.split():
        EMOTION_TERMS.setdefault(_w, _label)
_EMOTION_RE = re.compile(
    _INTENSITY + r"\b(" + "|".join(sorted(map(re.escape, EMOTION_TERMS), key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_STATE_IS = re.compile(r"\bemotional state (?:is|was|seems to be|appears to be)\s+([^.;]+)", re.IGNORECASE)


def _clean_source(text: str) -> str:
    """Undo dataset artefacts: "Input: ... Output: ..." pairs, doubled quotes, missing spaces after '.'."""
    text = text.replace('""', '"').strip()
    if "Output:" in text:
        head, _, tail = text.partition("Output:")
        text = tail if len(tail.strip()) > 20 else head
    text = re.sub(r"^\s*Input:\s*", "", text)
    text = re.sub(r"([.!?])(?=(?:In the|Based on|Therefore|Overall)\b)", r"\1 ", text)
    return re.sub(r"\s+", " ", text).strip()


def _protect_quotes(text: str) -> tuple[str, list[str]]:
    quotes: list[str] = []

    def keep(m: re.Match) -> str:
        quotes.append(m.group(0))
        return f"\x00{len(quotes) - 1}\x00"

    return _QUOTE.sub(keep, text), quotes


def _restore(text: str, quotes: list[str]) -> str:
    return re.sub(r"\x00(\d+)\x00", lambda m: quotes[int(m.group(1))], text)


def _sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\x00“\"])", text)
    return [p.strip() for p in parts if p.strip()]


def _sections(sentences: list[str]) -> dict[str, list[str]]:
    """Assign sentences to video / audio / text / conclusion by their "In the ..." openers."""
    out: dict[str, list[str]] = {"video": [], "audio": [], "text": [], "conclusion": []}
    current = "video"
    for sentence in sentences:
        m = _SECTION.match(sentence)
        if m:
            current = m.group(1)
            sentence = sentence[m.end() :]
        sentence = sentence.strip(" ,")
        if not sentence:
            continue
        if current == "text" and _CONCLUSION_START.match(sentence):
            current = "conclusion"
        elif current in ("video", "audio") and _CONCLUSION_START.match(sentence) and _sees_both(sentence):
            current = "conclusion"
        out[current].append(sentence)
    return out


def _sees_both(sentence: str) -> bool:
    low = sentence.lower()
    return "video" in low and "audio" in low


def _strip_cue(piece: str) -> str:
    piece = piece.strip(" ,;:.!?")
    if _TIME_ONLY.fullmatch(piece):
        return ""
    for _ in range(3):
        new = _TIME_PREFIX.sub("", piece)
        new = _LEAD_FILLER.sub("", new).strip(" ,;:")
        if new == piece:
            break
        piece = new
    return piece


def _atomic(clause: str) -> list[str]:
    """Split a descriptive clause into atomic cues."""
    cues = []
    for part in re.split(r"\s*[,;:]\s*|\s+-\s+", clause):
        for sub in _AND_SPLIT.split(part):
            cue = _strip_cue(sub)
            junk = _META.search(cue) or _FILLER_ONLY.match(cue) or _TIME_ONLY.fullmatch(cue)
            if len(cue) >= 3 and not junk and re.search(r"[a-z]", cue):
                cues.append(cue)
    return cues


def _descriptive(sentences: list[str], interpretive: list[str]) -> list[str]:
    """Descriptive cues of one section; interpretive sentences and clauses go to `interpretive`."""
    cues: list[str] = []
    for sentence in sentences:
        body = sentence.rstrip(".!? ")
        if _INTERPRETIVE_SENTENCE.search(body) or _CONCLUSION_START.match(body):
            interpretive.append(body)
            continue
        cut = min(
            (m.start() for m in (_INTERPRETIVE_CLAUSE.search(body), _HEDGED_CLAUSE.search(body)) if m), default=None
        )
        if cut is not None:
            interpretive.append(body[cut:])
            body = body[:cut]
        for cue in _atomic(body):
            (interpretive if _EMOTION_CLAUSE.search(cue) else cues).append(cue)
    return cues


def _emotion_terms(texts: list[str]) -> list[str]:
    found: list[str] = []
    for text in texts:
        for m in _STATE_IS.finditer(text):
            for part in re.split(r",\s*|\s+(?:and|or)\s+", m.group(1)):
                part = _strip_cue(part)
                if part and len(part.split()) <= 4:
                    found.append(part.lower())
        for m in _EMOTION_RE.finditer(text):
            found.append(re.sub(r"^(?:a|an)\s+", "", m.group(0).lower()).strip())
    seen, out = set(), []
    for term in found:
        if term not in seen:
            seen.add(term)
            out.append(term)
    return out


def _conclusion_clauses(sentences: list[str]) -> list[str]:
    """The inferred part of each conclusion sentence (after "we can infer that", or the whole sentence)."""
    out = []
    for sentence in sentences:
        m = _INFERENCE.search(sentence)
        if m:
            out.append(sentence[m.end() :])
        elif re.match(r"^(?:based on|combin|considering|taking)", sentence, re.IGNORECASE):
            out.append(sentence.rsplit(",", 1)[-1])
        else:
            out.append(sentence)
    return out


def extract_cues(text: str) -> dict:
    """Rule-based split of a description into {"visual", "auditory", "emotional", "subtitle"}.

    Never raises on text: an empty or unstructured string gives empty lists (a description without
    section markers is treated as visual). Cue lists keep the order of the text, without duplicates.
    """
    if not isinstance(text, str):
        raise ValueError(f"extract_cues expects a description string, got {type(text).__name__}")
    text = _clean_source(text)
    if not text:
        return {"visual": [], "auditory": [], "emotional": [], "subtitle": None}
    protected, quotes = _protect_quotes(text)
    sections = _sections(_sentences(protected))

    subtitle = None
    for sentence in sections["text"] + sections["audio"]:
        m = re.search(r"\x00(\d+)\x00", sentence)
        if m and (sentence in sections["text"] or "subtitle" in sentence.lower()):
            subtitle = quotes[int(m.group(1))].strip('"“” ')
            break

    interpretive: list[str] = []
    visual = _descriptive(sections["video"], interpretive)
    auditory = _descriptive(sections["audio"], interpretive)
    conclusion = _conclusion_clauses(sections["conclusion"])
    emotional = _emotion_terms(conclusion) or _emotion_terms(interpretive + sections["text"])
    if not emotional and conclusion:
        emotional = [_strip_cue(c) for c in conclusion if _strip_cue(c)]

    def finish(cues: list[str]) -> list[str]:
        seen, out = set(), []
        for cue in cues:
            cue = _restore(cue, quotes)
            if cue.lower() not in seen:
                seen.add(cue.lower())
                out.append(cue)
        return out

    return {
        "visual": finish(visual),
        "auditory": finish(auditory),
        "emotional": finish(emotional),
        "subtitle": subtitle,
    }


def emotion_label(emotional: list[str]) -> str | None:
    """The first emotional cue that names a word of the label set -> its label; None when none does."""
    for cue in emotional:
        for m in re.finditer(r"[a-z]+", cue.lower()):
            label = EMOTION_TERMS.get(m.group(0))
            if label is not None:
                return label
    return None
