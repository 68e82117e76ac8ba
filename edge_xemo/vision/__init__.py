"""The visual stage: face tracking, facial cues, expression scores and the video cue bridge (VECB)."""
