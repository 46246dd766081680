#!/usr/bin/env bash
# One-call jobs for a lent GPU machine (no network there; torch, OpenCV, Pillow, SciPy,
# scikit-image/-learn, safetensors, typer, rich are installed, pydantic is not).
#
#   bash scripts/gpu.sh prepare            # here: training-photo subset + pydantic wheels
#   # then one device call each (carry: train_subset and .whl):
#   #   run(command="bash scripts/gpu.sh train two_stream 7", carry=["train_subset", ".whl"])
#   #   run(command="bash scripts/gpu.sh bench", carry=[".whl"])
#   #   run(command="bash scripts/gpu.sh tests", carry=[".whl"])   # CUDA engine/net tests
#   # or everything in one call (a lent GPU's slice is 15 minutes, starts included):
#   #   run(command="bash scripts/gpu.sh session 5", carry=["train_subset", ".whl"])
#   # what they write comes back under $OUT; evaluate new weights here with
#   #   .venv/bin/tamperscan evaluate DATASET --config <(echo "two_stream_weights: PATH")
#
# "train NET MINUTES [EXTRA train options]": fine-tunes NET for MINUTES of wall-clock time
# from models/NET.safetensors with the shipped recipe (train_one below), CUDA + mixed
# precision, 12 data workers. Only the last weights (in parts of <= 12 MiB) and logs.tgz
# (log, history.jsonl) go to $OUT: last.pt holds the optimiser state and is larger than a
# returned file may be.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: gpu.sh prepare | train NET MINUTES [options] | bench [options] | tests | session MINUTES [NET ...]}
install_wheels() {
  if ! python3 -c "import pydantic" 2>/dev/null; then  # already there: e.g. a dry run here
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
  fi
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
}
# TRAIN_SIZE: train (and re-estimate BatchNorm) at another size than the net's served one.
net_size() {
  [ -n "${TRAIN_SIZE:-}" ] && { echo "$TRAIN_SIZE"; return; }
  python3 -c "import yaml; print(yaml.safe_load(open('models/$1.yaml'))['input_size'])"
}
ship() {  # SRC NAME: copy into $OUT in parts of at most 12 MiB (a returned file's cap is 16)
  [ -f "$1" ] && split -b 12M -d "$1" "$OUT/$2.part" || true
}
# NET WORKERS MINUTES [train options]: fine-tune the shipped NET with the shipped recipe
# (--photometric 0.3 --copy-move-mask target; later options win) for MINUTES, keeping every
# validation step's weights; the last weights go to $OUT at once, the log to /tmp/logs.
train_one() {
  local net=$1 workers=$2 minutes=$3; shift 3
  timeout "$(awk "BEGIN { print int($minutes * 60 + 90) }")" python3 -m tamperscan.cli train \
    "$net" --data train_subset --out "/tmp/run_$net" --init-weights "models/$net.safetensors" \
    --train-size "$(net_size "$net")" --workers "$workers" --steps 1000000 \
    --max-minutes "$minutes" --keep-weights --photometric 0.3 --copy-move-mask target \
    "$@" > "/tmp/logs/train_$net.log" 2>&1 \
    || echo "train $net failed: $?" >> "/tmp/logs/train_$net.log"
  cp "/tmp/run_$net/history.jsonl" "/tmp/logs/history_$net.jsonl" 2>/dev/null || true
  ship "/tmp/run_$net/$net.safetensors" "${net}_last.safetensors"
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
    mkdir -p /tmp/logs
    train_one "$net" 12 "$minutes" --batch-size 32 --val-every 500 "$@"
    tail -n 20 "/tmp/logs/train_$net.log"
    tar -czf "$OUT/logs.tgz" -C /tmp logs
    ;;
  session)
    # "session MINUTES [NET ...]": the CUDA tests; then the nets (default: the localizer
    # alone -- WCBnet learned nothing in the tenth session's 6 minutes, MODEL_CARD.md) trained
    # side by side for MINUTES, the 14 data workers that synthesise samples split between
    # them; then, while each run's second-half checkpoints are averaged on the CPU (BatchNorm
    # re-estimated), the benchmark on the idle GPU. Every step is time-bounded and copies its
    # results to $OUT as soon as it ends, so a failure or the call's time limit keeps what
    # came before. Returns at most 8 files: logs.tgz, gpu.json and the weights (WCBnet's
    # 23 MB file in two parts: a returned file is capped at 16 MiB). GPU_BENCH_BATCHES and
    # GPU_BENCH_RUNS shrink the benchmark for a dry run on a CPU; TRAIN_SIZE=224 trains
    # at the size the shipped localizer was trained at.
    minutes=${2:?minutes}
    shift 2
    nets=("$@")
    [ "${#nets[@]}" -gt 0 ] || nets=(two_stream)
    workers=$(( 14 / ${#nets[@]} ))
    install_wheels
    export OMP_NUM_THREADS=1
    mkdir -p /tmp/logs
    # The CUDA tests first (about a minute): they have no other place to run.
    timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_engines.py \
      tests/test_nets.py -rs > /tmp/logs/tests.log 2>&1 || true
    tail -n 3 /tmp/logs/tests.log
    for net in "${nets[@]}"; do
      case "$net" in
        two_stream) train_one two_stream "$workers" "$minutes" --batch-size 32 --lr 1e-4 \
                      --val-every 400 --val-samples 256 & ;;
        wcbnet) train_one wcbnet "$workers" "$minutes" --batch-size 64 --lr 1e-3 \
                  --optimizer adam --val-every 200 --val-samples 256 & ;;
        *) echo "unknown net $net" >&2 ;;
      esac
    done
    wait
    tail -n 4 /tmp/logs/train_*.log
    tar -czf "$OUT/logs.tgz" -C /tmp logs
    for net in "${nets[@]}"; do average_one "$net" & done
    timeout 170 python3 benchmarks/gpu.py --out "$OUT/gpu.json" \
      --batches ${GPU_BENCH_BATCHES:-1 8 32 128} --runs "${GPU_BENCH_RUNS:-20}" 2>&1 \
      | tail -n 60 || echo "bench failed"
    wait
    tar -czf "$OUT/logs.tgz" -C /tmp logs
    ls -l "$OUT"
    ;;
  tests)  # the engine and net tests on CUDA (they skip here); no Ray is needed for them
    shift
    install_wheels
    timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_engines.py \
      tests/test_nets.py -rs "$@" 2>&1 | tee "$OUT/tests.log"
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
