#!/usr/bin/env bash
# Reproduce the bundled default model (models/weights/fog-small-x3.pt + .json: three networks of one recipe, one per
# seed; seed 0 alone is models/weights/fog-small.pt) and every figure of its model card:
#   bash scripts/train_default.sh                  # the finalists' LOSO, the choices, LOLO, the final networks
#   SCREEN=1 bash scripts/train_default.sh         # also the screens: round one (models/weights/CHOICE_RULE.md) and
#                                                  # round two (CHOICE_RULE_ROUND2.md), every candidate, seed 0
#   LOSO=0 bash scripts/train_default.sh           # only the final networks, the ensemble and their reports
# Wall times on the shared 2-core VM (load 6-12 from other jobs; one torch thread per process): see MODEL_CARD.md.
# Needs ../shared/data/daphnet and ../shared/data/stanford-imu-fog-64hz (10 people with PD, two labs).
# The rules that choose (models/weights/CHOICE_RULE*.md, each written before the figures it chooses from):
# 1. screening: every candidate network (calibration.loso recipes, trained without the fixed freeze-index blend),
#    seed 0, ten leave-one-subject-out folds, synthetic subjects in every fold; the blend grid scored on the folds
#    (calibration.blend_choice --screen);
# 2. finalists get more seeds; calibration.blend_choice chooses network, fi_blend, power_weight and the
#    on-threshold, with the walking budget (CHOICE_RULE_ROUND2.md's amendment: at most 10 false alarms/h on mobgap
#    walking); the presets carry the choice (models/registry.py; the command says whether one does);
# round three (CHOICE_RULE_ROUND3.md): invariant-long against invariant-long-tremor, two seeds each: the latter won;
# round four (CHOICE_RULE_ROUND4.md): invariant-long-tremor's network alone (three seeds pooled) against the three as
#    one ensemble (blend_choice --ensemble); calibration.issue_bars prints the bars of each; the ensemble won;
# then: the fold figures per seed and of the ensemble (--reblend), leave-one-lab-out, the final networks on
# everything shared (seeds 0-2), the ensemble's weights (calibration.ensemble_weights), the reports (synthetic,
# mobgap, INT8) and the jetson bundle's INT8 graph against float on both labs.
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
SHIPPED=${SHIPPED:-invariant-long-tremor}   # the recipe of every network of the default (rounds three and four)
SEEDS=${SEEDS:-"0 1 2"}   # round four: the shipped recipe's three seeds, alone and as one ensemble (CHOICE_RULE_ROUND4.md)
ENSEMBLE=${ENSEMBLE:-fog-small-x3}   # the bundled default's preset: one network per seed (models.ensemble)
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
  for R in $FINALISTS; do loso "$R" 0; loso "$R" 1; done       # round three: two seeds of each finalist
  PLAIN=()
  for R in $FINALISTS; do PLAIN+=(--plain "$RUN/loso-$R-s0" "$RUN/loso-$R-s1"); done
  "$PY" -m calibration.blend_choice "${DATA[@]}" "${PLAIN[@]}" --walking "$WALKING" --out "$RUN/blend-choice-round3"
  RUNS=()
  for SEED in $SEEDS; do loso "$SHIPPED" "$SEED"; RUNS+=("$RUN/loso-$SHIPPED-s$SEED"); done
  # round four (CHOICE_RULE_ROUND4.md): the recipe's network alone (its seeds pooled) against their ensemble; each
  # chooses its own blend and threshold; the bars decide when the scores are within the seeds' noise
  "$PY" -m calibration.blend_choice "${DATA[@]}" --plain "${RUNS[@]}" --walking "$WALKING" --out "$RUN/choice-single"
  "$PY" -m calibration.blend_choice "${DATA[@]}" --ensemble "${RUNS[@]}" --walking "$WALKING" --out "$RUN/blend-choice"
  for SEED in $SEEDS; do
    "$PY" -m calibration.blend_choice "${DATA[@]}" --plain "$RUN/loso-$SHIPPED-s$SEED" --screen --out "$RUN/screen-s$SEED"
  done
  stamp "blend choice"
  "$PY" -m calibration.issue_bars "$RUN/choice-single/choice.json"
  "$PY" -m calibration.issue_bars "$RUN/blend-choice/choice.json"
  LOLO=()
  for SEED in $SEEDS; do   # leave-one-lab-out, one network per seed, then their ensemble
    "$PY" -m calibration.loso "${DATA[@]}" --recipe blend $(final_set "$SHIPPED") --set seed=$SEED --hold-out lab \
      --out "$RUN/lolo-s$SEED"
    LOLO+=("$RUN/lolo-s$SEED")
    "$PY" -m calibration.loso "${DATA[@]}" --recipe blend --reblend "$RUN/loso-$SHIPPED-s$SEED" --out "$RUN/folds-s$SEED"
  done
  "$PY" -m calibration.loso "${DATA[@]}" --recipe blend --reblend "${RUNS[@]}" --out "$RUN/folds-x3"
  "$PY" -m calibration.loso "${DATA[@]}" --recipe blend --reblend "${LOLO[@]}" --hold-out lab --out "$RUN/lolo-x3"
  stamp "fold figures and leave-one-lab-out"
fi
# the shipped recipe's networks (its real share, epochs, synthetic options, loss weights) with the preset's input and
# blend, one per seed, each on everything shared; the preset must already carry the recipe's preprocess
# (calibration.loso.train_final checks). Seed 0 alone is fog-small; the three are the default's ensemble.
MEMBERS=()
for SEED in $SEEDS; do
  [ -f "$RUN/final-s$SEED/model.pt" ] || "$PY" -m calibration.loso "${DATA[@]}" --recipe blend $(final_set "$SHIPPED") \
    --set seed=$SEED --final --out "$RUN/final-s$SEED"
  MEMBERS+=("$RUN/final-s$SEED/model.pt")
done
TRAINED=$(date +%s)
stamp "final networks"
"$PY" -m calibration.ensemble_weights --preset "$ENSEMBLE" --out "models/weights/$ENSEMBLE.pt" "${MEMBERS[@]}"
"$PY" - "$RUN" "$((TRAINED - START))" "$ENSEMBLE" <<'PY'
import json, os, platform, sys
from pathlib import Path
import torch
from calibration.checkpoint import checkpoint_info, load_model, save_checkpoint
run, seconds, ensemble = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def figures_only(o):   # the runs' figures without their per-recording rows and events (those stay in RUN)
    if isinstance(o, dict):
        return {k: figures_only(v) for k, v in o.items() if k not in ("per_recording", "events")}
    return [figures_only(v) for v in o] if isinstance(o, list) else o
cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
           platform.machine()) if os.path.exists("/proc/cpuinfo") else platform.machine()
machine = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
# fog-small: seed 0 alone, at round three's choice; the ensemble: its fold figures, at round four's
for weights, folds, lolo, choice in (("models/weights/fog-small.pt", "folds-s*", "lolo-s[0-9]", "blend-choice-round3"),
                                     (f"models/weights/{ensemble}.pt", "folds-x3", "lolo-x3", "blend-choice")):
    if weights.endswith("fog-small.pt"):
        model, _, _ = load_model(None, f"{run}/final-s0/model.pt")
        info = checkpoint_info(f"{run}/final-s0/model.pt")
    else:
        model, info = None, checkpoint_info(weights)
    info["training_wall_seconds"] = seconds
    for name, pattern in (("loso", f"{folds}/loso.json"), ("leave_one_lab_out", f"{lolo}/loso.json")):
        runs = sorted(Path(run).glob(pattern))
        if runs:
            info[name] = {p.parent.name: figures_only(json.loads(p.read_text())) for p in runs}
    if Path(run, choice, "choice.json").exists():
        info["blend_choice"] = json.loads(Path(run, choice, "choice.json").read_text())
    info["machine"] = machine
    if model is not None:   # the bundled form: a plain fp32 state_dict for models.create_model, the JSON beside it
        save_checkpoint(model, weights, info, plain=True)
    else:
        Path(weights).with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
PY
for PRESET in fog-small "$ENSEMBLE"; do
  "$PY" -m calibration.model_report --checkpoint "models/weights/$PRESET.pt" --train-seed 0 \
    --train-subjects 12 --test-seed 1000 --test-subjects 8 --threads 1 --qat-epochs 10 > "$RUN/report-$PRESET.json"
done
stamp "report"
"$PY" -m toolkit.cli export --target jetson --out "$RUN/bundle-jetson" --force --quiet
for LAB in daphnet stanford; do
  DIR=$([ "$LAB" = daphnet ] && echo "$DAPHNET" || echo "$STANFORD")
  for precision in fp32 int8; do
    "$PY" -m toolkit.cli evaluate "$DIR" --bundle "$RUN/bundle-jetson" --precision "$precision" --json \
      > "$RUN/$LAB-$precision.json"
  done
done
"$PY" - "$RUN" "$ENSEMBLE" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
card = Path(f"models/weights/{sys.argv[2]}.json")
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
echo "default model: models/weights/$ENSEMBLE.pt ($(( $(date +%s) - START )) s in all); figures in models/weights/$ENSEMBLE.json"
