#!/usr/bin/env bash
# Builds (through setup.sh), installs the test clients (test_tools.sh) and runs the whole CPU test suite with
# CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/test_tools.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
