#!/usr/bin/env bash
# Reproduce the bundled default model (models/weights/fog-small.pt + .json) with one command:
#   bash scripts/train_default.sh            # about 15-20 min on 2 CPU cores (see models/weights/MODEL_CARD.md)
# 1. train fog-small on seeded synthetic recordings (deploy.synth), validation on held-out synthetic subjects;
# 2. copy the best weights into models/weights/;
# 3. measure its figures (held-out synthetic mAP vs the freeze index, INT8 PTQ per calibrator and QAT, false
#    alarms per hour on real mobgap walking when ../shared is present) into models/weights/fog-small.json.
# Everything is seeded; torch uses 2 threads so the duration is comparable between machines of this kind.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RUN=${RUN:-runs/default-fog-small}
SEED=${SEED:-0}
START=$(date +%s)
"$PY" -m toolkit.cli train --synthetic 24 --synthetic-per-subject 2 --synthetic-minutes 5 --seed "$SEED" \
  --preset fog-small --val-fraction 0.25 --epochs 30 --steps 40 --batch-size 32 --lr 2e-3 --warmup 100 \
  --patience 6 --threads 2 --out "$RUN" ${TRAIN_FLAGS:-}
TRAINED=$(date +%s)
mkdir -p models/weights
cp "$RUN/model.pt" models/weights/fog-small.pt
cp "$RUN/model.json" models/weights/fog-small.json
"$PY" - "$((TRAINED - START))" <<'PY'
import json, platform, os, sys
path = "models/weights/fog-small.json"
info = json.load(open(path))
info["training_wall_seconds"] = int(sys.argv[1])
info["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                   "python": platform.python_version()}
import torch
info["machine"]["torch"] = torch.__version__
json.dump(info, open(path, "w"), indent=1)
PY
"$PY" -m calibration.model_report --checkpoint models/weights/fog-small.pt --train-seed "$SEED" \
  --train-subjects 24 --test-seed 1000 --test-subjects 8 --threads 2 > "$RUN/report.json"
echo "default model: models/weights/fog-small.pt ($(( $(date +%s) - START )) s in all); figures in models/weights/fog-small.json"
