"""The ROS 2 bridge on the real events of the demo clip: the ROS4HRI mapping, a rosbag2 round trip with
rosbags, and the live rclpy node on localhost (a random ROS domain per test)."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from edge_xemo.core.types import EMOTIONS
from edge_xemo.reasoning.judgement import CUE_AU
from edge_xemo.serve import ros2
from serving import server  # noqa: F401 (a fixture)

SAMPLE_EVENTS = Path(__file__).parents[1] / "data" / "demo_events.jsonl"
DEMO_FRAME_SIZE = [400, 300]
"""Width, height of cap13_edit2.mp4 (cv2.VideoCapture), the clip the sample events come from."""
HRI_MSGS_RIHS01 = {
    "hri_msgs/msg/IdsList": "RIHS01_7e0812d1ac945c98fd3e393568d581ad0ab567f37b24eff633eab778c1bfe62d",
    "hri_msgs/msg/NormalizedRegionOfInterest2D":
        "RIHS01_2e50c93f1ca166ee77af9a5424dc951ae4e452b740162a7f83c082d917dcaff5",
    "hri_msgs/msg/Expression": "RIHS01_411b88e0604397d44775d8ec6a4bc69398fb0dfbfe864c33a40fa99ee85f1b00",
    "hri_msgs/msg/FacialActionUnits": "RIHS01_43f431104624b6ff7f84350f1faa3747efc8a9330dee942b717a08830a267ed3",
}
"""Type hashes of ros4hri/hri_msgs 2.0.0 (humble-devel), computed with rosbags from its own .msg files."""
has_rosbags = importlib.util.find_spec("rosbags") is not None
has_rclpy = importlib.util.find_spec("rclpy") is not None


@pytest.fixture(scope="module")
def events() -> list[dict]:
    """The 73 events of `edge-xemo run` on the demo clip; frame_size added where the run predates it."""
    if not SAMPLE_EVENTS.exists():
        pytest.skip(f"{SAMPLE_EVENTS} is absent")
    out = [json.loads(line) for line in SAMPLE_EVENTS.read_text().splitlines()]
    for e in out:
        if e["type"] == "cues" and not e.get("frame_size"):
            e["frame_size"] = DEMO_FRAME_SIZE
    return out


def mapped(events: list[dict]) -> list[tuple[dict, list[ros2.RosMessage]]]:
    mapper = ros2.HriMapper()
    return [(e, mapper(e)) for e in events]


def on(messages, suffix: str) -> list[ros2.RosMessage]:
    return [m for m in messages if m.topic.endswith(suffix)]


def test_every_event_goes_out_as_json(events):
    for event, messages in mapped(events):
        assert messages[0].topic == "/edge_xemo/events" and messages[0].msgtype == "std_msgs/msg/String"
        assert json.loads(messages[0].fields["data"]) == event


def test_tracked_faces_roi_and_speaking(events):
    cues = [(e, ms) for e, ms in mapped(events) if e["type"] == "cues"]
    for event, messages in cues:
        (tracked,) = on(messages, "/humans/faces/tracked")
        assert tracked.fields["ids"] == ([] if event["face_id"] is None else [f"face{event['face_id']}"])
        rois = on(messages, "/roi")
        assert len(rois) == (event["face_id"] is not None)
        for roi in rois:
            f, (w, h) = roi.fields, event["frame_size"]
            assert roi.topic == f"/humans/faces/face{event['face_id']}/roi"
            assert all(0.0 <= f[k] <= 1.0 for k in ("xmin", "ymin", "xmax", "ymax", "c"))
            assert f["xmin"] < f["xmax"] and f["ymin"] < f["ymax"]
            assert f["xmin"] == pytest.approx(event["faces"][0]["box"][0] / w)
            assert f["ymax"] == pytest.approx(event["faces"][0]["box"][3] / h)
        (speaking,) = on(messages, "/humans/voices/voice_default/is_speaking")
        assert speaking.fields["data"] == (event["voice"]["speech_ratio"] > 0.15)
    speaking = {e["t_start"]: on(ms, "/is_speaking")[0].fields["data"] for e, ms in cues}
    assert (speaking[0.0], speaking[5.0], speaking[6.0], speaking[8.0]) == (False, False, True, True)
    assert sum(len(on(ms, "/roi")) for _, ms in cues) == 25  # 29 windows, 4 without a face


def test_roi_needs_frame_size(events):
    event = next(e for e in events if e["type"] == "cues" and e["face_id"] is not None)
    assert not on(ros2.ros_messages({**event, "frame_size": None}), "/roi")


def test_facs_action_units(events):
    first = next(e for e in events if e["type"] == "cues")
    (facs,) = on(mapped([first])[0][1], "/facs")
    intensity, confidence = facs.fields["intensity"], facs.fields["confidence"]
    assert facs.topic == "/humans/faces/face0/facs" and len(intensity) == len(confidence) == 99
    cues = {c["name"]: c["intensity"] for c in first["visual_cues"]}  # lips_part, brows raised, chin raised
    assert {au: intensity[au] for au in (25, 1, 2, 17)} == {
        25: cues["lips_part"], 1: cues["inner_brow_raise"], 2: cues["outer_brow_raise"], 17: cues["chin_raise"]}
    assert {i for i, x in enumerate(intensity) if x} == {CUE_AU[name] for name in cues}
    assert {i for i, x in enumerate(confidence) if x} == set(CUE_AU.values())
    nod = next(e for e in events if e["type"] == "cues" and "nod" in {c["name"] for c in e["visual_cues"]})
    (facs,) = on(ros2.ros_messages(nod), "/facs")  # a head movement: no AU of ours
    assert {i for i, x in enumerate(facs.fields["intensity"]) if x} == {25, 12}


def test_expression_goes_to_the_windows_primary_face(events):
    pairs = mapped(events)
    explanations = [(e, on(ms, "/expression")) for e, ms in pairs if e["type"] == "explanation"]
    faceless = {e["t_start"] for e in events if e["type"] == "cues" and e["face_id"] is None}
    assert len(explanations) == 19
    for event, expressions in explanations:
        if event["t_start"] in faceless:  # 23 s and 27 s: heard, not seen
            assert not expressions
            continue
        (expression,) = expressions
        assert expression.topic == "/humans/faces/face0/expression"
        assert expression.fields["expression"] == "neutral" == event["emotion"]["label"]
        assert (expression.fields["valence"], expression.fields["arousal"]) == (0.0, 0.0)
        assert expression.fields["confidence"] == event["emotion"]["confidence"]
    assert sum(bool(x) for _, x in explanations) == 17


def test_each_person_s_explanation_goes_to_their_own_face(events):
    """Schema 1.2: two people in one window, each explained; their expressions go to their own faces."""
    window = next(e for e in events if e["type"] == "explanation" and e["emotion"]["label"] == "neutral")
    two = [{**window, "schema_version": "1.2", "face_id": face, "emotion": {**window["emotion"], "label": label},
            "speaker": {"face_id": 1, "reason": "face 1's lips follow the voice"}}
           for face, label in ((0, "neutral"), (1, "happy"))]
    mapper = ros2.HriMapper()
    topics = {m.topic: m.fields["expression"] for e in two for m in on(mapper(e), "/expression")}
    assert topics == {"/humans/faces/face0/expression": "neutral", "/humans/faces/face1/expression": "happy"}
    faceless = {**two[0], "face_id": None}
    assert not on(mapper(faceless), "/expression")


def test_expression_table_covers_every_label(events):
    assert set(ros2.EXPRESSIONS) == set(EMOTIONS)
    for name, valence, arousal in ros2.EXPRESSIONS.values():
        assert name in {"neutral", "happy", "sad", "angry", "surprised", "scared", "disgusted"}  # hri_msgs names
        assert math.hypot(valence, arousal) == pytest.approx(0.0 if name == "neutral" else 1.0, abs=1e-3)
    v = {label: ros2.EXPRESSIONS[label][1:] for label in EMOTIONS}
    assert v["happy"][0] > 0.9 and max(v["sad"]) < 0 and v["angry"][1] > 0.9 and v["fear"][1] > v["worried"][1]
    explanation = next(e for e in events if e["type"] == "explanation")
    happy = {**explanation, "emotion": {**explanation["emotion"], "label": "happy"}}
    (expression,) = on(ros2.ros_messages(happy, expression_face="face3"), "/humans/faces/face3/expression")
    assert (expression.fields["expression"], expression.fields["valence"]) == ("happy", 0.991)


def test_tracked_list_gathers_the_faces_of_a_window(events):
    first = next(e for e in events if e["type"] == "cues" and e["face_id"] is not None)
    second = {**first, "face_id": 1, "visual_cues": [], "voice": {}, "auditory_cues": [],
              "faces": [{**first["faces"][0], "face_id": 1}]}
    later = next(e for e in events if e["type"] == "cues" and e["t_start"] > first["t_start"])
    mapper = ros2.HriMapper()
    tracked = [on(mapper(e), "/humans/faces/tracked")[0].fields["ids"] for e in (first, second, later)]
    assert tracked == [["face0"], ["face0", "face1"], ["face0"]]


def test_messages_mirror_hri_msgs():
    if not has_rosbags:
        pytest.skip("rosbags is not installed (pip install edge-xemo[ros2])")
    store = ros2.typestore()
    assert {name: store.hash_rihs01(name) for name in HRI_MSGS_RIHS01} == HRI_MSGS_RIHS01


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_rosbag2_round_trip(events, tmp_path, storage):
    if not has_rosbags:
        pytest.skip("rosbags is not installed (pip install edge-xemo[ros2])")
    expected = [(m, ros2.stamp_ns(e)) for e, ms in mapped(events) for m in ms]
    assert ros2.write_bag(tmp_path / "bag", events, storage=storage) == len(expected) == 227
    read = ros2.read_bag(tmp_path / "bag")
    assert Counter(topic for topic, *_ in read) == Counter(m.topic for m, _ in expected)
    by_topic = {}  # a bag is read in time order, and the sample's wall_times are not (explanations come late)
    for m, t in sorted(expected, key=lambda pair: pair[1]):
        by_topic.setdefault(m.topic, []).append((m, t))
    got = {}
    for topic, msgtype, t, msg in read:
        got.setdefault(topic, []).append((msgtype, t, msg))
    for topic, pairs in by_topic.items():
        for (m, t), (msgtype, t_read, msg) in zip(pairs, got[topic]):
            assert (msgtype, t_read) == (m.msgtype, t)
            for name, value in m.fields.items():
                if name == "header":
                    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == tuple(value["stamp"].values())
                elif isinstance(value, list) and value and isinstance(value[0], float):
                    assert list(getattr(msg, name)) == pytest.approx(value, abs=1e-6)  # float32
                elif isinstance(value, float):
                    assert getattr(msg, name) == pytest.approx(value, abs=1e-6)
                else:
                    assert getattr(msg, name) == value
    assert [json.loads(msg.data) for _, _, msg in got["/edge_xemo/events"]] == sorted(
        events, key=ros2.stamp_ns)


@pytest.fixture
def ros_domain(monkeypatch):
    if not has_rclpy:
        pytest.skip("rclpy is not installed (pip install edge-xemo[ros2])")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def test_live_bridge_on_localhost(events, ros_domain):
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    hri = ros2.hri_types_available()
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("edge_xemo_test_listener", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received = {"events": [], "tracked": []}
    node.create_subscription(String, "/edge_xemo/events", lambda m: received["events"].append(m.data), 100)
    topics = ["/edge_xemo/events"]
    if hri:
        from hri_msgs.msg import IdsList

        node.create_subscription(IdsList, "/humans/faces/tracked",
                                 lambda m: received["tracked"].append(list(m.ids)), 100)
        topics.append("/humans/faces/tracked")
    discovered = threading.Event()

    def stream():  # starts once the bridge's publishers are seen, then paced like a live stream
        assert discovered.wait(15), "the bridge's publishers were not discovered in 15 s"
        time.sleep(1.0)  # for the publishers to match the listener in turn (milliseconds on localhost)
        for e in events:
            time.sleep(0.01)
            yield e

    result = {}
    bridge = threading.Thread(target=lambda: result.update(n=ros2.run_bridge(stream(), node_name="edge_xemo_test")))
    bridge.start()
    try:
        deadline = time.monotonic() + 30
        while (bridge.is_alive() or len(received["events"]) < len(events)) and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if not discovered.is_set() and all(node.count_publishers(t) for t in topics):
                if hri:  # the wire type is hri_msgs 2.0.0's
                    (info,) = node.get_publishers_info_by_topic("/humans/faces/tracked")
                    assert str(info.topic_type_hash) == HRI_MSGS_RIHS01["hri_msgs/msg/IdsList"]
                discovered.set()
    finally:
        discovered.set()
        bridge.join(15)
        node.destroy_node()
        context.try_shutdown()
    assert [json.loads(d) for d in received["events"]] == events
    n_cues = sum(e["type"] == "cues" for e in events)
    if hri:
        assert len(received["tracked"]) == n_cues and received["tracked"][0] == ["face0"]
        assert result["n"] == 227
    else:
        assert result["n"] == len(events) + n_cues  # events and is_speaking: the std_msgs topics


def test_run_bridge_stops_between_events(events, ros_domain):
    stop = threading.Event()
    stop.set()
    t0 = time.monotonic()

    def endless():
        while True:
            yield from events

    assert ros2.run_bridge(endless(), node_name="edge_xemo_test_stop", stop=stop) == 0
    assert time.monotonic() - t0 < 10


def test_the_ros2_command_republishes_a_running_server(server, ros_domain):
    """`edge-xemo serve` replaying the demo clip -> `edge-xemo ros2` (over WebSocket) -> a ROS 2 listener."""
    import subprocess
    import sys

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("edge_xemo_cli_listener", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received: list[dict] = []
    node.create_subscription(String, "/edge_xemo/events", lambda m: received.append(json.loads(m.data)), 100)
    bridge = subprocess.Popen([sys.executable, "-m", "edge_xemo", "ros2", "--url", server.ws, "--token-file",
                               str(server.log.parent / "tokens.json"), "--node-name", "edge_xemo_cli"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not {"cues", "explanation"} <= {e["type"] for e in received}:
            executor.spin_once(timeout_sec=0.1)
            assert bridge.poll() is None, bridge.stdout.read()
    finally:
        bridge.terminate()
        bridge.wait(20)
        node.destroy_node()
        context.try_shutdown()
    assert {"cues", "explanation"} <= {e["type"] for e in received}
    seqs = [e["seq"] for e in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # the server's events, in order, once each
