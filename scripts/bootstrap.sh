# Sourced by demo.sh and test.sh: make .venv with Python >= 3.11 and install prognos into it.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PROGNOS_VENV:-$ROOT/.venv}"
EXTRAS="${PROGNOS_EXTRAS:-dev}"

find_python() {
  for candidate in python3.11 python3.12 python3.13 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "prognos needs Python >= 3.11 on PATH" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment in $VENV"
  "$(find_python)" -m venv "$VENV"
fi
stamp="$VENV/.prognos-install"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing prognos[$EXTRAS] (first run takes a minute or two)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[$EXTRAS]"
  echo "$want" > "$stamp"
fi
# promtool (Debian's prometheus package) unit-tests the shipped Prometheus alerting rules
# (tests/alerting); without it that test skips, or fails under CI=true.
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "==> installing promtool (Debian package prometheus)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends prometheus; } >/dev/null 2>&1; then
    echo "    could not install promtool: the Prometheus rules test will skip" >&2
  fi
fi
# amtool (Debian's prometheus-alertmanager) checks deploy/alertmanager, and docker-compose
# (Debian's, 1.29) validates compose.yaml with `config` without a Docker engine (tests/deploy);
# without them those tests skip, or fail under CI=true.
for pair in amtool:prometheus-alertmanager docker-compose:docker-compose; do
  tool="${pair%%:*}" package="${pair#*:}"
  if ! command -v "$tool" >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing $tool (Debian package $package)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "$package"; } >/dev/null 2>&1; then
      echo "    could not install $tool: the tests that need it will skip" >&2
    fi
  fi
done
# Java 17 (Debian's headless JRE) runs PySpark's JVM for the Spark engine's tests (tests/spark);
# without it they skip, or fail under CI=true.
if ! command -v java >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "==> installing java (Debian package openjdk-17-jre-headless)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends openjdk-17-jre-headless; } >/dev/null 2>&1; then
    echo "    could not install java: the Spark engine's tests will skip" >&2
  fi
fi
# chromium and its driver (Debian packages) run the dashboard's browser tests (tests/serving/ui,
# Selenium given /usr/bin/chromedriver: nothing is downloaded); without them those tests skip, or
# fail under CI=true.
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "==> installing chromium and chromium-driver (the dashboard's browser tests)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends chromium chromium-driver; } >/dev/null 2>&1; then
    echo "    could not install chromium: the dashboard's browser tests will skip" >&2
  fi
fi
