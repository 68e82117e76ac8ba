"""ROS 2 bridge: edge-xemo events as ROS4HRI topics (REP-155), published live with rclpy or written to rosbag2.

Topics, with the ROS4HRI ids `face<face_id>` (the tracker's integer face id: stable for as long as the
tracker keeps the face) and `voice_<speaker>` (voice.speaker, other characters than [A-Za-z0-9_] as `_`):

- `/humans/faces/tracked` (hri_msgs/IdsList): the faces of the latest window;
- `/humans/faces/<id>/roi` (hri_msgs/NormalizedRegionOfInterest2D): the face box over frame_size (none
  without frame_size);
- `/humans/faces/<id>/facs` (hri_msgs/FacialActionUnits): the visual cues as FACS action units;
- `/humans/faces/<id>/expression` (hri_msgs/Expression): the emotion of each person's explanation event;
- `/humans/voices/tracked` (hri_msgs/IdsList) and `/humans/voices/<id>/is_speaking` (std_msgs/Bool);
- `/edge_xemo/events` (std_msgs/String): every event as its JSON line.

The hri_msgs types are edge-xemo's own definitions (`ros2_msgs/msg/*.msg`) with the fields of
ros4hri/hri_msgs 2.0.0 under the same names, so their type hashes are those of hri_msgs and ROS4HRI
nodes read them. rosbags needs only the .msg text; rclpy needs compiled type support, which
`python -m edge_xemo.serve.ros2 build-msgs` generates into the running environment (`build_hri_msgs`).
Headers are stamped with the event's wall_time (when edge-xemo emitted it), frame_id empty.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analyzer import AnalyzerOptions
from ..reasoning.judgement import CUE_AU
from ..voice.stage import VoiceOptions

log = logging.getLogger(__name__)

MSG_DIR = Path(__file__).parent / "ros2_msgs" / "msg"
"""Our .msg files; each names the hri_msgs message it mirrors."""
HRI_PACKAGE = "hri_msgs"
IDS_LIST = "hri_msgs/msg/IdsList"
ROI = "hri_msgs/msg/NormalizedRegionOfInterest2D"
EXPRESSION = "hri_msgs/msg/Expression"
FACS = "hri_msgs/msg/FacialActionUnits"
BOOL = "std_msgs/msg/Bool"
STRING = "std_msgs/msg/String"
EVENTS_TOPIC = "/edge_xemo/events"
FACES_TRACKED = "/humans/faces/tracked"
VOICES_TRACKED = "/humans/voices/tracked"

N_ACTION_UNITS = 99
"""Length of FacialActionUnits.intensity/confidence: one slot per FACS code 0-98, indexed by AU number."""
SPEAKING_RATIO = VoiceOptions().min_window_speech_s / AnalyzerOptions().window_s
"""is_speaking when voice.speech_ratio exceeds this: 0.3 s of speech (the least from which the voice stage
reads vocal cues, below it the window is `too_little_speech`) in the default 2 s window = 0.15."""

_CIRCUMPLEX_DEG = {
    "happy": 7.8,  # "happy"
    "surprise": 69.8,  # "astonished"
    "angry": 99.0,  # "angry"
    "fear": 116.8,  # "afraid"
    "disgust": 123.0,  # "annoyed": Russell's 28 words have no disgust; annoyance is its nearest neighbour
    "worried": 138.0,  # "distressed"
    "sad": 207.5,  # "sad"
}
"""Angle of each label's word on Russell's circumplex (Russell 1980, A circumplex model of affect, JPSP 39(6),
table of the direct circular scaling of 28 affect words; 0 deg = pleasure, 90 deg = arousal)."""
EXPRESSIONS: dict[str, tuple[str, float, float]] = {
    "neutral": ("neutral", 0.0, 0.0),  # the neutral centre of the circumplex
    **{
        label: (
            name,
            round(math.cos(math.radians(_CIRCUMPLEX_DEG[label])), 3),
            round(math.sin(math.radians(_CIRCUMPLEX_DEG[label])), 3),
        )
        for label, name in (
            ("happy", "happy"),
            ("sad", "sad"),
            ("angry", "angry"),
            ("surprise", "surprised"),
            ("fear", "scared"),
            ("disgust", "disgusted"),
            ("worried", "scared"),
        )
    },
}
"""Emotion label -> (hri_msgs Expression name, valence, arousal): the word's point on the unit circumplex,
valence = cos, arousal = sin. hri_msgs names no worry: it is "scared", worry and anxiety being states of the
fear family (Ekman & Ekman, Atlas of Emotions, 2016), and keeps its own, calmer circumplex point."""

QUEUE_DEPTH = 10
"""History depth of each publisher (rclpy's usual 10): a topic gets one message per event, a few per window."""
REMEMBERED_WINDOWS = 64
"""Windows whose primary face HriMapper keeps for late explanations: an explanation trails its window by
the reasoning time (0.9 s on the demo clip), 64 windows are a minute at the default 1 s hop."""


@dataclass(frozen=True, slots=True)
class RosMessage:
    """One message to publish: topic, ROS 2 type name ("hri_msgs/msg/Expression") and field values (nested
    messages as dicts)."""

    topic: str
    msgtype: str
    fields: dict


def face_ros_id(face_id: int) -> str:
    return f"face{face_id}"


def voice_ros_id(speaker: str) -> str:
    return "voice_" + re.sub(r"[^A-Za-z0-9_]", "_", speaker)


def stamp_ns(event: dict) -> int:
    """The event's wall_time in nanoseconds (0 without one)."""
    return round(float(event.get("wall_time") or 0.0) * 1e9)


def _header(event: dict) -> dict:
    sec, nanosec = divmod(stamp_ns(event), 1_000_000_000)
    return {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": ""}


def _unit(x: float) -> float:
    return min(1.0, max(0.0, x))


def _face_messages(event: dict, header: dict) -> list[RosMessage]:
    face_id = event.get("face_id")
    face = next((f for f in event.get("faces") or () if f.get("face_id") == face_id), None)
    if face_id is None or face is None:
        return []
    rid, score = face_ros_id(face_id), float(face["score"])
    out = []
    if event.get("frame_size"):
        (w, h), (x0, y0, x1, y1) = event["frame_size"], face["box"]
        out.append(
            RosMessage(
                f"/humans/faces/{rid}/roi",
                ROI,
                {
                    "header": header,
                    "xmin": _unit(x0 / w),
                    "ymin": _unit(y0 / h),
                    "xmax": _unit(x1 / w),
                    "ymax": _unit(y1 / h),
                    "c": _unit(score),
                },
            )
        )
    intensity, confidence = [0.0] * N_ACTION_UNITS, [0.0] * N_ACTION_UNITS
    for au in CUE_AU.values():  # each is read in every window (absent: below its threshold), as sure as the face
        confidence[au] = _unit(score)
    for cue in event.get("visual_cues") or ():
        if cue.get("name") in CUE_AU:
            intensity[CUE_AU[cue["name"]]] = _unit(float(cue["intensity"]))
    out.append(
        RosMessage(
            f"/humans/faces/{rid}/facs", FACS, {"header": header, "intensity": intensity, "confidence": confidence}
        )
    )
    return out


def ros_messages(
    event: dict, *, tracked_faces: Sequence[str] | None = None, expression_face: str | None = None
) -> list[RosMessage]:
    """The ROS messages of one event (pure).

    A cues event gives the tracked faces (`tracked_faces`, or else its own face), its face's roi and facs,
    and, when it carries voice measures, the voice's is_speaking. An explanation gives the expression of
    `expression_face` (none when None: explanations name no face; `HriMapper` supplies it). Every event
    also goes to /edge_xemo/events as JSON.
    """
    out = [RosMessage(EVENTS_TOPIC, STRING, {"data": json.dumps(event, ensure_ascii=False)})]
    header = _header(event)
    if event.get("type") == "cues":
        if tracked_faces is None:
            tracked_faces = [face_ros_id(f["face_id"]) for f in event.get("faces") or ()]
        out.append(RosMessage(FACES_TRACKED, IDS_LIST, {"header": header, "ids": list(tracked_faces)}))
        out += _face_messages(event, header)
        voice = event.get("voice") or {}
        if "speech_ratio" in voice:
            vid = voice_ros_id(str(voice.get("speaker", "default")))
            out.append(RosMessage(VOICES_TRACKED, IDS_LIST, {"header": header, "ids": [vid]}))
            out.append(
                RosMessage(
                    f"/humans/voices/{vid}/is_speaking", BOOL, {"data": float(voice["speech_ratio"]) > SPEAKING_RATIO}
                )
            )
    elif event.get("type") == "explanation" and expression_face is not None:
        emotion = event.get("emotion") or {}
        if emotion.get("label") in EXPRESSIONS:
            name, valence, arousal = EXPRESSIONS[emotion["label"]]
            confidence = emotion.get("confidence")
            if confidence is None:
                confidence = max((emotion.get("scores") or {}).values(), default=0.0)
            out.append(
                RosMessage(
                    f"/humans/faces/{expression_face}/expression",
                    EXPRESSION,
                    {
                        "header": header,
                        "expression": name,
                        "valence": valence,
                        "arousal": arousal,
                        "confidence": _unit(float(confidence)),
                    },
                )
            )
    return out


class HriMapper:
    """`ros_messages` over a stream, with the state it needs.

    The analyzer emits one cues event per face of a window (the first, the primary face, carries the audio):
    the tracked list is the faces of the window so far. An explanation (schema 1.2) is one person's: the
    expression goes to its `face_id`. Events of schema 1.1 carry no face_id: the expression goes to the primary
    face of the explanation's window (same source, t_start, t_end), or, for a window no longer remembered, of
    the latest cues event; a window without a face gets no expression.
    """

    def __init__(self):
        self._window: tuple | None = None
        self._window_faces: list[str] = []
        self._primary: OrderedDict[tuple, str | None] = OrderedDict()

    def __call__(self, event: dict) -> list[RosMessage]:
        window = (event.get("source"), event.get("t_start"), event.get("t_end"))
        if event.get("type") == "cues":
            face_id = event.get("face_id")
            face = None if face_id is None else face_ros_id(face_id)
            if window != self._window:
                self._window, self._window_faces = window, []
                self._primary[window] = face
                self._primary.move_to_end(window)
                while len(self._primary) > REMEMBERED_WINDOWS:
                    self._primary.popitem(last=False)
            if face is not None and face not in self._window_faces:
                self._window_faces.append(face)
            return ros_messages(event, tracked_faces=list(self._window_faces))
        if event.get("type") == "explanation" and "face_id" in event:  # schema 1.2: each person's own explanation
            face_id = event["face_id"]
            return ros_messages(event, expression_face=None if face_id is None else face_ros_id(face_id))
        if event.get("type") == "explanation":
            latest = self._primary[next(reversed(self._primary))] if self._primary else None
            return ros_messages(event, expression_face=self._primary.get(window, latest))
        return ros_messages(event)


# --- rosbag2 -----------------------------------------------------------------------------------------


def typestore():
    """A rosbags typestore of ROS 2 Kilted's standard types plus our hri_msgs definitions."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(MSG_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{HRI_PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def _rosbags_message(store, msgtype: str, values: dict):
    import numpy as np
    from rosbags.interfaces import Nodetype

    kwargs = {}
    for name, (node, detail) in store.fielddefs[msgtype][1]:
        value = values[name]
        if node == Nodetype.NAME:
            value = _rosbags_message(store, detail, value)
        elif (
            node in (Nodetype.ARRAY, Nodetype.SEQUENCE)
            and detail[0][0] == Nodetype.BASE
            and detail[0][1][0] != "string"
        ):
            value = np.asarray(value, dtype=detail[0][1][0])
        kwargs[name] = value
    return store.types[msgtype](**kwargs)


def write_bag(path: str | Path, events: Iterable[dict], storage: str = "mcap") -> int:
    """Write the mapped `events` (through one HriMapper) as a rosbag2 at `path` ("mcap" or "sqlite3"
    storage), each message at its event's wall_time; returns the number of messages."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    store, mapper, connections, n = typestore(), HriMapper(), {}, 0
    with Writer(Path(path), version=9, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        for event in events:
            timestamp = stamp_ns(event)
            for m in mapper(event):
                if m.topic not in connections:
                    connections[m.topic] = writer.add_connection(m.topic, m.msgtype, typestore=store)
                raw = store.serialize_cdr(_rosbags_message(store, m.msgtype, m.fields), m.msgtype)
                writer.write(connections[m.topic], timestamp, raw)
                n += 1
    return n


def read_bag(path: str | Path) -> list[tuple[str, str, int, object]]:
    """(topic, msgtype, timestamp ns, deserialized message) of every message of the rosbag2 at `path`."""
    from rosbags.rosbag2 import Reader

    store = typestore()
    with Reader(Path(path)) as reader:
        return [(c.topic, c.msgtype, t, store.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]


# --- live rclpy node ---------------------------------------------------------------------------------


def hri_types_available() -> bool:
    """Whether an hri_msgs Python package with rclpy type support is importable (ROS install or build_hri_msgs)."""
    try:
        importlib.import_module(f"{HRI_PACKAGE}.msg")
    except ImportError:
        return False
    return True


def _ros_class(msgtype: str):
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


def _fill(msg, values: dict):
    for name, value in values.items():
        if isinstance(value, dict):
            _fill(getattr(msg, name), value)
        else:
            setattr(msg, name, value)
    return msg


class Ros2Bridge:
    """An rclpy node (in a context of its own) that publishes the HriMapper messages of each event.

    Discovery stays on this host unless ROS_AUTOMATIC_DISCOVERY_RANGE says otherwise. The fixed topics get
    their publishers at once, a face's or voice's topics with their first message. Without importable
    hri_msgs the hri topics are skipped (logged once) and the std_msgs topics still go out.
    """

    ACK_TIMEOUT_S = 2.0
    """How long close() waits in all for reliable subscribers to acknowledge what was published (on localhost
    it takes milliseconds)."""

    def __init__(self, node_name: str = "edge_xemo"):
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        import rclpy
        from rclpy.context import Context

        self._context = Context()
        rclpy.init(context=self._context)
        self.node = rclpy.create_node(node_name, context=self._context)
        self.hri_available = hri_types_available()
        if not self.hri_available:
            log.warning(
                "ros2: no importable %s (python -m edge_xemo.serve.ros2 build-msgs makes one): "
                "the /humans/... hri topics are skipped",
                HRI_PACKAGE,
            )
        self._mapper = HriMapper()
        self._publishers: dict[str, Any] = {}  # rclpy publishers (None: the topic is not published)
        for topic, msgtype in ((EVENTS_TOPIC, STRING), (FACES_TRACKED, IDS_LIST), (VOICES_TRACKED, IDS_LIST)):
            self._publisher(topic, msgtype)  # fixed topics: discovered before the first event

    def _publisher(self, topic: str, msgtype: str):
        if topic not in self._publishers:
            usable = msgtype.startswith("std_msgs/") or self.hri_available
            self._publishers[topic] = (
                self.node.create_publisher(_ros_class(msgtype), topic, QUEUE_DEPTH) if usable else None
            )
        return self._publishers[topic]

    def publish(self, event: dict) -> int:
        """Publish the messages of `event`; returns how many went out."""
        n = 0
        for m in self._mapper(event):
            publisher = self._publisher(m.topic, m.msgtype)
            if publisher is not None:
                publisher.publish(_fill(_ros_class(m.msgtype)(), m.fields))
                n += 1
        return n

    def close(self) -> None:
        """Let reliable subscribers acknowledge (ACK_TIMEOUT_S at most), then end the node and its context."""
        from rclpy.duration import Duration

        deadline = time.monotonic() + self.ACK_TIMEOUT_S
        for publisher in self._publishers.values():
            if publisher is not None:
                publisher.wait_for_all_acked(Duration(seconds=max(0.0, deadline - time.monotonic())))
        self.node.destroy_node()
        self._context.try_shutdown()


def run_bridge(events: Iterable[dict], node_name: str = "edge_xemo", stop: threading.Event | None = None) -> int:
    """Publish each event of `events` through a Ros2Bridge until they end or `stop` is set (checked between
    events); returns the number of messages published."""
    bridge, n = Ros2Bridge(node_name), 0
    try:
        for event in events:
            if stop is not None and stop.is_set():
                break
            n += bridge.publish(event)
    finally:
        bridge.close()
    return n


# --- type support for rclpy --------------------------------------------------------------------------

_PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>hri_msgs</name>
  <version>2.0.0</version>
  <description>edge-xemo's build of the hri_msgs 2.0.0 messages it publishes</description>
  <maintainer email="maintainers@edge-xemo.invalid">edge-xemo</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""
# The ROS pip wheels were built in manylinux images: their exported *_rosidl_generator_py targets name that
# image's Python and numpy include directories. CMake refuses missing include directories, so those are
# replaced by this environment's.
_CMAKELISTS = """cmake_minimum_required(VERSION 3.21)
project(hri_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(std_msgs REQUIRED)
find_package(Python3 REQUIRED COMPONENTS Interpreter Development NumPy)
get_property(imported DIRECTORY PROPERTY IMPORTED_TARGETS)
foreach(target IN LISTS imported)
  get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(dirs)
    set(kept "")
    foreach(dir IN LISTS dirs)
      if(EXISTS "${dir}" OR dir MATCHES "^[$]<")
        list(APPEND kept "${dir}")
      endif()
    endforeach()
    if(NOT kept STREQUAL dirs)
      list(APPEND kept ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kept}")
    endif()
  endif()
endforeach()
rosidl_generate_interfaces(${PROJECT_NAME} @MSGS@ DEPENDENCIES std_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
"""


def build_hri_msgs(prefix: str | Path = sys.prefix, jobs: int = 2) -> Path:
    """Generate, compile and install rclpy type support for our .msg files as the package hri_msgs into
    `prefix` (default: this Python's environment), with the rosidl generators of the ROS pip wheels, CMake
    and a C/C++ compiler (see the `ros2` install notes); returns the installed Python package directory.
    Does nothing when hri_msgs is importable already (a ROS install's, or an earlier build)."""
    prefix = Path(prefix)
    site = Path(prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
    if hri_types_available():
        return Path(str(importlib.import_module(HRI_PACKAGE).__file__)).parent
    with tempfile.TemporaryDirectory(prefix="edge-xemo-hri-msgs-") as tmp:
        src, build = Path(tmp, "hri_msgs"), Path(tmp, "build")
        shutil.copytree(MSG_DIR, src / "msg")
        msgs = " ".join(f'"msg/{p.name}"' for p in sorted(MSG_DIR.glob("*.msg")))
        (src / "package.xml").write_text(_PACKAGE_XML)
        (src / "CMakeLists.txt").write_text(_CMAKELISTS.replace("@MSGS@", msgs))
        env = {**os.environ, "PATH": f"{prefix / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        steps = (
            [
                "cmake",
                "-S",
                str(src),
                "-B",
                str(build),
                *generator,
                f"-DCMAKE_PREFIX_PATH={prefix}",
                f"-DCMAKE_INSTALL_PREFIX={prefix}",
                f"-DPython3_EXECUTABLE={sys.executable}",
                "-DBUILD_TESTING=OFF",
            ],
            ["cmake", "--build", str(build), "--parallel", str(jobs)],
            ["cmake", "--install", str(build)],
        )
        for step in steps:
            done = subprocess.run(step, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
                raise RuntimeError(f"building hri_msgs failed at {' '.join(step[:2])}:\n{tail}")
    importlib.invalidate_caches()
    return site / HRI_PACKAGE


if __name__ == "__main__":
    if sys.argv[1:] != ["build-msgs"]:
        sys.exit("usage: python -m edge_xemo.serve.ros2 build-msgs")
    print(build_hri_msgs())
