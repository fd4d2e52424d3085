#!/usr/bin/env bash
# Quick start, step 2: run the checks CI runs: lint, format, types, then the test suite.
# Extra arguments go to pytest (e.g. -m "not slow", -k parity).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
echo "==> ruff"
"$VENV/bin/ruff" check src tests bench
"$VENV/bin/ruff" format --check src tests bench
echo "==> mypy"
"$VENV/bin/mypy"
echo "==> pytest"
"$VENV/bin/python" -m pytest --durations=25 "$@"
