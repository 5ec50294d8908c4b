#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine, then run it:
# lint, type check and the whole pytest suite (unit, concurrency, HTTP, browser,
# live Prometheus). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real tools the tests drive: Prometheus and promtool, Alertmanager's amtool,
# Chromium for the console, docker-compose to validate the stack's file.
missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v amtool >/dev/null 2>&1 || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: ${missing[*]} not installed and not installable here (needs root and" \
      "apt-get); the tests that need them will be skipped" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'

# CPython 3.13's own executor tests run against poolwatch under a 3.13 venv (tests/cpython).
if py313=$(python3 tests/cpython/harness.py find-python); then
  [ -x .venv313/bin/python ] || "$py313" -m venv .venv313
  .venv313/bin/python -m pip install -q -e .
else
  echo "warning: no usable Python 3.13; tests/cpython will be skipped" >&2
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
