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
