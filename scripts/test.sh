#!/usr/bin/env bash
# Builds (through setup.sh), installs the test clients (test_tools.sh), runs the whole CPU test suite with
# CTest, then the fuzzers (test_hardening.sh fuzz). The sanitizer build of the suite (test_hardening.sh asan)
# is not in this run yet: its time on CI's two cores has not been measured.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/test_tools.sh
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900
scripts/test_hardening.sh fuzz
