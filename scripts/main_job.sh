#!/usr/bin/env bash
# Set up a fresh machine and run the main job: encode a real recording to tokens and decode it back.
#   bash scripts/main_job.sh [MODEL] [AUDIO]
# MODEL: a hub id or a local checkpoint folder (default HKUSTAudio/xcodec2-hf).
# Where the hub cannot be reached and no local folder is given, a randomly initialised
# full-size X-Codec2 checkpoint is written to out/xcodec2-random so the pipeline still runs
# end to end (its audio is noise, its tokens are real tokens of that checkpoint).
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
  echo "!! the hub is unreachable from here: using a random-weight X-Codec2 checkpoint ($out/xcodec2-random)."
  echo "!! pass a local folder holding the real checkpoint as the first argument for real audio."
  [ -f "$out/xcodec2-random/config.json" ] || xcodec random-checkpoint xcodec2 "$out/xcodec2-random"
  model="$out/xcodec2-random"
fi
xcodec encode "$audio" -o "$out/codes" --model "$model"
xcodec decode "$out"/codes/*.npz -o "$out/decoded" --model "$model"
ls -l "$out/codes" "$out/decoded"
