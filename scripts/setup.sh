#!/usr/bin/env bash
# Idempotent set-up: one interpreter at .venv/bin/python with the project and its extras.
# Re-runs are ~instant: the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.tamperscan-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch/torchvision first, pinned: pip takes them from the machine's local wheel store.
  .venv/bin/pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "is ignored" || true
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev,sam]" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import tamperscan, torch, ray"  # fail loudly if the install did not work
  echo "$want" > "$stamp"
fi
# Headless Chromium + chromedriver from Debian for the report's browser test
# (tests/test_report.py), so selenium never downloads a browser; only for the test set-up
# (TAMPERSCAN_SETUP_BROWSER=1, set by `make test`): a scan needs none. Fast when present. Needs root:
# without it we say so and go on (that test then skips); as root (CI) a failed install fails.
if [ "${TAMPERSCAN_SETUP_BROWSER:-0}" = 1 ] && \
   ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  else
    echo "setup: chromium/chromedriver not found and cannot install them (needs root and" \
         "apt-get): 'apt-get install chromium chromium-driver' as root; until then the" \
         "report browser test skips." >&2
  fi
fi
