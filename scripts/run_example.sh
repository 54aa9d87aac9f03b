#!/usr/bin/env bash
# Sets up, builds, and generates an image with the tiny Qwen-Image model shipped in models/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
./build/src/canvas generate --model models/tiny-qwen-image --prompt "a red fox in the snow, watercolor" \
  --steps 8 --width 256 --height 256 --seed 42 --output example.png
