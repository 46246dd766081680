#!/usr/bin/env bash
# One-call jobs for a lent GPU machine (no network there; torch, OpenCV, Pillow, SciPy,
# scikit-image/-learn, safetensors, typer, rich are installed, pydantic is not).
#
#   bash scripts/gpu.sh prepare            # here: training-photo subset + pydantic wheels
#   # then one device call each (carry: train_subset and .whl):
#   #   run(command="bash scripts/gpu.sh train two_stream 7", carry=["train_subset", ".whl"])
#   #   run(command="bash scripts/gpu.sh bench", carry=[".whl"])
#   # what they write comes back under $OUT; evaluate new weights here with
#   #   .venv/bin/tamperscan evaluate DATASET --config <(echo "two_stream_weights: PATH")
#
# "train NET MINUTES [EXTRA train options]": trains NET for MINUTES of wall-clock time from
# models/NET.safetensors at the net's served size, CUDA + mixed precision (tamperscan train),
# 12 data workers. Only the safetensors weights (< 16 MiB each), history.jsonl and the log go
# to $OUT: last.pt holds the optimiser state and is larger than a returned file may be.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: gpu.sh prepare | train NET MINUTES [train options] | bench [options]}
install_wheels() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
}
case "$mode" in
  prepare)
    .venv/bin/python scripts/pack_train_subset.py --out train_subset --max-mib 26
    rm -rf .whl && mkdir -p .whl
    # pydantic (tamperscan.config) is the one import of the training path missing there;
    # the versions pinned by this venv, built for the device's Python 3.12.
    for pkg in pydantic pydantic_core annotated-types typing-inspection; do
      version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$pkg'))")
      .venv/bin/pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "$pkg==$version"
    done
    du -sh train_subset .whl
    ;;
  train)
    net=${2:?net}; minutes=${3:?minutes}; shift 3
    install_wheels
    size=$(python3 -c "import yaml; print(yaml.safe_load(open('models/$net.yaml'))['input_size'])")
    python3 -m tamperscan.cli train "$net" --data train_subset --out /tmp/run \
      --init-weights "models/$net.safetensors" --train-size "$size" --batch-size 32 \
      --workers 12 --steps 1000000 --val-every 500 --max-minutes "$minutes" "$@" \
      2>&1 | tee "$OUT/train.log"
    cp "/tmp/run/$net.safetensors" /tmp/run/history.jsonl "$OUT/"
    ;;
  bench)  # benchmarks/gpu.py: fp16, CUDA graphs, torch.compile, GPU JPEG ELA (issue #6)
    shift
    install_wheels
    python3 benchmarks/gpu.py --out "$OUT/gpu.json" "$@" 2>&1 | tee "$OUT/gpu.log"
    ;;
  *)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
