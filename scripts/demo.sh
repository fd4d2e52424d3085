#!/usr/bin/env bash
# Quick start, step 1: set everything up (virtual environment, install) and run the demo on
# embedded defaults. Extra arguments go to `prognos demo` (e.g. --assets 200 --seed 3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
"$VENV/bin/prognos" demo "$@"
