#!/usr/bin/env bash
# Set up (first time only, test tools included) and run the whole test suite.
#
# The tests run in parallel worker processes (pytest-xdist: one per core, at most 4, one torch
# thread each); each test file runs whole on one worker (its module's server, browser or model is
# built once), and tests/conftest.py runs the tests marked `serial` (they time something against a
# bound) alone.
# Arguments go to pytest: `bash scripts/test.sh tests/test_drag.py -x`.
# DRAGWALK_TEST_WORKERS=N sets the number of workers (0: one process, no workers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
cores=$(nproc 2>/dev/null || echo 2)
workers=${DRAGWALK_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
if [ "$workers" -gt 0 ]; then export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}; fi
exec .venv/bin/python -m pytest -q -ra -n "$workers" --dist loadfile "$@"
