#!/usr/bin/env bash
# Installs the Python clients some tests drive the server with (tests/serve/requirements.txt: the openai SDK)
# into build/test-venv, from PyPI. Test tools only: the engine itself needs no Python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=build/test-venv
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/serve/requirements.txt "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/serve/requirements.txt
  cp tests/serve/requirements.txt "$venv/requirements.txt"
fi
