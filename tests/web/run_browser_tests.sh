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
source "$source_dir/tests/serve/harness.sh"
start_server open --preview-every 1
open_url=$url
start_server guarded --preview-every 1 --token web-test-token
/usr/bin/python3 "$source_dir/tests/web/test_web_ui.py" "$open_url" "$build_dir/web-screenshots" "$work/open" \
  "$url" web-test-token || { cat "$work/open.log" "$work/guarded.log"; exit 1; }
stop_servers open guarded
