#!/usr/bin/env bash
# Evaluate the shipped weights on every dataset under DATA (default ../shared/data/eval):
# JSON reports and Markdown tables into models/eval/ (the MODEL_CARD tables come from here).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/eval}
mkdir -p models/eval
for dir in "$DATA"/*/; do
  name=$(basename "$dir")
  [ -f "$dir/MANIFEST.csv" ] || continue
  .venv/bin/tamperscan evaluate "$dir" --out "models/eval/$name.json" "${@:2}" \
    | tee "models/eval/$name.md"
done
