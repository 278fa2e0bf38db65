#!/usr/bin/env bash
# Set up a fresh machine (.venv + the project) and run the test suite. Extra args go to pytest.
source "$(dirname "$0")/setup.sh"
# pytest exits 5 when it collected no test: that is a failure here, never a pass.
exec python -m pytest "$@"
