#!/usr/bin/env bash
# One prepared GPU check for a lent machine (H200; whole script <= 10 min).
#
#   benchmarks/gpu_check.sh OUT_DIR
#
# Measures, with benchmarks/train_step.py on the r50 model (ResNetV1c-50 +
# ITAS + UPerHead) at 512x512, B_l = B_u = 4:
#   1. AMP bf16 training: median s/iter and peak step memory of
#      EncoderDecoder, MultiTaskSegmentor, Hermes and the floor (interleaved),
#      a breakdown and a torch.profiler table of the Hermes step, inference
#      images/s (Hermes teacher vs EncoderDecoder, batch 1 and 8), and
#      PixelContrastLoss memory vs feature-map size (32..512);
#   2. the same in fp32 (shorter, no contrast table), if time is left.
#
# Writes to OUT_DIR (at most 5 files, so they all come back from the device
# tool): gpu_check.log (everything printed), summary.json (per-step exit
# codes, timings), train_step_<model>_<size>_bf16.json (+ _profile.txt),
# train_step_<model>_<size>_fp32.json.
#
# Assumptions (installs nothing from the network):
#   - python3 has torch with CUDA (and torchvision, numpy, scipy,
#     scikit-learn, opencv, matplotlib, pyyaml, rich, regex, einops...);
#   - mmengine / mmcv-lite / mmsegmentation / mmpretrain and their small
#     pure-Python deps are either importable already or present as wheels in
#     $WHEELS (default <repo>/.whl, see benchmarks/README.md for the exact
#     `pip download` command); they are then installed with --no-index into
#     a private --target folder (/tmp/hermes_site), nothing system-wide;
#   - hermes_mm is imported from the repository (PYTHONPATH), not installed.
#
# Environment overrides (for a plumbing test on CPU:
#   DEVICE=cpu MODEL=small SIZE=64 AMP=none ITERS=1 WARMUP=0 REQUIRE_CUDA=0):
#   PYTHON MODEL SIZE AMP DEVICE ITERS WARMUP LABELED UNLABELED WHEELS
#   CONTRAST_SIZES BUDGET_S (default 540: later steps are skipped past it) REQUIRE_CUDA
set -euo pipefail

OUT_DIR=${1:?usage: benchmarks/gpu_check.sh OUT_DIR}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

PYTHON=${PYTHON:-python3}
MODEL=${MODEL:-r50}
SIZE=${SIZE:-512}
AMP=${AMP:-bf16}
DEVICE=${DEVICE:-cuda}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-5}
LABELED=${LABELED:-4}
UNLABELED=${UNLABELED:-4}
WHEELS=${WHEELS:-$REPO/.whl}
BUDGET_S=${BUDGET_S:-540}
REQUIRE_CUDA=${REQUIRE_CUDA:-1}
CONTRAST_SIZES=${CONTRAST_SIZES:-32 64 128 256 512}
SITE=/tmp/hermes_site

export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT_DIR/gpu_check.log"
: >"$LOG"
START=$(date +%s)
STEPS=()
FAILED=0
LAST_RC=0

log() { echo "[gpu_check +$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }
elapsed() { echo $(($(date +%s) - START)); }

# step NAME TIMEOUT_S CMD...: run with a hard time limit, output into the
# log; never aborts the script (its exit code is recorded instead).
step() {
  local name=$1 limit=$2
  shift 2
  log "step $name (timeout ${limit}s): $*"
  local rc=0 t0
  t0=$(date +%s)
  timeout --kill-after=15 "$limit" "$@" >>"$LOG" 2>&1 || rc=$?
  log "step $name: exit $rc after $(($(date +%s) - t0))s"
  STEPS+=("{\"step\": \"$name\", \"exit\": $rc, \"seconds\": $(($(date +%s) - t0))}")
  LAST_RC=$rc
  if [ "$rc" -ne 0 ]; then FAILED=$((FAILED + 1)); fi
  return 0
}

write_summary() {
  local joined
  joined=$(IFS=,; echo "${STEPS[*]:-}")
  cat >"$OUT_DIR/summary.json" <<EOF
{"script": "benchmarks/gpu_check.sh", "out_dir": "$OUT_DIR",
 "model": "$MODEL", "size": $SIZE, "amp": "$AMP", "device": "$DEVICE",
 "iters": $ITERS, "warmup": $WARMUP, "labeled": $LABELED,
 "unlabeled": $UNLABELED, "elapsed_s": $(elapsed), "failed_steps": $FAILED,
 "steps": [$joined]}
EOF
}
trap write_summary EXIT

log "repo $REPO, out $OUT_DIR, python $PYTHON"

# 0. Fail fast, on the terminal, where there is no CUDA device (a CPU
# machine, a CPU-only torch, no driver): only torch is imported (seconds).
if [ "$REQUIRE_CUDA" = 1 ]; then
  t0=$(date +%s)
  rc=0
  CUDA_MSG=$("$PYTHON" -c '
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} (CUDA build {torch.version.cuda}) "
             f"sees no CUDA device: torch.cuda.is_available() is False, "
             f"device_count() {torch.cuda.device_count()}")
print(torch.cuda.get_device_name(0))
' 2>&1) || rc=$?
  STEPS+=("{\"step\": \"cuda\", \"exit\": $rc, \"seconds\": $(($(date +%s) - t0))}")
  if [ "$rc" -ne 0 ]; then
    FAILED=$((FAILED + 1))
    log "ERROR: no usable CUDA device, nothing measured. ${CUDA_MSG##*$'\n'}"
    log "This script measures the GPU path. CPU plumbing test: DEVICE=cpu MODEL=small SIZE=64 AMP=none ITERS=1 WARMUP=0 REQUIRE_CUDA=0 $0 OUT_DIR"
    exit 3
  fi
  log "CUDA device: $CUDA_MSG"
fi

# 1. What machine and stack this is.
step env 60 bash -c "nvidia-smi || true; $PYTHON -V; $PYTHON -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"available\", torch.cuda.is_available())'; $PYTHON -m pip list 2>/dev/null | grep -i -E '^(torch|torchvision|numpy|mmengine|mmcv|mmsegmentation|mmpretrain|setuptools) ' || true"

# 2. OpenMMLab packages: use what is importable, else the carried wheels.
if ! "$PYTHON" -c 'import mmengine, mmseg, mmpretrain, mmcv' >/dev/null 2>&1; then
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    step wheels 180 "$PYTHON" -m pip install -q --no-index --no-deps \
      --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$REPO:$SITE${PYTHONPATH#"$REPO"}"
  else
    log "mmengine/mmseg/mmpretrain/mmcv not importable and no wheels in $WHEELS"
  fi
fi

# 3. Preflight: the stack imports, hermes_mm registers, the GPU is there.
step preflight 180 "$PYTHON" -c "
import torch, mmengine, mmseg, mmpretrain, mmcv, hermes_mm
print('torch', torch.__version__, 'mmengine', mmengine.__version__,
      'mmseg', mmseg.__version__, 'mmpretrain', mmpretrain.__version__,
      'mmcv', mmcv.__version__, 'hermes_mm', hermes_mm.__version__)
if $REQUIRE_CUDA:
    assert torch.cuda.is_available(), 'no CUDA device'
    print(torch.cuda.get_device_name(0),
          'bf16' if torch.cuda.is_bf16_supported() else 'no bf16')
"
if [ "$LAST_RC" -ne 0 ]; then
  log "preflight failed: nothing else can run; last lines of $LOG:"
  tail -n 4 "$LOG" | head -n 3
  exit 2
fi

COMMON=(--model "$MODEL" --size "$SIZE" --labeled "$LABELED"
        --unlabeled "$UNLABELED" --device "$DEVICE")

# 4. Main measurement: AMP bf16 (or $AMP).
step "train_$AMP" 360 "$PYTHON" "$REPO/benchmarks/train_step.py" \
  "${COMMON[@]}" --amp "$AMP" --iters "$ITERS" --warmup "$WARMUP" \
  --infer-batches 1 8 --infer-iters 20 --contrast-sizes $CONTRAST_SIZES \
  --breakdown --profile \
  --out "$OUT_DIR/train_step_${MODEL}_${SIZE}_${AMP}.json"

# 5. fp32 reference, shorter, only if the budget allows.
LEFT=$((BUDGET_S - $(elapsed)))
if [ "$AMP" != none ] && [ "$LEFT" -gt 90 ]; then
  LIMIT=$((LEFT < 180 ? LEFT : 180))
  step train_fp32 "$LIMIT" "$PYTHON" "$REPO/benchmarks/train_step.py" \
    "${COMMON[@]}" --amp none --iters $((ITERS / 2 > 3 ? ITERS / 2 : 3)) \
    --warmup 3 --infer-batches 1 8 --infer-iters 10 --no-contrast \
    --out "$OUT_DIR/train_step_${MODEL}_${SIZE}_fp32.json"
else
  log "skip fp32 reference ($LEFT s left of the ${BUDGET_S}s budget)"
fi

log "done in $(elapsed)s, $FAILED failed step(s)"
[ "$FAILED" -eq 0 ]
