#!/usr/bin/env bash
# Set up a fresh machine and run the main job: encode a real recording to tokens and decode it back.
#   bash scripts/main_job.sh [MODEL] [AUDIO]
# MODEL: a hub id or a local checkpoint folder (default HKUSTAudio/xcodec2-hf).
# Where the hub cannot be reached and no local folder is given, the packaged demo
# checkpoint "xcodec2-demo" (src/xcodec/pretrained/xcodec2-demo, no network) is used so the
# pipeline runs end to end with audio that resembles the input (it is not the real codec).
# XCODEC_OUT: the output folder (default out; .ci/run points it at a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e .
model="${1:-HKUSTAudio/xcodec2-hf}"
audio="${2:-../shared/audio/speech_en.flac}"
out="${XCODEC_OUT:-out}"
mkdir -p "$out"
if [ ! -e "$model" ] && ! python3 -c "import sys, huggingface_hub as h; h.model_info(sys.argv[1], timeout=10)" "$model" >/dev/null 2>&1; then
  echo "!! the hub is unreachable from here: using the packaged demo checkpoint xcodec2-demo"
  echo "!! (a small X-Codec2 trained here on synthetic speech on 2 CPU cores, far from the real codec's quality)."
  echo "!! pass a local folder holding the real checkpoint as the first argument for real audio."
  model="xcodec2-demo"
fi
xcodec encode "$audio" -o "$out/codes" --model "$model"
xcodec decode "$out"/codes/*.npz -o "$out/decoded" --model "$model"
ls -l "$out/codes" "$out/decoded"
