#!/usr/bin/env bash
# Reproduce the bundled default model (models/weights/fog-small.pt + .json) and every figure of its model card:
#   bash scripts/train_default.sh                  # the finalists' LOSO (2 seeds each), the choice, LOLO, the final model
#   SCREEN=1 bash scripts/train_default.sh         # also the screens: round one (models/weights/CHOICE_RULE.md) and
#                                                  # round two (CHOICE_RULE_ROUND2.md), every candidate, seed 0
#   LOSO=0 bash scripts/train_default.sh           # only the final model and its report (no folds)
# Wall times on the shared 2-core VM (load 6-12 from other jobs; one torch thread per process): see MODEL_CARD.md.
# Needs ../shared/data/daphnet and ../shared/data/stanford-imu-fog-64hz (10 people with PD, two labs).
# The rule that chooses (models/weights/CHOICE_RULE.md, written before the figures):
# 1. screening: every candidate network (calibration.loso recipes, trained without the fixed freeze-index blend),
#    seed 0, ten leave-one-subject-out folds, synthetic subjects in every fold; the blend grid scored on the folds
#    (calibration.blend_choice --screen);
# 2. the two best eligible candidates get seeds 1 and 2;
# 3. calibration.blend_choice over the finalists chooses network, fi_blend, power_weight and the on-threshold,
#    with the walking budget (CHOICE_RULE_ROUND2.md's amendment: at most 10 false alarms/h on mobgap walking);
#    the preset fog-small carries the choice (models/registry.py; the command says whether it does);
# round three (CHOICE_RULE_ROUND3.md): the finalists are the shipped round-two recipe and the same with tremor
#    subjects, two seeds each; the candidate replaces the incumbent beyond the seed noise or on more of issue 25's
#    bars (calibration.issue_bars prints them). On these runs blend_choice's own pick is the same network and setting;
# then: the chosen recipe's fold figures with the blend (--reblend), leave-one-lab-out, the final model on everything
# shared (seed 0), the report (synthetic, mobgap, INT8) and the jetson bundle's INT8 graph against float on both labs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DAPHNET=${DAPHNET:-../shared/data/daphnet}
STANFORD=${STANFORD:-../shared/data/stanford-imu-fog-64hz}
DATA=("$DAPHNET" "$STANFORD")
RUN=${RUN:-runs/default-fog-small}
WALKING=${WALKING:-../shared/data/mobgap-walking}
CANDIDATES=${CANDIDATES:-"plain invariant invariant-half invariant-lowpass invariant-long vertical-augmented"}
ROUND2=${ROUND2:-"invariant-tremor invariant-end invariant-tremor-end"}
FINALISTS=${FINALISTS:-"invariant-long invariant-long-tremor"}   # round three's incumbent and candidate (CHOICE_RULE_ROUND3.md)
SHIPPED=${SHIPPED:-invariant-long-tremor}   # their choice: the recipe of the final model when LOSO=0
SEEDS=${SEEDS:-"0 1"}   # round three chose on two seeds pooled (CHOICE_RULE_ROUND3.md; round one asked for three)
JOBS=${JOBS:-1}                                         # folds in parallel (2 only on an otherwise idle machine)
for d in "${DATA[@]}"; do
  if [ ! -d "$d" ]; then
    echo "train_default: $d is missing: the default is trained on Daphnet and the Stanford trials (see ../shared)" >&2
    exit 2
  fi
done
mkdir -p "$RUN"
START=$(date +%s)
final_set() {   # recipe -> --set KEY=JSON for each training field where it differs from recipe "blend"
  "$PY" -c "
import json, sys
from dataclasses import asdict
from calibration.loso import RECIPES
chosen, blend = asdict(RECIPES[sys.argv[1]]), asdict(RECIPES['blend'])
skip = {'preset', 'preprocess', 'model', 'train_only'}
print(' '.join(f'--set {k}={json.dumps(v, separators=(\",\", \":\"))}' for k, v in chosen.items()
               if k not in skip and v != blend[k]))" "$1"
}
stamp() { echo "$1 $(( $(date +%s) - START )) s" | tee -a "$RUN/wall-times.txt" >&2; }
loso() {   # recipe seed [extra args]: one LOSO run, kept if it is already there (its loso.json)
  local recipe=$1 seed=$2; shift 2
  local out="$RUN/loso-$recipe-s$seed"
  [ -f "$out/loso.json" ] && return 0
  local set=(--set seed=$seed)
  [ "$recipe" = plain ] && set+=(--set real_share=0.8)   # the reference: the current default network's share
  "$PY" -m calibration.loso "${DATA[@]}" --recipe "$recipe" "${set[@]}" --out "$out" --jobs "$JOBS" "$@"
  stamp "loso $recipe seed $seed"
}
if [ "${LOSO:-1}" = 1 ]; then
  if [ "${SCREEN:-0}" = 1 ]; then
    SCREEN_RUNS=()
    for R in $CANDIDATES $ROUND2; do loso "$R" 0; SCREEN_RUNS+=(--plain "$RUN/loso-$R-s0"); done
    "$PY" -m calibration.blend_choice "${DATA[@]}" "${SCREEN_RUNS[@]}" --screen --out "$RUN/screen"
    stamp "screen"
  fi
  PLAIN=()
  for R in $FINALISTS; do
    RUNS=()
    for SEED in $SEEDS; do loso "$R" "$SEED"; RUNS+=("$RUN/loso-$R-s$SEED"); done
    PLAIN+=(--plain "${RUNS[@]}")
  done
  "$PY" -m calibration.blend_choice "${DATA[@]}" "${PLAIN[@]}" --walking "$WALKING" --out "$RUN/blend-choice"
  stamp "blend choice"
  "$PY" -m calibration.issue_bars "$RUN/blend-choice/choice.json"
  CHOSEN=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['chosen']['network'].split('loso-',1)[1])" \
           "$RUN/blend-choice/choice.json")
  for SEED in $SEEDS; do   # the shipped recipe's fold figures: the chosen network's folds with the preset's blend
    "$PY" -m calibration.loso "${DATA[@]}" --recipe blend --reblend "$RUN/loso-$CHOSEN-s$SEED" --out "$RUN/folds-s$SEED"
    "$PY" -m calibration.loso "${DATA[@]}" --recipe blend $(final_set "$CHOSEN") --set seed=$SEED --hold-out lab \
      --out "$RUN/lolo-s$SEED"
  done
  stamp "fold figures and leave-one-lab-out"
fi
# the chosen network's training (its recipe's real share, epochs, synthetic options, loss weights) with the preset's
# input and blend: the preset must already carry the recipe's preprocess (calibration.loso.train_final checks)
"$PY" -m calibration.loso "${DATA[@]}" --recipe blend $(final_set "${CHOSEN:-$SHIPPED}") --final --out "$RUN"
TRAINED=$(date +%s)
stamp "final model"
"$PY" - "$RUN" "$((TRAINED - START))" <<'PY'
import json, os, platform, sys
from pathlib import Path
import torch
from calibration.checkpoint import checkpoint_info, load_model, save_checkpoint
run, seconds = sys.argv[1], int(sys.argv[2])
model, preset, _ = load_model(None, f"{run}/model.pt")
info = checkpoint_info(f"{run}/model.pt")
info["training_wall_seconds"] = seconds
def figures_only(o):   # the runs' figures without their per-recording rows and events (those stay in RUN)
    if isinstance(o, dict):
        return {k: figures_only(v) for k, v in o.items() if k not in ("per_recording", "events")}
    return [figures_only(v) for v in o] if isinstance(o, list) else o
for name, pattern in (("loso", "folds-s*/loso.json"), ("leave_one_lab_out", "lolo-s*/loso.json")):
    runs = sorted(Path(run).glob(pattern))
    if runs:
        info[name] = {p.parent.name: figures_only(json.loads(p.read_text())) for p in runs}
choice = Path(run, "blend-choice", "choice.json")
if choice.exists():
    info["blend_choice"] = json.loads(choice.read_text())
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
           platform.machine()) if os.path.exists("/proc/cpuinfo") else platform.machine()
info["machine"] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                   "torch": torch.__version__}
# The bundled form: a plain fp32 state_dict for models.create_model("fog-small"), the JSON beside it.
save_checkpoint(model, "models/weights/fog-small.pt", info, plain=True)
PY
"$PY" -m calibration.model_report --checkpoint models/weights/fog-small.pt --train-seed 0 \
  --train-subjects 12 --test-seed 1000 --test-subjects 8 --threads 1 --qat-epochs 10 > "$RUN/report.json"
stamp "report"
"$PY" -m toolkit.cli export --target jetson --out "$RUN/bundle-jetson" --force --quiet
for LAB in daphnet stanford; do
  DIR=$([ "$LAB" = daphnet ] && echo "$DAPHNET" || echo "$STANFORD")
  for precision in fp32 int8; do
    "$PY" -m toolkit.cli evaluate "$DIR" --bundle "$RUN/bundle-jetson" --precision "$precision" --json \
      > "$RUN/$LAB-$precision.json"
  done
done
"$PY" - "$RUN" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
card = Path("models/weights/fog-small.json")
info = json.loads(card.read_text())
out = {"note": "the shipped model on its own training recordings: for float vs INT8 only, not a performance claim"}
for lab in ("daphnet", "stanford"):
    ap = {p: json.loads((run / f"{lab}-{p}.json").read_text())["results"][0]["any_fog"]["ap"] for p in ("fp32", "int8")}
    out[lab] = {"fp32_ap": ap["fp32"], "int8_ap": ap["int8"], "ap_difference": ap["int8"] - ap["fp32"]}
info["figures"]["jetson_bundle_int8_vs_fp32"] = out
card.write_text(json.dumps(info, indent=1) + "\n")
print(json.dumps(out))
PY
stamp "jetson INT8 vs float"
echo "default model: models/weights/fog-small.pt ($(( $(date +%s) - START )) s in all); figures in models/weights/fog-small.json"
