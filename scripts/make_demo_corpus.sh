#!/usr/bin/env bash
# Make the demo corpus (issue 13): synthetic 16 kHz speech from the Debian speech synthesisers.
#   bash scripts/make_demo_corpus.sh [OUT] [TRAIN_MINUTES] [EVAL_MINUTES]
# OUT defaults to /work/demo_corpus (outside git); TRAIN_MINUTES 180, EVAL_MINUTES 5.
# Idempotent and reproducible: packages are installed only when missing, every item is drawn
# from its own seeded generator and an existing item is kept, so a rerun (or a larger
# TRAIN_MINUTES) only adds what is missing. The demo checkpoint was trained on the first
# 40 minutes (`bash scripts/make_demo_corpus.sh /work/demo_corpus 40 4`).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/work/demo_corpus}"
minutes="${2:-180}"
eval_minutes="${3:-5}"
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v flite >/dev/null || need+=(flite)
command -v text2wave >/dev/null || need+=(festival)
[ -d /usr/share/festival/voices/english/kal_diphone ] || need+=(festvox-kallpc16k)
[ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] || need+=(festvox-us-slt-hts)
[ -f /usr/share/dict/words ] || need+=(wamerican)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
python3 -c "import scipy, soundfile" 2>/dev/null || python3 -m pip install -q scipy soundfile
python3 scripts/demo_corpus.py --out "$out" --minutes "$minutes" --eval-minutes "$eval_minutes"
