#!/usr/bin/env bash
# Set up a fresh machine and run the default test suite.
#   bash scripts/test.sh            # default suite (< 15 min on 2 cores)
#   bash scripts/test.sh -m slow    # full-size checkpoints and long audio (separate, slower)
set -euo pipefail
cd "$(dirname "$0")/.."
# torch first: 2.13.0 resolves to the local CPU wheel here; an unpinned spec would pull CUDA builds.
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
exec python3 -m pytest "$@"
