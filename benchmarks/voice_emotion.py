"""Emotion from the voice: one table of representations, leave-actors-out on RAVDESS, cost and neutral talk.

    python -m train.voice_emotion features     # once: window vectors of RAVDESS (clean + augmented)
    python -m train.voice_emotion compare      # once: the leave-actors-out cross-validation (runs/voice_emotion/compare.json)
    python benchmarks/voice_emotion.py         # this table -> runs/voice_emotion/table.json
    python benchmarks/voice_emotion.py --stage-only --out runs/voice_emotion/stage.json   # the stage rows alone
    python benchmarks/voice_emotion.py --stage-only --sidecar   # also record them in the voice_emotion sidecar

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
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from edge_xemo.core.paths import home  # noqa: E402
from edge_xemo.core.types import SAMPLE_RATE  # noqa: E402
from edge_xemo.io.audio import Conditioner  # noqa: E402
from edge_xemo.reasoning.judgement import Judge, JudgementOptions, top_label  # noqa: E402
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


def vector_ms(rep: ve.Representations, name: str, samples: np.ndarray, head) -> dict:
    """CPU ms per 2 s window of one representation and its classifier (200 windows, median and p95)."""
    from train.voice_functionals import window_functionals

    compute = {
        "functionals": lambda x: window_functionals(ve.frame_features(x), ve.analyze_frames(x)),
        "whisper_layers": lambda x: rep.whisper(x),
        "egemaps": lambda x: rep.smile.process_signal(x, SAMPLE_RATE).to_numpy()[0],
    }[name]
    ms = []
    for a in np.linspace(0, len(samples) - ve.WINDOW, 200).astype(int):
        t = time.process_time()
        v = compute(samples[a : a + ve.WINDOW])
        if v is not None:
            head(np.asarray(v, np.float32)[None])
        ms.append((time.process_time() - t) * 1e3)
    return {"median": round(statistics.median(ms), 2), "p95": round(float(np.percentile(ms, 95)), 2)}


def non_neutral_share(labels: list[str]) -> float:
    return round(float(np.mean([lab != "neutral" for lab in labels])), 3) if labels else float("nan")


def table(talk: dict[str, np.ndarray]) -> list[dict]:
    rows = json.loads((ve.RUNS / "compare.json").read_text())
    speech = np.concatenate(list(talk.values())) if talk else None
    for rep_name in sorted({r["representation"] for r in rows}):
        base = "whisper_layers" if rep_name in ve.SLICES else rep_name  # a slice of the encoder graph's output
        columns = slice(*ve.SLICES.get(rep_name, (None, None)))
        rep = ve.Representations((base,))
        meta, x = ve.load(rep_name)
        y = np.array([ve.LABELS.index("neutral" if e == "calm" else e) for e in meta["emotion"]])
        windows = {k: rep.windows(v)[base][:, columns] for k, v in talk.items()}
        for row in [r for r in rows if r["representation"] == rep_name and r["normalisation"] == "window"]:
            tr = ve.training_rows(meta, row["training"])
            model = ve.fit_mlp(x[tr], y[tr], row["weight_decay"])
            row["neutral_talk_non_neutral"] = {
                k: non_neutral_share([ve.LABELS[i] for i in model.predict(w)]) for k, w in windows.items() if len(w)
            }
            if speech is not None:
                row["cpu_ms_per_window"] = vector_ms(rep, base, speech, lambda v: model.logits(v[:, columns]))
    return rows


def stream_through_stage(samples: np.ndarray, model: bool = True, block: int = 320) -> tuple[list, float]:
    """The real voice stage over a stream, 2 s windows every 1 s: ([(window start, result)], CPU s of the stage)."""
    from collections import deque

    out, obs = [], deque()
    conditioner, kept = Conditioner(), np.zeros(len(samples), np.float32)  # conditioned where it enters, as live
    with VoicePerception(VoiceOptions(use_bridge=False, use_emotion_model=model)) as voice:
        cpu = time.process_time()
        next_end = 2.0
        for i, a in enumerate(range(0, len(samples), block)):
            conditioned = conditioner.block(samples[a : a + block], SAMPLE_RATE, a / SAMPLE_RATE, i)
            kept[a : a + block] = conditioned.samples
            obs.append(voice.process_block(conditioned))
            while (a + block) / SAMPLE_RATE >= next_end:
                t0 = next_end - 2.0
                while obs and obs[0].t < t0 - 0.1:
                    obs.popleft()
                seg = kept[int(t0 * SAMPLE_RATE) : int(next_end * SAMPLE_RATE)]
                out.append((t0, voice.summarize(seg, t0, list(obs), t0, next_end)))
                next_end += 1.0
        return out, time.process_time() - cpu


def judged(results: list) -> list[tuple[str, bool]]:
    """(label, confident) per window any source speaks about, by the judgement as the analyzer runs it on audio
    alone (smoothed over the stream; the voice model's distribution, or the vocal profiles when it is off)."""
    judge = Judge(JudgementOptions(words=False))
    out = []
    for t0, r in results:
        sources = judge.sources(None, r, [], [c.phrase for c in r.cues], None)
        if sources:
            j = judge.judge(sources, t0)
            out.append((j.label, j.outcome.confident))
    return out


def emotional_share(labels: list[tuple[str, bool]]) -> float:
    """Share of windows given an emotion with confidence (a label other than neutral, not abstained)."""
    return round(float(np.mean([c and lab != "neutral" for lab, c in labels])), 3) if labels else float("nan")


def in_the_stage(talk: dict[str, np.ndarray]) -> dict:
    """The shipped model through the stage: its raw labels, the judged labels (and those of the vocal-profile
    fallback, the judgement before the model), its ms per window and the audio path's real-time factor."""
    out: dict = {"neutral_talk": {}}
    ms, cpu, seconds, cpu_off = [], 0.0, 0.0, 0.0
    for name, samples in talk.items():
        on, cpu_on = stream_through_stage(samples)
        off, cpu_without = stream_through_stage(samples, model=False)
        cpu, cpu_off, seconds = cpu + cpu_on, cpu_off + cpu_without, seconds + len(samples) / SAMPLE_RATE
        ms += [r.latency_ms["emotion"] for _, r in on if "emotion" in r.latency_ms]
        out["neutral_talk"][name] = {
            "model_non_neutral": non_neutral_share([top_label(r.emotion) for _, r in on if r.emotion]),
            "judged_emotional": emotional_share(judged(on)),
            "judged_emotional_vocal_profiles": emotional_share(judged(off)),
        }
    out["emotion_ms_per_window"] = {"median": round(statistics.median(ms), 2), "p95": round(float(np.percentile(ms, 95)), 2)}
    out["real_time_factor"] = {"model_on": round(cpu / seconds, 4), "model_off": round(cpu_off / seconds, 4)}
    return out


def actor_stream(actor: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """One actor's non-calm utterances in `rng`'s order, each followed by 1 s of silence, as one 16 kHz stream,
    and each utterance's (start s, end s, emotion)."""
    utts = [u for u in ve.utterances() if u.actor == actor and u.emotion != "calm"]
    rng.shuffle(utts)
    pieces, spans, t = [], [], 0.0
    for u in utts:
        x = ve.load_flac(u.path)
        pieces += [x, np.zeros(SAMPLE_RATE, np.float32)]
        spans.append((t, t + len(x) / SAMPLE_RATE, u.emotion))
        t += len(x) / SAMPLE_RATE + 1.0
    return np.concatenate(pieces), spans


def stream_check(actors=ve.STREAM_ACTORS) -> dict:
    """Actors never trained on, each as one shuffled stream through the stage, scored per window: the model's own
    label and the judged one (confident windows only; coverage = the share of windows over speech they are)."""
    rng = np.random.default_rng(ve.SEED)
    truth, raw, judged_truth, judged_labels = [], [], [], []
    for actor in actors:
        samples, spans = actor_stream(actor, rng)
        results, _ = stream_through_stage(samples)
        scored, labels = [], []  # the windows over an utterance that the model judged, and their truth
        for t0, r in results:
            cover = [(min(t0 + 2, b) - max(t0, a), e) for a, b, e in spans if min(t0 + 2, b) > max(t0, a)]
            if cover and r.emotion:
                scored.append((t0, r))
                labels.append(max(cover)[1])
        truth += labels
        raw += [top_label(r.emotion) for _, r in scored]
        for label, (verdict, confident) in zip(labels, judged(scored)):  # every scored window has a source
            if confident:
                judged_truth.append(label)
                judged_labels.append(verdict)

    def score(truth: list[str], pred: list[str]) -> dict:
        y, p = np.array([ve.LABELS.index(e) for e in truth]), np.array([ve.LABELS.index(e) for e in pred])
        u, recall = ve.uar(y, p)
        common = max(set(pred), key=pred.count)
        return {
            "windows": len(pred),
            "uar": round(u, 3),
            "accuracy": round(float((y == p).mean()), 3),
            "recall": {lab: round(float(r), 3) for lab, r in zip(ve.LABELS, recall)},
            "commonest": {"label": common, "share": round(pred.count(common) / len(pred), 3)},
        }

    return {
        "actors": list(actors),
        "model": score(truth, raw),
        "judged": score(judged_truth, judged_labels) | {"coverage": round(len(judged_labels) / len(truth), 3)},
    }


def record_in_sidecar(stage: dict) -> None:
    """The stage rows into the `voice_emotion` sidecar's `metrics` (the model measured is the one it describes)."""
    from edge_xemo.core.models import ModelError, verified_path

    try:
        verified_path("voice_emotion")  # the sidecar describes the model file the stage ran
    except ModelError as e:
        raise SystemExit(f"{e}: refit before recording metrics") from None
    path = ve.MODELS / "voice_emotion.json"
    entry = json.loads(path.read_text())
    check = stage["stream_check"]
    entry["metrics"] |= {
        "command": f"python -m train.voice_emotion compare; python -m train.voice_emotion ensemble; python "
        f"benchmarks/voice_emotion.py --stage-only --sidecar ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)",
        "stream_check_actors_21_24": {
            "model_per_window": {k: check["model"][k] for k in ("windows", "uar", "accuracy")},
            "judged_confident": {k: check["judged"][k] for k in ("windows", "uar", "accuracy", "coverage")},
        },
        "neutral_talk_judged_emotional_share": {k: v["judged_emotional"] for k, v in stage["neutral_talk"].items()},
        "neutral_talk_model_non_neutral_share": {k: v["model_non_neutral"] for k, v in stage["neutral_talk"].items()},
        "cpu": {
            "emotion_ms_per_window": stage["emotion_ms_per_window"],
            "voice_stage_real_time_factor": stage["real_time_factor"],
        },
    }
    path.write_text(json.dumps(entry, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ve.RUNS / "table.json")
    ap.add_argument("--stage-only", action="store_true", help="only the shipped model through the real voice stage")
    ap.add_argument("--sidecar", action="store_true", help="record the stage rows in the voice_emotion sidecar")
    args = ap.parse_args(argv)
    talk = neutral_talk()
    result: dict = {"representations": []}
    if not args.stage_only:
        if not (ve.RUNS / "compare.json").exists():
            raise SystemExit("run `python -m train.voice_emotion features` and `... compare` first (needs ../shared/data)")
        result["representations"] = table(talk)
    result["shipped_model_in_the_stage"] = in_the_stage(talk) | {"stream_check": stream_check()}
    args.out.write_text(json.dumps(result, indent=1))
    if args.sidecar:
        record_in_sidecar(result["shipped_model_in_the_stage"])
    for r in result["representations"]:
        c = r["clean"]
        print(
            f"{r['representation']:12s} {r['normalisation']:8s} {r['training']:10s} UAR {c['uar']:.3f} "
            f"utterance UAR {c['utterance_uar']:.3f} "
            f"acc {c['accuracy']:.3f} ECE {c['ece']:.3f} aug-test UAR {r['augmented_test']['uar']:.3f} "
            f"ms {r.get('cpu_ms_per_window', {})} neutral-talk {r.get('neutral_talk_non_neutral', {})}"
        )
    print(json.dumps(result["shipped_model_in_the_stage"], indent=1))


if __name__ == "__main__":
    main()
