"""Reasoning data for the decoder: EMER descriptions -> (cue text + subtitle, explanation + emotion).

Each EMER-V2 row (`name,english`) is split by the rule-based extractor (`edge_xemo.eval.cue_extract`) into
its visual cues, vocal cues, emotional terms and subtitle. The decoder's input is the cue text and
subtitle laid out by `edge_xemo.reasoning.prompt.build_prompt` (no token slots for these text-only rows); the
target is the explanation in the runtime format (`edge_xemo.reasoning.prompt.training_target`): the same cues,
restated, and the description's own conclusion mapped onto `edge_xemo.core.types.EMOTIONS`.

The CSV (research use) is read where it lies, ../shared/data/emer_v2/emer_v2_dev.csv beside the repo,
and never copied. Rows 200-249 are held out: `load_examples(split="train")` never returns them.
Torch-free, so the held-out benchmark can share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge_xemo.eval.cue_extract import emotion_label, extract_cues
from edge_xemo.eval.datasets import load_emer_csv
from edge_xemo.reasoning.prompt import Segment, build_prompt, clean_cues, training_target

REPO = Path(__file__).resolve().parents[1]
EMER_CSV = REPO.parent / "shared" / "data" / "emer_v2" / "emer_v2_dev.csv"
HELDOUT_START, HELDOUT_STOP = 200, 250
"""Rows [200, 250) of the CSV are the held-out split: never trained on."""
SPLITS = ("train", "heldout", "all")
MAX_VISUAL, MAX_AUDITORY = 8, 6
"""Cue lists are cut to what a window's perception would report, so prompt and target list the same cues."""


@dataclass(frozen=True, slots=True)
class ReasoningExample:
    """One EMER row as decoder input (cues, subtitle) and target (explanation with `label`)."""

    row: int
    name: str
    visual: tuple[str, ...]
    auditory: tuple[str, ...]
    subtitle: str | None
    label: str
    description: str

    def prompt(self, has_video_tokens: bool = False, has_audio_tokens: bool = False) -> list[Segment]:
        """The runtime prompt for this row's cues (token slots only when tokens are given)."""
        return build_prompt(list(self.visual), list(self.auditory), self.subtitle, has_video_tokens, has_audio_tokens)

    def target(self) -> str:
        """The training target that follows the prompt (explanation + label + end of turn)."""
        return training_target(list(self.visual), list(self.auditory), self.label)


def example_from_description(row: int, name: str, description: str) -> ReasoningExample | None:
    """Split one description; None when it names no visual or vocal cue or no label-set emotion."""
    cues = extract_cues(description)
    label = emotion_label(cues["emotional"])
    visual, auditory = _short(cues["visual"], MAX_VISUAL), _short(cues["auditory"], MAX_AUDITORY)
    if label is None or not (visual or auditory):
        return None
    return ReasoningExample(row, name, visual, auditory, cues["subtitle"], label, description)


def _short(cues: list[str], limit: int) -> tuple[str, ...]:
    """Cleaned cues (as the prompt cleans them), at most `limit`."""
    return tuple(clean_cues(cues)[0][:limit])


def load_examples(split: str = "train", path: Path = EMER_CSV) -> list[ReasoningExample]:
    """Examples of `split` ("train": rows < 200, "heldout": rows 200-249, "all") from the EMER CSV.

    Raises FileNotFoundError naming the CSV when it is absent (callers skip on it).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"EMER-V2 descriptions not found at {path} (research data, read in place)")
    out = []
    for i, clip in enumerate(load_emer_csv(path).clips):
        held = HELDOUT_START <= i < HELDOUT_STOP
        if (split == "train" and (held or i >= HELDOUT_STOP)) or (split == "heldout" and not held):
            continue
        ex = example_from_description(i, clip.name, clip.description)
        if ex is not None:
            out.append(ex)
    return out
