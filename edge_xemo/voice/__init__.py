"""The voice stage: VAD, prosody, auditory cues, the audio cue bridge (AECB) and the optional transcript."""
