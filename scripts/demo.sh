#!/usr/bin/env bash
# Quick start, step 1: set everything up (virtual environment, install) and run the demo on
# embedded defaults; it ends with the prediction service running (Ctrl+C stops it). Extra
# arguments go to `prognos demo` (e.g. --assets 200 --seed 3, or --no-serve).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
"$VENV/bin/prognos" demo --serve "$@"
