"""Evaluation, off the live path: cue extraction, EmoCue-360, sentence embeddings, datasets, clip scoring."""
