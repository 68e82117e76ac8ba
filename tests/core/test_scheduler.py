import threading

import numpy as np
import pytest

from edge_xemo.core.scheduler import BoundedQueue, WindowScheduler
from edge_xemo.core.types import SAMPLE_RATE


def test_drop_oldest_queue_keeps_newest_and_counts():
    q = BoundedQueue(3, drop_oldest=True)
    for i in range(10):
        q.put(i)
    assert q.dropped == 7
    assert [q.get(0), q.get(0), q.get(0)] == [7, 8, 9]
    assert q.get(0) is None


def test_blocking_queue_waits_for_space_and_loses_nothing():
    q = BoundedQueue(2, drop_oldest=False)
    got = []

    def consume():
        while len(got) < 50:
            item = q.get(1)
            if item is not None:
                got.append(item)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(50):
        q.put(i)
    t.join(5)
    assert got == list(range(50)) and q.dropped == 0


def test_closed_queue_drains_then_ends():
    q = BoundedQueue(4, drop_oldest=False)
    q.put("a")
    q.close()
    assert q.put("b") is False
    assert q.get(0) == "a" and q.get(0) is None and q.closed


def test_bad_window_settings_raise():
    with pytest.raises(ValueError, match="hop"):
        WindowScheduler(window_s=1.0, hop_s=2.0)
    with pytest.raises(ValueError):
        WindowScheduler(window_s=0, hop_s=0)


def feed(s, duration, fps=25, block=0.1):
    frames = [(i / fps, "f") for i in range(int(duration * fps))]
    blocks = [(i * block, np.full(int(block * SAMPLE_RATE), i, np.float32)) for i in range(int(duration / block))]
    out = []
    while frames or blocks:
        if frames and (not blocks or frames[0][0] <= blocks[0][0]):
            t, o = frames.pop(0)
            s.add_frame(t, o)
        else:
            t, x = blocks.pop(0)
            s.add_audio(t, x, "b")
        out += s.ready()
    return out


def test_windows_wait_for_both_streams_and_roll_by_hop():
    s = WindowScheduler(2.0, 1.0)
    wins = feed(s, 5.0)
    assert [(w.t_start, w.t_end) for w in wins] == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
    assert all(w.n_frames == 50 for w in wins)
    assert all(len(w.audio) == 2 * SAMPLE_RATE for w in wins)
    # the audio of window [1, 3) starts with block 10 (t = 1.0 s)
    assert wins[1].audio[0] == 10 and wins[1].audio_t0 == pytest.approx(1.0)


def test_video_alone_does_not_close_windows_while_audio_is_expected():
    s = WindowScheduler(2.0, 1.0)
    for i in range(100):
        s.add_frame(i / 25, i)
    assert s.ready() == []
    s.end_stream("audio")
    assert len(s.ready()) == 2  # [0,2) and [1,3) are complete; [2,4) still waits for video


def test_end_of_streams_flushes_windows_that_cover_the_data():
    s = WindowScheduler(2.0, 1.0)
    wins = feed(s, 4.6)
    s.end_stream("video")
    s.end_stream("audio")
    wins += s.ready()
    assert wins[0].t_start == 0.0 and wins[-1].t_end >= 4.5
    assert [w.index for w in wins] == list(range(len(wins)))
    assert s.ready() == []


def test_memory_stays_bounded_by_one_window():
    s = WindowScheduler(2.0, 1.0)
    feed(s, 60.0)
    assert len(s._frames) <= 2 * 25 + 1 and len(s._audio_chunks) <= 21
