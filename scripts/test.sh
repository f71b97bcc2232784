#!/usr/bin/env bash
# Set up (first time only, test tools included) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest -q -ra "$@"
