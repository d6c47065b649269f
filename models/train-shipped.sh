#!/usr/bin/env bash
# Reproduce the shipped models: the teacher first, then the students in parallel (distilled and not),
# then the default student (student-s2d-hint) from s2d-plain in three more stages; and the blur estimator
# that reads the hinted student's hint (models/blur-estimator.pt).
#   sharpen train fetch-photos --out data/photos      # the photo set and its fixed train/valid split
#   DATA=data/photos OUT=runs/shipped models/train-shipped.sh
# The shipped files were made on one NVIDIA H100 with TEACHER_MIN=2.5 STUDENT_MIN=4.5 (see models/README.md).
set -u
DATA=${DATA:-data/photos}
OUT=${OUT:-runs/shipped}
TEACHER_MIN=${TEACHER_MIN:-2.5}
STUDENT_MIN=${STUDENT_MIN:-4.5}
TRAIN=${TRAIN:-sharpen train}
TEACHER_WORKERS=${TEACHER_WORKERS:-12}
STUDENT_WORKERS=${STUDENT_WORKERS:-2}
EXTRA=${EXTRA:-}          # extra options for every run, e.g. for a quick smoke run
mkdir -p "$OUT"

# the blur estimator (models/blur-estimator.pt): 3,000 steps, 25 min on the 2-core CPU
$TRAIN blur-estimator --data "$DATA" --out "$OUT/blur-estimator.pt" --steps "${ESTIMATOR_STEPS:-3000}" \
  > "$OUT/blur-estimator.log" 2>&1 || echo "blur estimator failed: $(tail -3 "$OUT/blur-estimator.log")"

if [ -n "${TEACHER:-}" ]; then  # reuse a trained teacher
  mkdir -p "$OUT/teacher" && cp "$TEACHER" "$OUT/teacher/model.pt"
else
$TRAIN teacher --data "$DATA" --out "$OUT/teacher" --crop 256 --batch-size 16 --patches-per-image 64 \
  --time-budget-min "$TEACHER_MIN" --checkpoint-every 5 --workers "$TEACHER_WORKERS" $EXTRA \
  > "$OUT/teacher.log" 2>&1 || { echo "teacher failed"; tail -20 "$OUT/teacher.log"; exit 1; }
echo "teacher: $(tail -1 "$OUT/teacher.log")"
fi

student() {  # name, options...
  local name=$1; shift
  $TRAIN student --data "$DATA" --out "$OUT/$name" --crop 128 --batch-size 32 --patches-per-image 128 \
    --time-budget-min "$STUDENT_MIN" --checkpoint-every 10 --workers "$STUDENT_WORKERS" $EXTRA "$@" \
    > "$OUT/$name.log" 2>&1 || echo "$name failed: $(tail -3 "$OUT/$name.log")"
}
T="$OUT/teacher/model.pt"
student s2d-distill --arch student-s2d --teacher "$T" &
student s2d-plain --arch student-s2d --preset plain &
student s2d-dilated-distill --arch student-s2d-dilated --teacher "$T" &
student dilated-distill --arch student-dilated --teacher "$T" &
student residual-distill --arch student --teacher "$T" &
# the original configuration: seed student, MSE, ResNet18 features, Adam 1e-4, 384 crops
$TRAIN student --data "$DATA" --out "$OUT/seed-original" --preset original --batch-size 16 \
  --patches-per-image 32 --time-budget-min "$STUDENT_MIN" --checkpoint-every 10 --workers "$STUDENT_WORKERS" \
  $EXTRA > "$OUT/seed-original.log" 2>&1 || echo "seed-original failed" &
wait
# stage 2, the default student: student-s2d-hint continues s2d-plain (its hint weights start at zero).
# Shipped: run on the 2-core CPU, 155 epochs (10,540 steps, 62 min).
student s2d-hint --arch student-s2d-hint --preset plain --init-from "$OUT/s2d-plain/model.pt" \
  --lr 5e-4 --lr-min 1e-6 --warmup-steps 200 --time-budget-min 0 --epochs "${HINT_EPOCHS:-155}"
# stage 3: an SSIM term added, 22 epochs (1,496 steps, 24 min on the CPU)
student s2d-hint-ssim --arch student-s2d-hint --preset plain --init-from "$OUT/s2d-hint/model.pt" \
  --w-ssim 0.3 --lr 1e-4 --lr-min 1e-6 --warmup-steps 50 --time-budget-min 0 --epochs "${SSIM_EPOCHS:-22}"
# (stages 2 and 3 were run at commit b92749e, when the crops' hint was the classical re-blur reading of the
# crop's region; the current trainer tells them the true σ with jitter, as in stage 4.)
# stage 4 (models/student-default.pt): hint = true σ·exp(N(0, 0.1²)), the blur estimator's error; 25 epochs
# (1,700 steps, 16 min on the CPU)
student s2d-hint-jitter --arch student-s2d-hint --preset plain --init-from "$OUT/s2d-hint-ssim/model.pt" \
  --w-ssim 0.3 --hint-jitter 0.1 --lr 2e-4 --lr-min 1e-6 --warmup-steps 50 \
  --time-budget-min 0 --epochs "${JITTER_EPOCHS:-25}"
for f in "$OUT"/*.log; do echo "$(basename "$f" .log): $(tail -1 "$f")"; done
