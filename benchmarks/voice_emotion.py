"""Emotion from the voice: one table of representations, leave-actors-out on RAVDESS, cost and neutral talk.

    python -m train.voice_emotion features     # once: window vectors of RAVDESS (clean + augmented)
    python -m train.voice_emotion compare      # once: the leave-actors-out cross-validation (runs/voice_emotion/compare.json)
    python benchmarks/voice_emotion.py         # this table -> runs/voice_emotion/table.json

Per representation (train.voice_emotion) and normalisation, with and without augmentation:
- leave-actors-out UAR, accuracy, per-class recall and ECE over the 7 emotions (5 folds of 4 actors, actors 1-20),
  on clean test windows and on augmented ones (rooms, noise, telephone);
- CPU ms per 2 s window (median, p95 over 200 windows, one thread): the representation plus its classifier;
- neutral talk: a model of that row trained on actors 1-20 judges every 2 s window (0.5 s apart) of real speech
  that is not acted (pocketsphinx-testdata's LibriVox readers, and scripts/fetch_neutral_talk.sh's files when
  fetched): the share of windows labelled other than neutral (target <= 0.30).
Then the shipped model through the real voice stage (VAD, streaming frames, 1 s hop): the same share on the same
speech, and the stream check: actors 21-24 (never trained on), each actor's utterances shuffled into one stream
with 1 s pauses, scored per window by the utterance it mostly covers (UAR over 7 emotions, coverage, commonest
label).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from edge_xemo.core.paths import home  # noqa: E402
from edge_xemo.core.types import SAMPLE_RATE, AudioBlock  # noqa: E402
from edge_xemo.voice.stage import VoiceOptions, VoicePerception  # noqa: E402
from train import voice_emotion as ve  # noqa: E402

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
NEUTRAL_TALK = home() / "neutral_talk"


def neutral_talk() -> dict[str, np.ndarray]:
    """Real speech that is not acted: {name: 16 kHz samples}."""
    import wave

    def read(path: Path) -> np.ndarray:
        with wave.open(str(path)) as w:
            assert w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
            return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768

    out = {}
    librivox = sorted(LIBRIVOX.glob("*.wav"))
    if librivox:
        out["librivox (read)"] = np.concatenate([read(p) for p in librivox])
    index = NEUTRAL_TALK / "index.json"
    if index.exists():
        for item in json.loads(index.read_text()):
            out[f"{Path(item['file']).stem} ({item['kind']})"] = read(NEUTRAL_TALK / item["file"])
    return out


def cost(rep: ve.Representations, name: str, samples: np.ndarray, head) -> dict:
    """CPU ms per 2 s window of one representation and its classifier (200 windows, median and p95)."""
    starts = np.linspace(0, len(samples) - ve.WINDOW, 200).astype(int)
    ms = []
    for a in starts:
        t = time.process_time()
        v = rep.windows(samples[a : a + ve.WINDOW])
        if len(v[name]):
            head(v[name])
        ms.append((time.process_time() - t) * 1e3)
    return {"median": round(statistics.median(ms), 2), "p95": round(float(np.percentile(ms, 95)), 2)}


def non_neutral_share(labels: list[str]) -> float:
    return round(float(np.mean([lab != "neutral" for lab in labels])), 3) if labels else float("nan")


def table(talk: dict[str, np.ndarray]) -> list[dict]:
    rows = json.loads((ve.RUNS / "compare.json").read_text())
    speech = np.concatenate(list(talk.values())) if talk else None
    for rep_name in sorted({r["representation"] for r in rows}):
        rep = ve.Representations((rep_name,))
        meta, x = ve.load(rep_name)
        y = np.array([ve.LABELS.index("neutral" if e == "calm" else e) for e in meta["emotion"]])
        windows = {k: rep.windows(v)[rep_name] for k, v in talk.items()}
        for row in [r for r in rows if r["representation"] == rep_name and r["normalisation"] == "window"]:
            copies = tuple(range(1 + ve.AUGMENTED_COPIES)) if row["augmented"] else (0,)
            tr = np.isin(meta["actor"], ve.TRAIN_ACTORS) & np.isin(meta["copy"], copies)
            model = ve.fit_mlp(x[tr], y[tr], row["weight_decay"])
            row["neutral_talk_non_neutral"] = {
                k: non_neutral_share([ve.LABELS[i] for i in model.predict(w)]) for k, w in windows.items() if len(w)
            }
            if speech is not None:
                row["cpu_ms_per_window"] = cost(rep, rep_name, speech, model.logits)
    return rows


def stream_through_stage(samples: np.ndarray, block: int = 320) -> list[tuple[float, dict]]:
    """The real voice stage over a stream: (window start, emotion) per 2 s window every 1 s."""
    from collections import deque

    out, obs = [], deque()
    with VoicePerception(VoiceOptions(use_bridge=False)) as voice:
        next_end = 2.0
        for i, a in enumerate(range(0, len(samples), block)):
            obs.append(voice.process_block(AudioBlock(samples[a : a + block], a / SAMPLE_RATE, i)))
            while (a + block) / SAMPLE_RATE >= next_end:
                t0 = next_end - 2.0
                while obs and obs[0].t < t0 - 0.1:
                    obs.popleft()
                seg = samples[int(t0 * SAMPLE_RATE) : int(next_end * SAMPLE_RATE)]
                out.append((t0, voice.summarize(seg, t0, list(obs), t0, next_end).emotion))
                next_end += 1.0
    return out


def stream_check(actors=ve.STREAM_ACTORS) -> dict:
    """Actors never trained on, each as one shuffled stream through the stage, scored per window."""
    rng = np.random.default_rng(ve.SEED)
    truth, judged, windows = [], [], 0
    for actor in actors:
        utts = [u for u in ve.utterances() if u.actor == actor and u.emotion != "calm"]
        rng.shuffle(utts)
        pieces, spans, t = [], [], 0.0
        for u in utts:
            x = ve.load_flac(u.path)
            pieces += [x, np.zeros(SAMPLE_RATE, np.float32)]
            spans.append((t, t + len(x) / SAMPLE_RATE, u.emotion))
            t += len(x) / SAMPLE_RATE + 1.0
        for t0, emotion in stream_through_stage(np.concatenate(pieces)):
            cover = [(min(t0 + 2, b) - max(t0, a), e) for a, b, e in spans if min(t0 + 2, b) > max(t0, a)]
            if not cover:
                continue
            windows += 1
            if emotion:
                truth.append(max(cover)[1])
                judged.append(max(emotion, key=lambda k: emotion[k]))
    y = np.array([ve.LABELS.index(e) for e in truth])
    pred = np.array([ve.LABELS.index(e) for e in judged])
    u, recall = ve.uar(y, pred)
    common = max(set(judged), key=judged.count)
    return {
        "actors": list(actors),
        "windows": windows,
        "coverage": round(len(judged) / windows, 3),
        "uar": round(u, 3),
        "accuracy": round(float((y == pred).mean()), 3),
        "recall": {lab: round(float(r), 3) for lab, r in zip(ve.LABELS, recall)},
        "commonest": {"label": common, "share": round(judged.count(common) / len(judged), 3)},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ve.RUNS / "table.json")
    args = ap.parse_args(argv)
    if not (ve.RUNS / "compare.json").exists():
        raise SystemExit("run `python -m train.voice_emotion features` and `... compare` first (needs ../shared/data)")
    talk = neutral_talk()
    result = {"representations": table(talk)}
    result["shipped_model_in_the_stage"] = {
        "neutral_talk_non_neutral": {
            k: non_neutral_share([max(e, key=lambda j: e[j]) for _, e in stream_through_stage(v) if e])
            for k, v in talk.items()
        },
        "stream_check": stream_check(),
    }
    args.out.write_text(json.dumps(result, indent=1))
    for r in result["representations"]:
        c = r["clean"]
        print(
            f"{r['representation']:12s} {r['normalisation']:8s} aug={r['augmented']!s:5s} UAR {c['uar']:.3f} "
            f"acc {c['accuracy']:.3f} ECE {c['ece']:.3f} aug-test UAR {r['augmented_test']['uar']:.3f} "
            f"ms {r.get('cpu_ms_per_window', {})} neutral-talk {r.get('neutral_talk_non_neutral', {})}"
        )
    print(json.dumps(result["shipped_model_in_the_stage"], indent=1))


if __name__ == "__main__":
    main()
