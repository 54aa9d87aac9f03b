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
servers=()
cleanup() {
  for server in "${servers[@]}"; do kill "$server" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/models"
ln -s "$source_dir/models/tiny-qwen-image" "$work/models/tiny"
ln -s "$source_dir/models/tiny-qwen-image-edit" "$work/models/tiny-edit"
mkdir -p "$work/loras"
ln -s "$source_dir/tests/golden/lora/loras/lightx2v.safetensors" "$work/loras/lightx2v.safetensors"
# Starts a server logging to $work/NAME.log and sets $url to its address; extra arguments go to it.
start_server() {
  local name=$1
  shift
  "$build_dir/src/canvas" serve --models "$work/models" --data "$work/$name" --loras "$work/loras" --port 0 --preview-every 1 \
    "$@" \
    2> "$work/$name.log" &
  servers+=($!)
  url=""
  for _ in $(seq 300); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/$name.log" | head -1 || true)
    [ -n "$url" ] && return
    kill -0 "${servers[-1]}" 2>/dev/null || { cat "$work/$name.log"; exit 1; }
    sleep 0.1
  done
  echo "the server did not start"
  cat "$work/$name.log"
  exit 1
}
start_server open
open_url=$url
start_server guarded --token web-test-token
/usr/bin/python3 "$source_dir/tests/web/test_web_ui.py" "$open_url" "$build_dir/web-screenshots" "$work/open" \
  "$url" web-test-token || { cat "$work/open.log" "$work/guarded.log"; exit 1; }
status=0
for server in "${servers[@]}"; do
  kill -TERM "$server"
  wait "$server" || status=$?
done
servers=()
for name in open guarded; do
  grep -q "^stopped" "$work/$name.log" || { cat "$work/$name.log"; exit 1; }
done
exit "$status"
