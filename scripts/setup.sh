# Sourced by the other scripts: create .venv (once) and install the project into it.
# Re-installs when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.cemi-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # rocksdb is the default table store when it installs; memory is the fallback.
  .venv/bin/python -m pip install --quiet -e '.[dev,rocksdb]' \
    || .venv/bin/python -m pip install --quiet -e '.[dev]'
  touch "$stamp"
fi
# CI (a fresh Debian machine): the deploy tests run Debian's promtool/prometheus, amtool/
# alertmanager and docker-compose (v1, validates the compose file without a daemon); the
# output tests read our topics with Debian's kcat; the console and report tests open pages in
# Debian's headless chromium (driven by Playwright, which downloads no browser).
if [ "${CI:-}" = "true" ]; then
  for tool in promtool prometheus-alertmanager amtool docker-compose kcat chromium; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      sudo=""
      [ "$(id -u)" = 0 ] || sudo="sudo"
      $sudo apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        prometheus prometheus-alertmanager docker-compose kcat chromium >/dev/null
      break
    fi
  done
fi
export PATH="$PWD/.venv/bin:$PATH"
