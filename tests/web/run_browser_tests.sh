#!/usr/bin/env bash
# Starts the built `canvas serve` on the tiny models (any free port, a fresh data folder) and drives its web
# UI in headless Chromium (tests/web/test_web_ui.py, with Debian's chromium, chromium-driver and
# python3-selenium under the system python3), then stops it with SIGTERM and checks that it stopped cleanly.
# Screenshots of each tab go to BUILD_DIR/web-screenshots/.
# Usage: tests/web/run_browser_tests.sh BUILD_DIR
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=$(cd "$1" && pwd)
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$tool" ] || { echo "no $tool: install chromium and chromium-driver (scripts/setup.sh does)"; exit 1; }
done
/usr/bin/python3 -c "import selenium" 2>/dev/null || { echo "no python3-selenium (scripts/setup.sh installs it)"; exit 1; }
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
"$build_dir/src/canvas" serve --models "$work/models" --data "$work/data" --port 0 --preview-every 1 \
  2> "$work/server.log" &
server=$!
url=""
for _ in $(seq 300); do
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/server.log" | head -1 || true)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the server did not start"; cat "$work/server.log"; exit 1; }
/usr/bin/python3 "$source_dir/tests/web/test_web_ui.py" "$url" "$build_dir/web-screenshots" "$work/data" ||
  { cat "$work/server.log"; exit 1; }
kill -TERM "$server"
wait "$server"
status=$?
server=""
grep -q "^stopped" "$work/server.log" || { cat "$work/server.log"; exit 1; }
exit "$status"
