"""Decision agreement of the cpu target's INT8 plans on TRAINED weights (issue 17).

Random weights put every probability near 0.5, where agreement measures noise. This trains the default's recipe
(fog-small: TransformerLSTMPlus, 2 encoder layers, 1 BiLSTM, plain training) at a larger width (d_model 128,
feed-forward 256: 4x the parameters) briefly on synthetic recordings, then exports it for the cpu target with
`--precision fastest` through the real pipeline: the manifest's verification pairs (float vs the static Q/DQ plan
and vs onnxruntime's dynamic plan) are measured on trained weights.

  PYTHONPATH=$PWD nice -n 10 python benchmarks/trained_wide_cpu.py --out /tmp/wide [--epochs 4 --steps 40]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from calibration import train as training
from calibration.data import synthetic_recordings
from models import create_model, get_preset
from toolkit.export import ExportOptions, export_bundle
from toolkit.export.source import ModelSource
from toolkit.export.targets import get_target

WIDE = dict(d_model=128, dim_feedforward=256, nhead=4)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--subjects", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create_model("fog-small", **WIDE)
    spec = get_preset("fog-small").preprocess
    recordings = synthetic_recordings(args.subjects, seed=0, minutes=5.0)
    train, val = training.split_by_subject(recordings, None, 0.25, 0)
    config = training.TrainConfig(epochs=args.epochs, steps_per_epoch=args.steps, batch_size=32, lr=1e-3,
                                  warmup_steps=20, patience=8, seed=0)
    started = time.perf_counter()
    result = training.fit(model, train, val, spec, config, progress=False)
    trained_s = time.perf_counter() - started
    torch.save(model.state_dict(), out / "wide.pt")
    source = ModelSource(module=model.eval(), name="fog-small-wide", kind="checkpoint", preset="fog-small",
                         preprocess=dict(spec), classes=tuple(get_preset("fog-small").classes),
                         weights_path=str(out / "wide.pt"))
    manifest = export_bundle(source, get_target("cpu"), out / "bundle",
                             ExportOptions(precision="fastest", force=True, fidelity=False, quiet=True))
    print(json.dumps({"model": "fog-small recipe at width 128 (d_model 128, ff 256)",
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "train": {"epochs": result.epochs_run, "best_val_map": result.best_map, "seconds": trained_s,
                                "subjects": args.subjects},
                      "cpu_precision": manifest["export"]["cpu_precision"],
                      "pairs": manifest["verification"]["pairs"],
                      "dynamic": (manifest["export"].get("cpu_dynamic_plan") or {}).get("verification")},
                     indent=1, default=str))


if __name__ == "__main__":
    main()
