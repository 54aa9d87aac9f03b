#!/usr/bin/env bash
# Starts the built `canvas serve` on the tiny models (any free port, a fresh data folder) and drives it with
# real clients (tests/serve/test_clients.py: the openai SDK and an A1111-style script), then stops it with
# SIGTERM and checks that it stopped cleanly. The clients come from build/test-venv (scripts/test_tools.sh).
# Usage: tests/serve/run_client_tests.sh BUILD_DIR
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=$(cd "$1" && pwd)
python=$build_dir/test-venv/bin/python
[ -x "$python" ] || { echo "no $python: run scripts/test_tools.sh (scripts/test.sh does)"; exit 1; }
source "$source_dir/tests/serve/harness.sh"
start_server clients
"$python" "$source_dir/tests/serve/test_clients.py" "$url" || { cat "$work/clients.log"; exit 1; }
stop_servers clients
