#!/usr/bin/env bash
# Builds (through setup.sh), installs the test clients (test_tools.sh), runs the whole CPU test suite with
# CTest, then the hardening checks (test_hardening.sh: the suite under AddressSanitizer and
# UndefinedBehaviorSanitizer, and the fuzzers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/test_tools.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
scripts/test_hardening.sh
