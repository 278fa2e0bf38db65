#!/usr/bin/env bash
# Set up a fresh machine (.venv + the project) and run the live demo: the embedded broker, a
# worker and a simulator with an install backlog in HPG, shown in the terminal. Ctrl-C stops.
source "$(dirname "$0")/setup.sh"
exec cemi demo "$@"
