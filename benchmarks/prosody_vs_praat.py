"""Agreement of the numpy prosody measures with Praat (praat-parselmouth, test extra) on real speech.

F0: per 10 ms frame, frames both call voiced (Praat `To Pitch (ac)`, 60-550 Hz): median absolute
difference in semitones and the share of gross (> 3 st) differences. Jitter/shimmer (local) and
HNR over the whole clip: Praat's cc point process and harmonicity vs `jitter_shimmer` (all cycles)
and `measure_window`.

    python benchmarks/prosody_vs_praat.py [wav ...]   # default: demo sample.wav, LibriVox clip
"""

from __future__ import annotations

import sys
import wave
from pathlib import Path

import numpy as np

from edge_xemo.core.paths import demo_audio
from edge_xemo.voice.prosody import analyze_frames, clean_f0, jitter_shimmer, measure_window, semitones
from edge_xemo.core.types import SAMPLE_RATE
from edge_xemo.voice.vad import CHUNK_S, SileroVad

DEFAULT = (demo_audio(),
           Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav"))


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


def compare(path: Path) -> dict[str, float]:
    import parselmouth
    from parselmouth.praat import call

    x = read_wav(path)
    frames = analyze_frames(x)
    ours = clean_f0(frames.f0_hz)
    snd = parselmouth.Sound(x.astype(np.float64), SAMPLE_RATE)
    pitch = snd.to_pitch_ac(time_step=0.01, pitch_floor=60, pitch_ceiling=550)
    ref = np.array([pitch.get_value_at_time(t) for t in frames.t])
    both = np.isfinite(ours) & np.isfinite(ref)
    err = np.abs(semitones(ours[both]) - semitones(ref[both]))
    vad = SileroVad().accept(x, 0.0)
    speech = np.interp(frames.t, vad.t + CHUNK_S / 2, vad.speaking.astype(float)) > 0.5
    m = measure_window(frames, speech, vad.t, vad.prob, 0.5, len(x) / SAMPLE_RATE, x, 0.0)
    jitter, shimmer = jitter_shimmer(x, 0.0, frames, clean_f0(np.where(speech, frames.f0_hz, np.nan)), max_cycles=10**9)
    points = call(snd, "To PointProcess (periodic, cc)", 60, 550)
    return {
        "f0_median_abs_err_st": float(np.median(err)),
        "f0_gross_err_share": float(np.mean(err > 3)),
        "f0_median_hz": m.f0_median_hz, "praat_f0_median_hz": float(np.nanmedian(ref)),
        "jitter_pct": jitter, "praat_jitter_pct": 100 * call(points, "Get jitter (local)", 0, 0, 1e-4, 0.02, 1.3),
        "shimmer_pct": shimmer,
        "praat_shimmer_pct": 100 * call([snd, points], "Get shimmer (local)", 0, 0, 1e-4, 0.02, 1.3, 1.6),
        "hnr_db": m.hnr_db, "praat_hnr_db": call(snd.to_harmonicity_cc(), "Get mean", 0, 0),
    }


def main(paths: list[Path]) -> None:
    for path in paths:
        if not path.exists():
            print(f"{path}: missing")
            continue
        print(path.name, "  ".join(f"{k} {v:.3f}" for k, v in compare(path).items()))


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]] or list(DEFAULT))
