"""The project's own prosody and voice-quality representation of a window, for the comparison in
train/voice_emotion.py (the runtime judges with the Whisper encoder's states, edge_xemo.voice.emotion).

`window_functionals` pools a window's frames (the AECB front end's 64 log-mel + 32 pitch bands, and the
prosody tracker's F0, level, HNR, tilt and flatness) into statistics over its active frames, all relative to
the window itself: cepstral shape and movement, pitch spread and contour in semitones re the window's own
median, loudness spread, voice quality. No absolute level or pitch enters (a quiet microphone or a deep voice
is not an emotion).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edge_xemo.voice.features import N_MELS
from edge_xemo.voice.prosody import FrameFeatures, clean_f0, semitones

N_CEPS = 20
MIN_ACTIVE_FRAMES = 40
"""Active frames (10 ms each) a window needs for a judgement: 0.4 s of voice, about two syllables
(the voice stage's `min_window_speech_s` is 0.3 s of VAD speech; fewer frames give no label, not a guess)."""
ACTIVE_RANGE_DB = 35.0
"""A frame is active when its energy is within this of the window's 95th percentile (speech spans about
30-40 dB between its loud vowels and its weak consonants): relative, so that the microphone's gain does not
change which frames count. Whether the window holds speech at all is the VAD's call (the voice stage asks
for `min_window_speech_s` of it first)."""
FLOOR_DB = -75.0
"""Frames below this (dBFS) are digital silence, never active (SILENCE_DB, -55, is 20 dB higher: a quiet
microphone's speech may lie between the two)."""

FUNCTIONAL_NAMES: tuple[str, ...] = (
    tuple(f"ceps{i}_mean" for i in range(1, N_CEPS))
    + tuple(f"ceps{i}_sd" for i in range(N_CEPS))
    + tuple(f"ceps{i}_delta" for i in range(N_CEPS))
    + tuple(f"pitchband{i}_mean" for i in range(32))
    + (
        "voiced_ratio",
        "f0_p10_st",
        "f0_p90_st",
        "f0_sd_st",
        "f0_slope_st_s",
        "f0_delta_st",
        "level_sd_db",
        "level_p90_p10_db",
        "level_delta_db",
        "hnr_median_db",
        "hnr_sd_db",
        "alpha_median_db",
        "flatness_median",
        "aperiodicity_median",
        "active_ratio",
    )
)
"""The window functionals, in the model's input order (F0 percentiles are re the window's F0 median)."""
N_FUNCTIONALS = len(FUNCTIONAL_NAMES)


@lru_cache(maxsize=1)
def _dct() -> np.ndarray:
    """Orthonormal DCT-II from the mel bands to the first N_CEPS cepstral coefficients."""
    n = np.arange(N_MELS)
    k = np.arange(N_CEPS)[:, None]
    m = np.cos(np.pi / N_MELS * (n + 0.5) * k) * np.sqrt(2.0 / N_MELS)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def _mean_abs_delta(x: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(x, axis=0)).mean(axis=0) if len(x) > 1 else np.zeros(x.shape[1:], np.float32)


def window_functionals(frames: np.ndarray, prosody: FrameFeatures) -> np.ndarray | None:
    """The (N_FUNCTIONALS,) float32 vector of one window, or None when it holds too little voice.

    frames: (n, 96) `voice.features.frame_features` of the window; prosody: its `analyze_frames` frames.
    """
    if frames.ndim != 2 or frames.shape[1] != N_MELS + 32:
        raise ValueError(f"window_functionals expects (n, {N_MELS + 32}) frames, got {frames.shape}")
    mel_db = 10.0 * frames[:, :N_MELS].astype(np.float64)
    energy = 10.0 * np.log10(np.sum(10.0 ** (mel_db / 10.0), axis=1) + 1e-12)
    if len(energy) == 0:
        return None
    active = (energy > np.percentile(energy, 95) - ACTIVE_RANGE_DB) & (energy > FLOOR_DB)
    if active.sum() < MIN_ACTIVE_FRAMES:
        return None
    ceps = mel_db[active] @ _dct().T.astype(np.float64)
    pitch = frames[active, N_MELS:].astype(np.float64)
    f0 = clean_f0(prosody.f0_hz) if len(prosody) else np.zeros(0)
    voiced = np.isfinite(f0)
    loud = np.zeros(0, bool)
    if len(prosody):
        floor = max(FLOOR_DB, float(np.percentile(prosody.level_db, 95)) - ACTIVE_RANGE_DB)
        loud = prosody.level_db > floor
    out = [ceps[:, 1:].mean(axis=0), ceps.std(axis=0), _mean_abs_delta(ceps), pitch.mean(axis=0)]
    pros = np.zeros(15)
    pros[0] = voiced.sum() / max(loud.sum(), 1)
    if voiced.sum() >= 10:
        st = semitones(f0[voiced])
        med = np.median(st)
        p10, p90 = np.percentile(st, [10, 90])
        tv = prosody.t[voiced]
        steps = np.diff(semitones(f0))
        steps = steps[np.isfinite(steps)]
        pros[1:6] = (
            p10 - med,
            p90 - med,
            st.std(),
            np.polyfit(tv - tv[0], st, 1)[0] if tv[-1] - tv[0] > 0.2 else 0.0,
            np.abs(steps).mean() if len(steps) else 0.0,
        )
        pros[9:11] = np.median(prosody.hnr_db[voiced]), prosody.hnr_db[voiced].std()
        pros[11] = np.median(prosody.alpha_db[voiced])
        pros[13] = np.median(prosody.aperiodicity[voiced])
    if loud.sum() >= 5:
        level = prosody.level_db[loud].astype(np.float64)
        p10, p90 = np.percentile(level, [10, 90])
        pros[6:9] = level.std(), p90 - p10, np.abs(np.diff(level)).mean()
        pros[12] = np.median(prosody.flatness[loud])
    pros[14] = active.mean()
    out.append(pros)
    vec = np.concatenate(out).astype(np.float32)
    return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)
