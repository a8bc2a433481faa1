#!/usr/bin/env bash
# genjax on a GPU or TPU, in one command from the repository root:
#
#     bash benchmarks/device_check.sh
#
# 1. finds the accelerator (an NVIDIA GPU if `nvidia-smi` lists one, a TPU if /dev/accel* or
#    /dev/vfio/<group> exist), creates a virtual environment and installs genjax with its test extras
#    and the matching jaxlib (`jax[cuda12]` or `jax[tpu]`);
# 2. prints `jax.devices()` (and stops if JAX sees no accelerator);
# 3. runs the tests marked `accelerator` (skipped on CPU) and tests/test_export.py;
# 4. runs `python -m benchmarks --quick` on the train steps and the scaling rows and prints one
#    summary: device, steps/s per family, % of the device's published peak, seeds as vmapped
#    replicas, scaling over the local devices (`python -m benchmarks.device_summary`).
#
# Budget: under 5 minutes on a GPU once pip has the wheels cached (each step has a `timeout`).
# Settings (environment variables):
#   OUT_DIR      where bench.json, bench.md, summary.md and the logs go (default runs/device_check)
#   VENV         the virtual environment to create (default .venv-device)
#   PYTHON       an interpreter that already has genjax and an accelerator jaxlib: no venv, no install
#   BENCH_ONLY   the benchmarks to run (`--only`; default train_step,scaling)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT_DIR="${OUT_DIR:-runs/device_check}"
BENCH_ONLY="${BENCH_ONLY:-train_step,scaling}"
mkdir -p "$OUT_DIR"

section() { printf '\n== %s\n' "$*"; }

if nvidia-smi -L >/dev/null 2>&1; then
  accelerator=cuda12
  nvidia-smi -L
elif compgen -G "/dev/accel*" >/dev/null || compgen -G "/dev/vfio/[0-9]*" >/dev/null; then
  # TPU chips: /dev/accel0... (v2-v5p), VFIO groups /dev/vfio/0... (v5e, v6e); not /dev/vfio/vfio alone
  accelerator=tpu
else
  echo "device_check: no NVIDIA GPU (nvidia-smi) and no TPU (/dev/accel*, /dev/vfio/<group>) found" >&2
  exit 2
fi

if [[ -z "${PYTHON:-}" ]]; then
  section "install genjax[test] and jax[$accelerator] into ${VENV:=.venv-device}"
  python3 -m venv "$VENV"
  PYTHON="$VENV/bin/python"
  timeout 240 "$PYTHON" -m pip install --quiet --upgrade pip
  timeout 240 "$PYTHON" -m pip install --quiet -e '.[test]' "jax[$accelerator]"
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # the tests and the benchmarks share the device

section "devices"
timeout 120 "$PYTHON" -c '
import jax
print(jax.devices())
assert jax.default_backend() in ("gpu", "tpu"), f"JAX runs on {jax.default_backend()}, not an accelerator"
'

status=0
section "tests (accelerator-marked, and the export test)"
timeout 150 "$PYTHON" -m pytest -n 0 -p no:cacheprovider -q tests/test_accelerator.py tests/test_export.py \
  2>&1 | tee "$OUT_DIR/tests.log" || status=1

section "benchmarks (--quick --only $BENCH_ONLY)"
timeout 180 "$PYTHON" -m benchmarks --quick --only "$BENCH_ONLY" \
  --json "$OUT_DIR/bench.json" --markdown "$OUT_DIR/bench.md" 2>&1 | tee "$OUT_DIR/bench.log" || status=1

section "summary"
if [[ -f "$OUT_DIR/bench.json" ]]; then
  "$PYTHON" -m benchmarks.device_summary "$OUT_DIR/bench.json" | tee "$OUT_DIR/summary.md" || status=1
else
  echo "no $OUT_DIR/bench.json: the benchmark run did not finish" >&2
  status=1
fi
exit "$status"
