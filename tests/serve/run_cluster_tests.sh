#!/usr/bin/env bash
# The cluster mode of `canvas serve` (--queue redis://...) end to end: a real redis-server (Debian's) on a
# free loopback port, in its own folder, without persistence; three workers on the tiny model; thirty jobs;
# one worker killed with SIGKILL in the middle of a job (tests/serve/test_cluster.py says what is checked).
# The broker is killed at the end however the test ends.
# Usage: tests/serve/run_cluster_tests.sh BUILD_DIR
set -euo pipefail
source_dir=$(cd "$(dirname "$0")/../.." && pwd)
build_dir=$(cd "$1" && pwd)
command -v redis-server >/dev/null || { echo "redis-server is missing: scripts/setup.sh installs it"; exit 1; }
source "$source_dir/tests/serve/harness.sh"

redis_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/redis"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work/redis" \
  --loglevel warning > "$work/redis.log" 2>&1 &
redis_pid=$!
trap 'kill -9 "$redis_pid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 100); do
  redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break
  sleep 0.05
done
broker=redis://127.0.0.1:$redis_port/0

# A worker refuses a broker off loopback without a password, and never shows a password it was given.
refuse() {
  if "$build_dir/src/canvas" serve --models "$work/models" --data "$work/refused" --port 0 --queue "$1" \
      2> "$work/refused.log"; then
    echo "serve started with --queue $1"; exit 1
  fi
  grep -q "$2" "$work/refused.log" || { cat "$work/refused.log"; exit 1; }
  if grep -q sekrit "$work/refused.log"; then echo "the password was printed"; exit 1; fi
}
refuse redis://10.255.255.1:6379/0 "not on loopback and no password"
refuse "redis://:sekrit@127.0.0.1:$redis_port/0" "refused the credentials"

urls=()
for name in w1 w2 w3; do
  start_server "$name" --queue "$broker" --worker-name "$name" --lease 3
  urls+=("$url")
done
victim=${servers[2]}
"python3" "$source_dir/tests/serve/test_cluster.py" "$build_dir/src/canvas" "$work/models/tiny" "$victim" \
  "${urls[@]}" || { tail -n 20 "$work"/w*.log; exit 1; }
# w3 was killed: reap it, and stop the others cleanly.
wait "$victim" 2>/dev/null || true
servers=("${servers[@]:0:2}")
stop_servers w1 w2
