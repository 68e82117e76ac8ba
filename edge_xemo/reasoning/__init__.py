"""Reasoning over cues: the prompt, the projectors, the llama.cpp session and the cue decoder."""
