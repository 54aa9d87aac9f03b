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
work=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/models"
ln -s "$source_dir/models/tiny-qwen-image" "$work/models/tiny"
ln -s "$source_dir/models/tiny-qwen-image-edit" "$work/models/tiny-edit"
"$build_dir/src/canvas" serve --models "$work/models" --data "$work/data" --port 0 2> "$work/server.log" &
server=$!
url=""
for _ in $(seq 300); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/server.log" | head -1 || true)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start"; cat "$work/server.log"; exit 1; }
"$python" "$source_dir/tests/serve/test_clients.py" "$url"
kill -TERM "$server"
wait "$server"
status=$?
server=""
grep -q "^stopped" "$work/server.log" || { cat "$work/server.log"; exit 1; }
exit "$status"
