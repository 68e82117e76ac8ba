"""Who is speaking (`analysis.speakers`), on synthetic lips and voices whose relation is known."""

from __future__ import annotations

import numpy as np

from edge_xemo.analysis.speakers import Speakers
from edge_xemo.core.types import Activity, ModalityResult

FPS, STEP = 25, 0.01


def voice(t0: float, syllables_hz: float = 4.0, speech: bool = True) -> ModalityResult:
    """A 2 s voice whose loudness rises and falls with its syllables (dB per 10 ms frame)."""
    t = t0 + np.arange(0, 2, STEP)
    level = -40 + 20 * np.clip(np.sin(2 * np.pi * syllables_hz * (t - t0)), 0, None)
    mask = np.full(len(t), speech)
    return ModalityResult("auditory", activity=Activity(t, level, mask))


def person(face_id: int, t0: float, follows: float, seed: int = 0) -> ModalityResult:
    """A face whose lip gap is `follows` times the voice's syllables plus its own movement."""
    t = t0 + np.arange(0, 2, 1 / FPS)
    own = np.random.default_rng(seed).normal(0, 0.05, len(t))
    gap = 0.1 + follows * 0.2 * np.clip(np.sin(2 * np.pi * 4.0 * (t - t0)), 0, None) + own
    return ModalityResult("visual", face_id=face_id, activity=Activity(t, gap))


def test_the_voice_goes_to_the_lips_that_follow_it():
    a = Speakers().attribute([person(0, 0, 0.0, 1), person(1, 0, 1.0, 2)], voice(0), 2.0)
    assert a.face_id == 1 and a.scores[1] > 0.5 > a.scores[0]
    assert a.hears(person(1, 0, 1.0), 2) and not a.hears(person(0, 0, 0.0), 2)


def test_lips_that_follow_it_equally_get_nobody():
    a = Speakers().attribute([person(0, 0, 1.0, 1), person(1, 0, 1.0, 2)], voice(0), 2.0)
    assert a.face_id is None and a.speech
    assert not a.hears(person(0, 0, 1.0), 2) and not a.hears(person(1, 0, 1.0), 2)


def test_without_speech_the_words_go_to_the_first_face_and_one_face_hears_everything():
    quiet = Speakers().attribute([person(3, 0, 0.0), person(4, 0, 0.0)], voice(0, speech=False), 2.0)
    assert quiet.face_id is None and not quiet.speech and quiet.first == 3
    assert quiet.hears(person(3, 0, 0.0), 2) and not quiet.hears(person(4, 0, 0.0), 2)
    alone = Speakers().attribute([person(5, 0, 0.0)], voice(0), 2.0)
    assert alone.face_id == 5 and alone.reason == "the only face in view"


def test_one_window_of_chance_following_does_not_take_the_voice_from_its_speaker():
    speakers = Speakers()
    for k in range(4):  # face 1 speaks for four windows
        a = speakers.attribute([person(0, k, 0.0, k), person(1, k, 1.0, 10 + k)], voice(k), k + 2.0)
        assert a.face_id == 1
    # then a window where face 0's lips happen to follow as well as face 1's
    a = speakers.attribute([person(0, 4, 1.0, 20), person(1, 4, 0.9, 21)], voice(4), 6.0)
    assert a.face_id == 1
    assert Speakers().attribute([person(0, 4, 1.0, 20), person(1, 4, 0.9, 21)], voice(4), 6.0).face_id is None


def test_a_face_not_measured_for_long_is_forgotten():
    """Face 1 spoke long ago; now it is in view with too few frames to measure: its old score does not count."""
    speakers = Speakers()
    assert speakers.attribute([person(0, 0, 0.0, 1), person(1, 0, 1.0, 2)], voice(0), 2.0).face_id == 1
    glimpse = ModalityResult("visual", face_id=1, activity=Activity(np.arange(3) / FPS + 60, np.zeros(3)))
    later = speakers.attribute([person(0, 60, 1.0, 3), glimpse], voice(60), 62.0)
    assert later.scores == {0: later.scores[0]} and later.face_id == 0
