# shellcheck shell=bash
# What the scripts that drive the built `canvas serve` share (run_client_tests.sh, tests/web/
# run_browser_tests.sh), sourced after setting source_dir and build_dir: a work folder with the tiny models
# ("tiny", "tiny-edit") and a LoRA folder, servers started on any free port, and their clean stop.
work=$(mktemp -d)
servers=()
cleanup() {
  for server in "${servers[@]}"; do kill "$server" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/models" "$work/loras"
ln -s "$source_dir/models/tiny-qwen-image" "$work/models/tiny"
ln -s "$source_dir/models/tiny-qwen-image-edit" "$work/models/tiny-edit"
ln -s "$source_dir/tests/golden/lora/loras/lightx2v.safetensors" "$work/loras/lightx2v.safetensors"

# start_server NAME [ARGS...]: a server with its data in $work/NAME, logging to $work/NAME.log; sets $url to
# its address. Extra arguments go to it.
start_server() {
  local name=$1
  shift
  "$build_dir/src/canvas" serve --models "$work/models" --data "$work/$name" --loras "$work/loras" --port 0 \
    "$@" 2> "$work/$name.log" &
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

# stop_servers NAME...: SIGTERM to every server, each of which must say it stopped; exits with the first
# failing status.
stop_servers() {
  local status=0 server name
  for server in "${servers[@]}"; do
    kill -TERM "$server"
    wait "$server" || status=$?
  done
  servers=()
  for name in "$@"; do
    grep -q "^stopped" "$work/$name.log" || { cat "$work/$name.log"; exit 1; }
  done
  return "$status"
}
