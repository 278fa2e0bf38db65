#!/usr/bin/env bash
# Refresh the committed screenshots in docs/: the ops console (tests/integration/test_console.py)
# and a period report (tests/tools/test_report.py), each taken in Debian's headless Chromium.
source "$(dirname "$0")/setup.sh"
CEMI_SCREENSHOTS="$PWD/docs" exec python -m pytest -q \
  tests/integration/test_console.py tests/tools/test_report.py "$@"
