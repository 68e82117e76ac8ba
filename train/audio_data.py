"""Build the AECB training corpus: real speech + controlled prosody variants + espeak-ng speech.

Sources (all obtainable offline, none committed):
  - pyannote-audio 4.0.7 `pyannote/audio/sample/sample.wav` (two speakers, cut by its RTTM),
  - Debian `pocketsphinx-testdata`: the LibriVox reader (held out for validation), the `cards`
    speaker and the three AN4 recordings,
  - espeak-ng voices reading short sentences (synthetic speakers).
Every utterance is re-synthesized many times with Praat (parselmouth Manipulation, PSOLA):
pitch shift, pitch-range scaling, tempo, plus gain, 5-8 Hz tremolo/vibrato ("trembling"),
inserted pauses and, as channel variety that is never a cue, a random low-pass. Cue labels come from the manipulation parameters relative to the speaker's own
unmodified speech (the baseline); `long_pauses` and the prosody targets are measured on each 2 s
window by Praat (teacher). One "neutral" variant per utterance (all factors 1) feeds the baselines.

    pip download --no-deps -d runs/aecb_data/src pyannote-audio==4.0.7
    apt-get install pocketsphinx-testdata espeak-ng; pip install praat-parselmouth==0.4.7
    nice python -m train.audio_data            # -> runs/aecb_data/{train,val}.npz, sources.json
    python -m train.audio_data --smoke --out DIR   # 4 speakers, 3 variants each: seconds
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy.signal import butter, find_peaks, resample_poly, sosfilt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edge_xemo.voice.features import SAMPLE_RATE, frame_features  # noqa: E402

SR = SAMPLE_RATE
CUES = ("higher_pitch", "lower_pitch", "fast", "slow", "loud", "soft", "flat", "varied", "trembling", "long_pauses")
PHRASES = {
    "higher_pitch": "higher pitch than usual",
    "lower_pitch": "lower pitch than usual",
    "fast": "speaking fast",
    "slow": "speaking slowly",
    "loud": "loud voice",
    "soft": "soft, quiet voice",
    "flat": "flat, monotone tone",
    "varied": "varied, lively intonation",
    "trembling": "trembling voice",
    "long_pauses": "long pauses",
}
NEUTRAL_PHRASE = "steady, even voice"
PROSODY = ("f0_median_st", "f0_range_st", "loudness_dbfs", "voiced_fraction", "syllable_rate",
           "pause_max_s", "jitter_pct", "shimmer_pct")
POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
SENTENCES = (
    "The meeting starts at nine, and I hope everyone brings the notes.",
    "I really did not expect the results to come back so quickly.",
    "Could you tell me where the train station is, please?",
    "We walked along the river until the sun went down behind the hills.",
    "Nobody answered the phone when I called this morning.",
    "That is the best news I have heard all week.",
    "Please put the boxes in the corner and close the door.",
    "I am not sure what to say about any of this.",
)
ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us+f3", "en-gb+f2", "en-us+m3",
                 "en-us+f1", "en-us+f4", "en-gb+m1", "en-gb+m6", "en-029+f5", "en-gb-scotland+f2", "en-us+klatt",
                 "en-gb-x-rp+m7", "en-us+m2", "en-gb+f4")


@dataclass
class DataConfig:
    out: str = "runs/aecb_data"
    pyannote_wheel_dir: str = "runs/aecb_data/src"  # `pip download --no-deps -d DIR pyannote-audio==4.0.7`
    seed: int = 1337
    window_s: float = 2.0
    crops_per_variant: int = 2
    variants_real: int = 48  # per utterance of a real training speaker
    variants_synth: int = 20  # per espeak utterance
    variants_val: int = 40
    val_speaker: str = "librivox"
    workers: int = 2
    speakers: list[str] = field(default_factory=list)  # only these speakers (empty: all)


# ---------------------------------------------------------------- sources
def _read_wav(path) -> np.ndarray:
    import parselmouth

    snd = parselmouth.Sound(str(path))
    if snd.sampling_frequency != SR:
        snd = snd.resample(SR)
    return snd.values.mean(axis=0).astype(np.float32)


def _pyannote_wav(cfg: DataConfig) -> Path:
    out = Path(cfg.out) / "src" / "pyannote_sample.wav"
    if not out.exists():
        dirs = (Path(cfg.pyannote_wheel_dir), ROOT / "runs" / "sources" / "pip")  # its own, or the rebuild's sources
        wheels = [w for d in dirs for w in sorted(d.glob("pyannote_audio-4.0.7-*.whl"))]
        if not wheels:  # obtain it as the rebuild's sources stage does
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", cfg.pyannote_wheel_dir,
                                "pyannote-audio==4.0.7"], capture_output=True, text=True)
            wheels = sorted(Path(cfg.pyannote_wheel_dir).glob("pyannote_audio-4.0.7-*.whl"))
            if r.returncode or not wheels:
                raise SystemExit(f"pyannote-audio==4.0.7 wheel not found; run: pip download --no-deps -d "
                                 f"{cfg.pyannote_wheel_dir} pyannote-audio==4.0.7 ({r.stderr.strip()[-200:]})")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(zipfile.ZipFile(wheels[0]).read("pyannote/audio/sample/sample.wav"))
    return out


def _espeak(voice: str, text: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", voice, "-w", f.name, text], check=True)
        import parselmouth

        snd = parselmouth.Sound(f.name)
        x = snd.values[0].astype(np.float64)
        return resample_poly(x, 160, 441).astype(np.float32) if snd.sampling_frequency == 22050 else x.astype(np.float32)


def load_speakers(cfg: DataConfig) -> dict[str, list[np.ndarray]]:
    """speaker -> list of single-speaker utterances (16 kHz float32); only `cfg.speakers` when set."""
    want = lambda name: not cfg.speakers or name in cfg.speakers  # noqa: E731
    sample = _read_wav(_pyannote_wav(cfg))
    cut = lambda x, a, b: x[int(a * SR) : int(b * SR)]  # noqa: E731
    # Single-speaker stretches of sample.wav from its RTTM (overlaps removed).
    spk = {
        "pyannote_spk90": [cut(sample, a, b) for a, b in ((8.32, 9.92), (11.03, 14.49), (18.59, 21.49), (27.85, 30.0))],
        "pyannote_spk91": [cut(sample, a, b) for a, b in ((14.70, 17.92), (21.78, 24.8), (24.8, 27.85))],
    }
    if want("librivox"):
        spk["librivox"] = [_read_wav(p) for p in sorted((POCKETSPHINX / "librivox").glob("*.wav"))]
    if want("cards"):
        cards = [_read_wav(p) for p in sorted((POCKETSPHINX / "cards").glob("*.wav"))]
        spk["cards"] = [np.concatenate(cards[0:2]), np.concatenate(cards[2:4]), cards[4]]
    for name in ("goforward", "numbers", "something"):
        if want(f"an4_{name}"):
            raw = np.fromfile(POCKETSPHINX / f"{name}.raw", dtype="<i2").astype(np.float32) / 32768.0
            spk[f"an4_{name}"] = [raw]
    for v in ESPEAK_VOICES:
        if want(f"espeak_{v}"):
            spk[f"espeak_{v}"] = [_espeak(v, " ".join(SENTENCES[i : i + 2])) for i in range(0, len(SENTENCES), 2)]
    missing = [n for n in cfg.speakers if n not in spk]
    if missing:
        raise ValueError(f"unknown speaker(s) {', '.join(missing)}; known: {', '.join(spk)}")
    return {k: v for k, v in spk.items() if want(k)}


# ---------------------------------------------------------------- manipulation
def _speech_rms(x: np.ndarray) -> float:
    fr = np.lib.stride_tricks.sliding_window_view(x, 400)[::160]
    e = np.sqrt((fr.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    return float(np.sqrt(np.mean(e[e > e.max() * 10 ** (-30 / 20)] ** 2)))


def sample_params(rng: np.random.Generator, neutral: bool) -> dict:
    """Manipulation parameters; values sit clearly beyond or clearly inside the cue thresholds."""
    p = dict(semitones=0.0, duration=1.0, gain_db=0.0, range=1.0, tremor=0.0, pauses=0, lowpass_hz=0.0)
    p["lowpass_hz"] = float(rng.uniform(3400, 7500)) if rng.random() < 0.4 else 0.0
    if neutral:
        return p
    side = lambda: rng.choice([-1, 1])  # noqa: E731
    p["semitones"] = float(side() * rng.uniform(2, 6)) if rng.random() < 0.4 else float(rng.uniform(-0.7, 0.7))
    if rng.random() < 0.4:
        p["duration"] = float(rng.uniform(0.68, 0.82) if rng.random() < 0.5 else rng.uniform(1.22, 1.45))
    else:
        p["duration"] = float(rng.uniform(0.95, 1.05))
    p["gain_db"] = float(side() * rng.uniform(6, 12)) if rng.random() < 0.4 else float(rng.uniform(-1.5, 1.5))
    if rng.random() < 0.3:
        p["range"] = float(rng.uniform(0.05, 0.3) if rng.random() < 0.5 else rng.uniform(1.8, 2.6))
    p["tremor"] = float(rng.uniform(0.5, 1.0)) if rng.random() < 0.18 else 0.0
    p["pauses"] = int(rng.integers(1, 3)) if rng.random() < 0.25 else 0
    return p


def labels_from_params(p: dict) -> dict[str, int]:
    return {
        "higher_pitch": int(p["semitones"] >= 2), "lower_pitch": int(p["semitones"] <= -2),
        "fast": int(p["duration"] <= 0.83), "slow": int(p["duration"] >= 1.2),
        "loud": int(p["gain_db"] >= 6), "soft": int(p["gain_db"] <= -6),
        "flat": int(p["range"] <= 0.35), "varied": int(p["range"] >= 1.8),
        "trembling": int(p["tremor"] > 0),
    }


def _tremble(x: np.ndarray, depth: float, rng: np.random.Generator) -> np.ndarray:
    """5-8 Hz vibrato (modulated delay, +-depth semitones) and tremolo (amplitude, 25-50 %)."""
    f = rng.uniform(5, 8)
    t = np.arange(len(x)) / SR
    ratio_dev = 2 ** (depth / 12) - 1  # peak relative pitch deviation
    delay = ratio_dev / (2 * np.pi * f) * np.sin(2 * np.pi * f * t) * SR  # samples
    y = np.interp(np.arange(len(x)) - delay - delay.max(), np.arange(len(x)), x)
    am = 1 - rng.uniform(0.25, 0.5) * 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(5, 8) * t))
    return (y * am).astype(np.float32)


def _insert_pauses(x: np.ndarray, n: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Insert `n` silences of 0.5-1.0 s at quiet points between the first and last 20 %."""
    fr = np.lib.stride_tricks.sliding_window_view(x, 400)[::160]
    e = np.sqrt((fr.astype(np.float64) ** 2).mean(axis=1))
    lo, hi = int(len(e) * 0.2), int(len(e) * 0.8)
    if hi - lo < 10:
        return x
    cand = lo + np.argsort(e[lo:hi])[: max(3, (hi - lo) // 8)]
    cuts = sorted(rng.choice(cand, size=min(n, len(cand)), replace=False) * 160)
    parts, prev = [], 0
    for c in cuts:
        parts += [x[prev:c], (rng.standard_normal(int(rng.uniform(0.5, 1.0) * SR)) * noise).astype(np.float32)]
        prev = c
    parts.append(x[prev:])
    return np.concatenate(parts)


def make_variant(x: np.ndarray, p: dict, level: float, rng: np.random.Generator) -> np.ndarray:
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(x.astype(np.float64), SR)
    f0 = snd.to_pitch(0.01, 75, 500).selected_array["frequency"]
    med = float(np.median(f0[f0 > 0])) if (f0 > 0).sum() > 5 else 0.0
    # PSOLA on every variant (neutral too) so that resynthesis artifacts never signal a cue.
    manip = call(snd, "To Manipulation", 0.01, 75, 500)
    if med:  # shift the median, scale the range in the log domain: f' = new * (f / med) ^ range
        tier = call(manip, "Extract pitch tier")
        new_med = med * 2 ** (p["semitones"] / 12)
        call(tier, "Formula", f"max(55, min(700, {new_med} * (self / {med}) ^ {p['range']}))")
        call([tier, manip], "Replace pitch tier")
    dur = call("Create DurationTier", "dur", snd.xmin, snd.xmax)
    call(dur, "Add point", snd.xmin, p["duration"])
    call([manip, dur], "Replace duration tier")
    y = call(manip, "Get resynthesis (overlap-add)").values[0].astype(np.float32)
    y *= level / max(_speech_rms(y), 1e-6)
    noise = level * 10 ** (-rng.uniform(35, 50) / 20)
    if p["tremor"]:
        y = _tremble(y, p["tremor"], rng)
    if p["pauses"]:
        y = _insert_pauses(y, p["pauses"], rng, noise)
    if p["lowpass_hz"]:  # channel variety (phone, codec, cheap microphone), never a cue
        y = sosfilt(butter(6, p["lowpass_hz"], fs=SR, output="sos"), y).astype(np.float32)
    y = y * 10 ** (p["gain_db"] / 20) + (rng.standard_normal(len(y)) * noise * 10 ** (p["gain_db"] / 20)).astype(np.float32)
    return np.clip(y, -1, 1).astype(np.float32)


# ---------------------------------------------------------------- teacher
def prosody_teacher(w: np.ndarray) -> tuple[dict[str, float], int]:
    """Praat/numpy prosody measures of one window and the measured long-pause label."""
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(w.astype(np.float64), SR)
    f0 = snd.to_pitch(0.01, 75, 500).selected_array["frequency"]
    voiced = f0[f0 > 0]
    st = 12 * np.log2(voiced / 100.0) if len(voiced) else np.zeros(0)
    fr = np.lib.stride_tricks.sliding_window_view(w, 400)[::160]
    db = 10 * np.log10((fr.astype(np.float64) ** 2).mean(axis=1) + 1e-12)
    speech = db > db.max() - 30
    idx = np.flatnonzero(speech)
    pause_max = 0.0
    if len(idx) > 1:  # longest silence with speech on both sides
        gaps = np.diff(idx) - 1
        pause_max = float(gaps.max()) * 0.01
    speech_s = max(speech.sum() * 0.01, 0.1)
    sm = np.convolve(db, np.ones(5) / 5, mode="same")
    peaks, _ = find_peaks(sm, prominence=3.0, distance=8)
    n_f0 = len(f0)
    peaks = [k for k in peaks if speech[k] and f0[min(k, n_f0 - 1)] > 0]
    jit = shim = np.nan
    if len(voiced) > 20:
        pp = call(snd, "To PointProcess (periodic, cc)", 75, 500)
        jit = call(pp, "Get jitter (local)", 0, 0, 0.0001, 0.02, 1.3) * 100
        shim = call([snd, pp], "Get shimmer (local)", 0, 0, 0.0001, 0.02, 1.3, 1.6) * 100
    m = {
        "f0_median_st": float(np.median(st)) if len(st) > 5 else np.nan,
        "f0_range_st": float(np.percentile(st, 90) - np.percentile(st, 10)) if len(st) > 5 else np.nan,
        "loudness_dbfs": float(10 * np.log10(np.mean(10 ** (db[speech] / 10)))),
        "voiced_fraction": float(len(voiced) / max(n_f0, 1)),
        "syllable_rate": float(len(peaks) / speech_s),
        "pause_max_s": pause_max,
        "jitter_pct": float(jit), "shimmer_pct": float(shim),
    }
    return m, int(pause_max >= 0.5)


# ---------------------------------------------------------------- build
def _job(args):
    import parselmouth

    speaker, u_idx, v_idx, x, p, level, seed, cfg = args
    rng = np.random.default_rng(seed)
    # Praat's PSOLA draws from Praat's own generator (unvoiced stretches): seed it per job, so a
    # rebuild gives the same windows whatever the worker order
    parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({seed})")
    y = make_variant(x, p, level, rng)
    win = int(cfg.window_s * SR)
    if len(y) < win:
        pad = win - len(y)
        a = int(rng.integers(0, pad + 1))
        noise = level * 10 ** (-45 / 20)
        y = np.concatenate([rng.standard_normal(a) * noise, y, rng.standard_normal(pad - a) * noise]).astype(np.float32)
    rows = []
    for _ in range(cfg.crops_per_variant):
        s = int(rng.integers(0, len(y) - win + 1))
        w = y[s : s + win]
        m, long_pause = prosody_teacher(w)
        lab = labels_from_params(p) | {"long_pauses": long_pause}
        rows.append(dict(feats=frame_features(w).astype(np.float16), speaker=speaker, utt=u_idx, neutral=int(v_idx == 0),
                         labels=[lab[c] for c in CUES], prosody=[m[k] for k in PROSODY], params=p))
    return rows


def build(cfg: DataConfig) -> None:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.time()
    speakers = load_speakers(cfg)
    jobs, info = [], {}
    for speaker, utts in speakers.items():
        level = 10 ** (rng.uniform(-36, -26) / 20)  # each speaker's own microphone level
        n_var = cfg.variants_val if speaker == cfg.val_speaker else (
            cfg.variants_synth if speaker.startswith("espeak") else cfg.variants_real)
        info[speaker] = dict(utterances=len(utts), seconds=round(sum(len(u) for u in utts) / SR, 2),
                             level_dbfs=round(20 * np.log10(level), 1), variants_per_utterance=n_var,
                             split="val" if speaker == cfg.val_speaker else "train")
        for ui, x in enumerate(utts):
            for vi in range(n_var):
                p = sample_params(rng, neutral=vi == 0)
                jobs.append((speaker, ui, vi, x, p, level, int(rng.integers(2**31)), cfg))
    with Pool(cfg.workers) as pool:
        rows = [r for rs in pool.imap(_job, jobs, chunksize=8) for r in rs]
    for split in ("train", "val"):
        sel = [r for r in rows if (r["speaker"] == cfg.val_speaker) == (split == "val")]
        spk_names = sorted({r["speaker"] for r in sel})
        np.savez_compressed(
            out / f"{split}.npz",
            feats=np.stack([r["feats"] for r in sel]),
            labels=np.array([r["labels"] for r in sel], dtype=np.float32),
            prosody=np.array([r["prosody"] for r in sel], dtype=np.float32),
            speaker=np.array([spk_names.index(r["speaker"]) for r in sel], dtype=np.int64),
            utt=np.array([r["utt"] for r in sel], dtype=np.int64),
            neutral=np.array([r["neutral"] for r in sel], dtype=np.int64),
            speaker_names=np.array(spk_names),
        )
        info[f"{split}_windows"] = len(sel)
    info["cues"], info["prosody"], info["config"] = list(CUES), list(PROSODY), asdict(cfg)
    info["build_seconds"] = round(time.time() - t0, 1)
    (out / "sources.json").write_text(json.dumps(info, indent=1))
    print(f"{len(rows)} windows in {time.time() - t0:.0f} s -> {out}")


SMOKE_SPEAKERS = ["pyannote_spk90", "pyannote_spk91", "espeak_en-us", "librivox"]


def main(argv: list[str] | None = None) -> None:
    from train.config import load_config, stage_parser

    args = stage_parser(__doc__.splitlines()[0]).parse_args(argv)
    cfg = load_config(DataConfig, args.config, args.set)
    if args.smoke:  # toy corpus: 4 speakers (one held out), 3 variants per utterance, 1 crop each
        cfg.speakers = cfg.speakers or list(SMOKE_SPEAKERS)
        cfg.variants_real = cfg.variants_synth = cfg.variants_val = 3
        cfg.crops_per_variant = 1
        cfg.workers = min(cfg.workers, max(1, (os.cpu_count() or 1)))
    if args.out:
        cfg.out = args.out
    build(cfg)


if __name__ == "__main__":
    main()
